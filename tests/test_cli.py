import subprocess
import sys

import pytest
import torch

from transformer_course.cli import doctor, main
from transformer_course.utils.device import get_device


def test_doctor_reports_versions_device_and_passes(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"torch         {torch.__version__.split('+')[0]}" in out
    assert "device        cpu" in out or "device        cuda" in out or "device        mps" in out
    assert "smoke test" in out and ": ok (" in out
    assert out.rstrip().endswith("All checks passed: you are ready for chapter 1.")


def test_doctor_fails_and_says_why_for_an_unavailable_device(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setenv("TRANSFORMER_COURSE_DEVICE", "cuda")
    lines = []
    assert doctor.run(out=lines.append) == 1
    assert any("CUDA is not available" in line for line in lines)


def test_doctor_fails_when_the_smoke_test_breaks(monkeypatch):
    def broken(device):
        raise RuntimeError("no kernel image")

    monkeypatch.setattr(doctor, "smoke_test", broken)
    lines = []
    assert doctor.run(out=lines.append) == 1
    assert "smoke test failed: RuntimeError: no kernel image" in "\n".join(lines)


def test_console_entry_point_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "transformer_course", "doctor"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_device_choice_and_override(monkeypatch):
    monkeypatch.delenv("TRANSFORMER_COURSE_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu"
    )
    assert get_device().type == expected
    assert get_device("cpu").type == "cpu"
    monkeypatch.setenv("TRANSFORMER_COURSE_DEVICE", "cpu")
    assert get_device().type == "cpu"


def test_download_verifies_tinytalks(capsys):
    from conftest import load_or_skip

    from transformer_course.utils.dataset import load_tinytalks

    load_or_skip(load_tinytalks, "all")
    assert main(["download", "tinytalks"]) == 0
    out = capsys.readouterr().out
    assert "tinytalks train: 210 pairs, verified" in out


def test_download_failure_is_reported_with_exit_code_1(tmp_path, monkeypatch, capsys):
    import socket

    from transformer_course.utils import dataset as datasets

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(datasets, "TINYTALKS_URL", f"http://127.0.0.1:{port}/")
    monkeypatch.setenv("TRANSFORMER_COURSE_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("TRANSFORMER_COURSE_CACHE", str(tmp_path / "cache"))
    assert main(["download", "tinytalks"]) == 1
    assert "could not download tinytalks/tinytalks_v1.txt" in capsys.readouterr().err


def test_download_into_an_unusable_cache_is_one_clear_error(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("TRANSFORMER_COURSE_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("TRANSFORMER_COURSE_CACHE", str(blocker / "cache"))
    assert main(["download", "tinytalks"]) == 1  # reported before any network access
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot use the download cache {blocker / 'cache' / 'tinytalks'}"
                          " for tinytalks/tinytalks_v1.txt (NotADirectoryError")
    assert "TRANSFORMER_COURSE_CACHE" in err and err.count("\n") == 1
