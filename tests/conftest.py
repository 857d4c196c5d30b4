import pytest
import torch

from transformer_course import set_seed

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
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
