"""The set-up promises of README.md, .ci/run and the lock file."""

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_readme_opens_with_the_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make book", "make test"]
    assert text.index("```bash") < text.index("\n## ")  # before any section


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", script, re.M)
    assert "TRANSFORMER_COURSE_DATA" in script


def test_lock_pins_torch_and_every_package():
    lines = [
        line for line in (ROOT / "requirements-lock.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert "torch==2.13.0" in lines
    assert all("==" in line for line in lines), [line for line in lines if "==" not in line]
    names = {line.split("==")[0].lower() for line in lines}
    for needed in ("jupyter-book", "nbgrader", "sacrebleu", "matplotlib", "ipywidgets", "numpy",
                   "tqdm", "pytest", "ruff"):
        assert needed in names, needed


def test_pyproject_uses_ranges_so_colab_keeps_its_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    torch_spec = next(d for d in project["dependencies"] if d.startswith("torch"))
    assert "==" not in torch_spec and ">=" in torch_spec
    jb = next(d for d in project["optional-dependencies"]["book"] if d.startswith("jupyter-book"))
    assert "<2" in jb


def test_environment_yml_mirrors_the_lock():
    text = (ROOT / "environment.yml").read_text()
    assert "-r requirements-lock.txt" in text and "-e ." in text
