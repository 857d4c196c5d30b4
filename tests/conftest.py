import os
from pathlib import Path

import pytest
import torch

from transformer_course.utils.dataset import DatasetError
from transformer_course.utils.device import set_seed

ROOT = Path(__file__).resolve().parents[1]
# One thread unless asked otherwise: two threads made the heavy tests 9x slower on a busy
# machine. Subprocesses (grading kernels, the CLI) inherit the setting through OMP_NUM_THREADS.
THREADS = int(os.environ.get("TRANSFORMER_COURSE_TEST_THREADS", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("MPLBACKEND", "Agg")  # figures are drawn, never shown
# CI sets TRANSFORMER_COURSE_DATA; a developer checkout with ../shared beside it works the same.
if not os.environ.get("TRANSFORMER_COURSE_DATA") and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["TRANSFORMER_COURSE_DATA"] = str(ROOT.parent / "shared" / "data")

# Float32 parity tolerance demanded of every from-scratch module.
TOL = {"atol": 1e-5, "rtol": 1e-5}


@pytest.fixture(autouse=True)
def _seed_and_threads():
    set_seed(0)
    yield


@pytest.fixture
def tol():
    return TOL


def pytest_configure(config):
    torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never touch the user's download cache."""
    previous = os.environ.get("TRANSFORMER_COURSE_CACHE")
    os.environ["TRANSFORMER_COURSE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("TRANSFORMER_COURSE_CACHE", None)
    else:
        os.environ["TRANSFORMER_COURSE_CACHE"] = previous


def load_or_skip(loader, *args, **kwargs):
    """Load a real data set; skip (not fail) only when neither a local copy nor a network is
    available, as on an offline machine without TRANSFORMER_COURSE_DATA."""
    try:
        return loader(*args, **kwargs)
    except DatasetError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"data not available: {error}")
