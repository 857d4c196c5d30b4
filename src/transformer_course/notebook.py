"""Helpers of the chapters' notebooks (the course's machinery, not the learner's project).

A chapter runs in three places: inside the repository (the book build, a local clone), in
Colab, and from a folder elsewhere with the package installed. Committed files (logged runs in
``results/``, checkpoints in ``checkpoints/``) are read in place inside the repository and
downloaded once elsewhere, into one folder, ``course_files/``, beside the notebook.
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

__all__ = ["REPOSITORY", "DOWNLOADS", "repository_root", "course_file", "one_thread"]

DOWNLOADS = Path("course_files")


def _repository_url() -> str:
    """The project's home page, as pyproject.toml declares it."""
    try:
        for entry in metadata.metadata("transformer-course").get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip().lower() == "homepage":
                return url.strip()
    except metadata.PackageNotFoundError:
        pass
    return "https://github.com/transformers-from-scratch/transformers-from-scratch"


REPOSITORY = _repository_url()


def repository_root(start: Path | None = None) -> Path | None:
    """The course repository: the first folder from ``start`` (the working directory)
    upwards that holds ``pyproject.toml`` and ``chapters/``, else the checkout this package
    is installed from in editable mode, else None (Colab, an installed package)."""
    start = Path.cwd() if start is None else Path(start)
    candidates = [start.resolve(), *start.resolve().parents, Path(__file__).resolve().parents[2]]
    for folder in candidates:
        if (folder / "pyproject.toml").is_file() and (folder / "chapters").is_dir():
            return folder
    return None


def course_file(relative: str, required: bool = False) -> Path | None:
    """A file committed to the repository (``"results/translator-cpu/summary.json"``): the
    repository's copy, else a copy downloaded once into :data:`DOWNLOADS`. When it cannot be
    had: None, or with ``required`` a ``FileNotFoundError`` saying where it should be."""
    root = repository_root()
    if root is not None:
        path = root / relative
        if path.is_file():
            return path
    else:
        path = DOWNLOADS / relative
        if path.is_file():
            return path
        url = f"{REPOSITORY.replace('https://github.com/', 'https://raw.githubusercontent.com/')}" \
              f"/main/{relative}"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        try:
            urllib.request.urlretrieve(url, partial)
            partial.replace(path)
            return path
        except (urllib.error.URLError, OSError):  # HTTP errors (404) are URLErrors too
            partial.unlink(missing_ok=True)
    if required:
        where = root / relative if root is not None else url
        raise FileNotFoundError(f"{relative} is not available: expected {where}")
    return None


@contextlib.contextmanager
def one_thread():
    """Run the block on one CPU thread, then restore the thread count: tensors as small as a
    chapter's are faster on one core than split across several that must synchronise."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
