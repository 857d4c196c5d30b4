# Two entry points (see README.md): `make book` builds the executed book, `make test` runs
# the whole test suite. Both create the virtual environment from the lock file on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test lint unit lock clean

$(STAMP): requirements-lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

book: $(STAMP)
	$(BIN)/jupyter-book build . --warningiserror --keep-going

lint: $(STAMP)
	$(BIN)/ruff check .

unit: $(STAMP)
	$(BIN)/python -m pytest -m "not book"

test: lint unit
	rm -rf _build
	$(MAKE) book
	$(BIN)/python -m pytest -m book

# Regenerate the lock from pyproject.toml's ranges (run after changing dependencies).
lock:
	rm -rf /tmp/lock-venv && $(PYTHON) -m venv /tmp/lock-venv
	/tmp/lock-venv/bin/python -m pip install --quiet "torch==2.13.0" ".[book,dev]"
	/tmp/lock-venv/bin/python -m pip freeze --exclude-editable \
	  | grep -v '^transformer-course' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements-lock.txt

clean:
	rm -rf _build .pytest_cache .ruff_cache
