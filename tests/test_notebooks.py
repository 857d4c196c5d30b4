"""The chapter notebooks as committed: stripped, stamped, complete, and in the book."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def test_notebooks_are_stripped_and_have_the_standard_opening():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_notebooks.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_chapter_is_in_the_table_of_contents_and_vice_versa():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = {c["file"] for part in toc["parts"] for c in part["chapters"]}
    chapters = {f"chapters/{p.stem}" for p in CHAPTERS}
    assert chapters <= listed, f"not in _toc.yml: {sorted(chapters - listed)}"
    for entry in listed:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_follows_the_standard(path):
    nb = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    title = r"# Chapter \d+: " if path.stem.startswith("ch") else r"# Capstone: "
    assert re.match(title, nb.cells[0].source), "the first cell must hold the title"
    for heading in ("## Learning objectives", "## Summary", "## Assignment", "## References"):
        assert heading in markdown, f"missing section {heading!r}"
    assert markdown.count("<details>") >= 3, "fewer than three quick checks with hidden answers"
    assert "assert_close" in code, "no check of the notebook's code against the package"
    assert "import transformer_course" in code or "from transformer_course" in code
    assert re.search(r"plt\.|plot_", code), "no figure"
    assert "$" in markdown, "no mathematics"


def test_a_cell_error_fails_the_book_build(tmp_path):
    """The build must stop on an error, not render the traceback into the page."""
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(ROOT / "_config.yml", book / "_config.yml")
    (book / "intro.md").write_text("# Intro\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Broken"),
                nbformat.v4.new_code_cell("raise RuntimeError('this cell fails')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, book / "broken.ipynb")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: broken\n")
    config = yaml.safe_load((book / "_config.yml").read_text())
    config.pop("bibtex_bibfiles", None)
    (book / "_config.yml").write_text(yaml.safe_dump(config))
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run([str(jupyter_book), "build", str(book), "--warningiserror",
                             "--keep-going"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "this cell fails" in result.stdout + result.stderr
