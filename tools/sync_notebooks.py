"""Give every course notebook the standard opening and strip its outputs.

The course notebooks are the chapters, chapters/*.ipynb, and the nbgrader sources of the
assignments, solutions/<assignment>/<assignment>.ipynb. Each starts with:

0. a markdown cell whose first line is the title (``# Chapter 2: ...``), written by the author;
1. a markdown cell with an "Open in Colab" badge for readers on GitHub, tagged ``remove-cell``
   so the book (which has its own launch buttons) does not show it;
2. the setup code cell, tagged ``setup`` (and ``hide-input``: collapsed on the site); it
   installs the course package when it is missing (Colab, or a notebook opened outside the
   repository), then nothing else.

Cells 1 and 2 are generated here from the repository URL in _config.yml, the one place it is
defined. In an assignment, every code cell that is neither an answer nor a test (the setup,
imports, data the tasks share) becomes an nbgrader read-only cell (``setup``,
``course_code_<n>``): autograding puts the course's version back, so the grader knows which
code is the course's and which the student's (see transformer_course.grading).
An assignment's badge opens its released version, exercises/<assignment>/..., which
nbgrader generates from the source with these two cells unchanged (`make exercises`). Outputs,
execution counts and cell metadata other than tags and nbgrader's are removed: the book build
executes the chapters, nbgrader the assignments.

    python tools/sync_notebooks.py          # rewrite the notebooks
    python tools/sync_notebooks.py --check  # exit 1 if any notebook is not in this form
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_PATTERNS = ["chapters/*.ipynb", "solutions/*/*.ipynb"]
KEPT_METADATA = ("tags", "nbgrader")  # nbgrader's marks an assignment's graded cells

SETUP_TEMPLATE = '''\
# Setup: install the course package if this notebook runs where it is missing (e.g. Colab).
import importlib.util
import subprocess
import sys

REPOSITORY = "{url}"
if importlib.util.find_spec("transformer_course") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    f"{package} @ git+{{REPOSITORY}}"], check=True)'''

# Part 6 needs the optional dependencies (scikit-learn, ONNX, onnxruntime, FastAPI...).
ADVANCED_CHAPTERS = ("ch15_", "ch16_", "ch17_")

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def repository() -> tuple[str, str]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"].rstrip("/"), config["repository"].get("branch", "main")


def colab_url(notebook: Path) -> str:
    url, branch = repository()
    path = notebook.resolve().relative_to(ROOT).as_posix()
    if path.startswith("solutions/"):  # students open the released assignment, not the source
        path = "exercises/" + path.removeprefix("solutions/")
    return url.replace("https://github.com/", "https://colab.research.google.com/github/") + (
        f"/blob/{branch}/{path}"
    )


def badge_cell(notebook: Path) -> nbformat.NotebookNode:
    source = (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({colab_url(notebook)})"
    )
    return nbformat.v4.new_markdown_cell(source, metadata={"tags": ["remove-cell"]})


def setup_cell(notebook: Path) -> nbformat.NotebookNode:
    url, _ = repository()
    package = "transformer-course"
    if notebook.name.startswith(ADVANCED_CHAPTERS):
        package += "[advanced]"
    # Collapsed on the site (readers can open it); it runs first everywhere.
    return nbformat.v4.new_code_cell(SETUP_TEMPLATE.format(url=url, package=package),
                                     metadata={"tags": ["setup", "hide-input"]})


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def normalized(notebook_path: Path) -> nbformat.NotebookNode:
    """The notebook as it should be stored."""
    nb = nbformat.read(notebook_path, as_version=4)
    cells = [c for c in nb.cells if "setup" not in _tags(c) and "colab-badge" not in _tags(c)
             and not (c.cell_type == "markdown" and "colab-badge.svg" in c.source)]
    if not cells or cells[0].cell_type != "markdown" or not cells[0].source.startswith("# "):
        raise ValueError(f"{notebook_path}: the first cell must be markdown starting '# Title'")
    for cell in cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in KEPT_METADATA}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.pop("id", None)
    badge = badge_cell(notebook_path)
    badge.metadata["tags"].append("colab-badge")
    new = nbformat.v4.new_notebook()
    new.cells = [cells[0], badge, setup_cell(notebook_path), *cells[1:]]
    if notebook_path.resolve().parent.parent.name == "solutions":
        mark_course_cells(new.cells)
    new.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    for number, cell in enumerate(new.cells):
        cell["id"] = f"cell-{number}"  # stable ids keep diffs small
    return new


def read_only(grade_id: str) -> dict:
    return {"grade": False, "grade_id": grade_id, "locked": True, "schema_version": 3,
            "solution": False, "task": False}


def mark_course_cells(cells) -> None:
    """An assignment's code cells that nbgrader does not know yet become read-only cells."""
    number = 0
    for cell in cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader")
        if "setup" in _tags(cell):
            cell.metadata["nbgrader"] = read_only("setup")
        elif meta is None or meta.get("grade_id", "").startswith("course_code_"):
            number += 1
            cell.metadata["nbgrader"] = read_only(f"course_code_{number}")


def notebooks() -> list[Path]:
    return sorted(p for pattern in NOTEBOOK_PATTERNS for p in ROOT.glob(pattern))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report; change nothing")
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: all)")
    args = parser.parse_args(argv)
    stale = []
    for path in [p.resolve() for p in args.paths] or notebooks():
        wanted = nbformat.writes(normalized(path)) + "\n"
        if path.read_text(encoding="utf-8") != wanted:
            stale.append(path)
            if not args.check:
                path.write_text(wanted, encoding="utf-8")
    if stale:
        verb = "need" if args.check else "rewrote"
        print(f"{verb} syncing: " + ", ".join(str(p.relative_to(ROOT)) for p in stale))
        if args.check:
            print("run: python tools/sync_notebooks.py")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
