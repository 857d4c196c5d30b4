"""The grader's isolation (transformer_course.grading.sandbox) and its un-disarmable checks
(transformer_course.grading.observe), tested on their own, without nbgrader.

Each sandbox test runs a small hostile program the way a submission runs and checks that it
was stopped. What the machine does not offer (Landlock, a network namespace, a cgroup) is
skipped with the reason; the probe says which is which.
"""

import ast
import functools
import json
import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from transformer_course.grading.observe import (
    OBSERVE,
    ObservationError,
    Phantom,
    Recording,
    decode,
    encode,
    instrument_cells,
    student_names,
)
from transformer_course.grading.sandbox import (
    Limits,
    fork_server,
    landlock_abi,
    probe,
    run_sandboxed,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


@functools.cache
def isolation():
    return probe()


def needs(feature: str):
    """Skip unless this machine offers ``feature`` of the sandbox."""
    offered = {"landlock": isolation().landlock_abi >= 1,
               "landlock-net": isolation().landlock_abi >= 4,
               "landlock-scope": isolation().landlock_abi >= 6,
               "network": isolation().network_namespace or isolation().landlock_abi >= 4,
               "processes": isolation().cgroup_pids or os.geteuid() != 0}[feature]
    if not offered:
        pytest.skip(f"this machine does not offer {feature} isolation")


@pytest.fixture(params=["launched", "forked"])
def run(request, tmp_path):
    """``run(program, **limits)``: run ``program`` (Python source) in a sandbox folder, as a
    new Python process or, as the grader does, as a cell of the grading runner in a child of
    the fork server."""

    def run_program(program: str, **limits):
        folder = tmp_path / "box"
        folder.mkdir(exist_ok=True)
        program = textwrap.dedent(program)
        if request.param == "launched":
            (folder / "program.py").write_text(program)
            return run_sandboxed([sys.executable, str(folder / "program.py")], folder,
                                 Limits(**limits), isolation())
        job = {"cells": [{"index": 0, "kind": "student", "source": program}],
               "observations": str(folder / "observations"), "output_bytes": 4096}
        (folder / "job.json").write_text(json.dumps(job))
        with fork_server():
            return run_sandboxed([sys.executable, "-m", "transformer_course.grading.runner",
                                  "notebook", str(folder / "job.json")], folder,
                                 Limits(**limits), isolation())

    run_program.mode = request.param
    return run_program


REPORT = """
import json, os
def report(**values):
    os.write(int(os.environ["GRADER_STATUS_FD"]), (json.dumps(values) + "\\n").encode())
"""


def reported(result) -> dict:
    merged = {}
    for event in result.events:
        merged.update({k: v for k, v in event.items()
                       if k not in ("event", "index", "applied", "error", "output_dropped")})
    return merged


# ----------------------------------------------------------------------------- the sandbox


@linux_only
def test_the_probe_reports_what_it_found():
    description = isolation().describe()
    assert "rlimits" in description and "process sweep" in description
    assert ("Landlock ABI" in description) == (landlock_abi() > 0)


@linux_only
def test_files_outside_the_folder_cannot_be_read_or_written(run, tmp_path):
    needs("landlock")
    secret = tmp_path / "other-student.ipynb"
    secret.write_text("alice's answers")
    result = run(REPORT + f"""
outcome = {{}}
for name, action in [("read", lambda: open({str(secret)!r}).read()),
                     ("write", lambda: open({str(secret)!r}, "a").write("x")),
                     ("solutions", lambda: os.listdir({str(Path(__file__).parents[1])!r})),
                     ("own", lambda: open("mine.txt", "w").write("ok"))]:
    try:
        action()
        outcome[name] = "allowed"
    except OSError as error:
        outcome[name] = type(error).__name__
report(**outcome)
""")
    outcome = reported(result)
    assert outcome["read"] == outcome["write"] == outcome["solutions"] == "PermissionError"
    assert outcome["own"] == "allowed"
    assert secret.read_text() == "alice's answers"


@linux_only
def test_no_network(run, tmp_path):
    needs("network")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        result = run(REPORT + f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2)
    report(connected=True)
except OSError as error:
    report(connected=False, error=type(error).__name__)
""")
    finally:
        server.close()
    assert reported(result)["connected"] is False


@linux_only
def test_the_grader_cannot_be_signalled(run, tmp_path):
    needs("landlock-scope")
    result = run(REPORT + f"""
try:
    os.kill({os.getpid()}, 0)  # signal 0: only asks whether a signal would be allowed
    report(signal="allowed")
except OSError as error:
    report(signal=type(error).__name__)
""")
    assert reported(result)["signal"] == "PermissionError"


@linux_only
def test_environment_of_the_grader_does_not_leak(run, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_SECRET_TOKEN", "s3cret")
    result = run(REPORT + "report(env=sorted(os.environ))")
    names = reported(result)["env"]
    assert "GRADER_SECRET_TOKEN" not in names and "HOME" in names


@linux_only
def test_memory_file_size_and_output_are_limited(run, tmp_path):
    result = run(REPORT + """
outcome = {}
try:
    block = bytearray(6 * 2**30)  # 6 GB
    outcome["memory"] = "allowed"
except MemoryError:
    outcome["memory"] = "MemoryError"
try:
    with open("big.bin", "wb") as file:
        file.write(b"x" * (100 * 2**20))  # 100 MB
    outcome["file"] = "allowed"
except OSError as error:
    outcome["file"] = type(error).__name__
print("y" * (100 * 2**20), flush=True)  # 100 MB of output
report(**outcome)
""", memory_bytes=2 << 30, file_bytes=16 << 20, output_bytes=4096)
    outcome = reported(result)
    assert outcome == {"memory": "MemoryError", "file": "OSError"}
    assert len(result.stdout) < 10_000
    if run.mode == "launched":
        assert "more bytes of output dropped" in result.stdout
    else:  # the runner caps each cell's output before the pipe does
        assert next(e for e in result.events if e.get("event") == "end")["output_dropped"] > 0


@linux_only
def test_background_processes_are_killed(run, tmp_path):
    marker = tmp_path / "box" / "daemon.pid"
    run(f"""
import os, time
if os.fork() == 0:
    os.setsid()  # leaves the process group, and double-forks out of the tree
    if os.fork() == 0:
        open({str(marker)!r}, "w").write(str(os.getpid()))
        time.sleep(600)
    os._exit(0)
time.sleep(1)
""")
    pid = int(marker.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() \
        else "gone"
    assert state in ("gone", "Z"), "the daemon survived the run"


@linux_only
def test_process_count_is_limited(run, tmp_path):
    needs("processes")
    result = run(REPORT + """
import time
children = []
try:
    for _ in range(300):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
except OSError:
    pass
report(forked=len(children))
""", processes=32)
    assert reported(result)["forked"] < 300


@linux_only
def test_a_cell_that_ignores_the_interrupt_is_killed(run, tmp_path):
    start = time.monotonic()
    result = run(REPORT + """
import signal
report(event="start", index=0)  # the runner reports it too
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    pass
""", cell_seconds=1, interrupt_grace_seconds=1)
    assert result.stopped == "cell timeout"
    assert any(e.get("event") == "interrupted" for e in result.events)
    assert time.monotonic() - start < 30
    assert result.returncode == -signal.SIGKILL


# ------------------------------------------------------------------- the observation rewrite


def rewrite(*cells, answers="def f(x):\n    return x\nclass Model:\n    pass\n"):
    return instrument_cells(list(cells), student_names([answers]))


def test_student_names_are_what_the_answer_cells_define():
    assert student_names(["import math\nX = 3\ndef f(): pass\nclass C: pass\n%timeit f()"]) \
        == {"X", "f", "C"}


def test_values_from_the_student_are_observed_and_expectations_are_not():
    (cell,) = rewrite("expected = torch.softmax(x, dim=-1)\n"
                      "got = f(x)\n"
                      "assert torch.equal(got, expected), 'f(x)'\n"
                      "total = f(x) + 1\n"
                      "print(total)\n")
    lines = cell.splitlines()
    assert lines[0] == "expected = torch.softmax(x, dim=-1)"  # the checks compute it
    assert lines[1] == f"got = {OBSERVE}(1, lambda: (f(x)))"
    assert lines[2] == f"assert torch.equal({OBSERVE}(2, lambda: (got)), expected), 'f(x)'"
    assert lines[3] == f"total = {OBSERVE}(3, lambda: (f(x))) + 1"
    assert lines[4] == "print(total)"  # computed by the checks from an observed value


def test_objects_methods_attributes_and_explicit_observations():
    (cell,) = rewrite("model = Model(3)\n"
                      "model.load_state_dict(reference.state_dict())\n"
                      "out = model(x)[0]\n"
                      "grad = observed(lambda: x.grad)\n"
                      "for p in model.parameters():\n"
                      "    assert p.shape, 'shape'\n")
    assert f"model = {OBSERVE}(1, lambda: (Model(3)))" in cell
    assert f"{OBSERVE}(2, lambda: (model.load_state_dict(reference.state_dict())))" in cell
    assert f"out = {OBSERVE}(3, lambda: (model(x)[0]))" in cell
    assert f"grad = {OBSERVE}(4, lambda: x.grad)" in cell
    assert f"for p in {OBSERVE}(5, lambda: (model.parameters())):" in cell
    assert f"assert {OBSERVE}(6, lambda: (p.shape)), 'shape'" in cell


def test_rewrite_keeps_every_line_where_it_was():
    source = ("def check(q, mask=None):\n"
              "    out = f(q,\n"
              "            mask)\n"
              "    assert out.sum() > 0, f'{f(q)}'\n"
              "check(torch.ones(2))\n")
    (cell,) = rewrite(source)
    assert len(cell.splitlines()) == len(source.splitlines())
    ast.parse(cell)
    assert "def check(q, mask=None):" in cell and "check(torch.ones(2))" in cell


def test_names_rebound_by_the_checks_are_no_longer_the_students():
    cells = rewrite("out = f(x)\nout = torch.zeros(3)\nassert out.sum() == 0, 'zeros'\n",
                    "from somewhere import f\nassert f(1) == 1, 'theirs'\n")
    assert "assert out.sum() == 0" in cells[0]
    assert "assert f(1) == 1" in cells[1]


def test_observations_continue_across_cells():
    cells = rewrite("model = Model()\n", "assert model.size == 3, 'size'\n")
    assert f"{OBSERVE}(2, lambda: (model.size))" in cells[1]


# ----------------------------------------------------------------- values as plain data


@pytest.mark.parametrize("value", [
    torch.arange(6.0).reshape(2, 3), 3, 2.5, True, None, "text", b"bytes",
    [1, (2, "x")], {"a": torch.ones(2), 3: [None]}, {1, 2}, frozenset({"a"}),
    torch.float16, torch.Size([2, 3]), torch.device("cpu"),
])
def test_plain_values_come_back_equal(value):
    encoded, same = encode(value)
    assert same is value
    back = decode(encoded)
    if isinstance(value, torch.Tensor):
        assert torch.equal(back, value) and type(back) is torch.Tensor
    elif isinstance(value, dict):
        assert back.keys() == value.keys()
    else:
        assert back == value and type(back) is type(value)


def test_iterators_views_counters_and_named_tuples():
    from collections import Counter, namedtuple

    encoded, again = encode(iter([1, 2]))
    assert list(again) == [1, 2] and list(decode(encoded)) == [1, 2]
    counts = Counter({"a": 2})
    assert decode(encode(counts)[0])["missing"] == 0  # still a Counter
    assert decode(encode(counts.keys())[0]) == {"a"}
    assert sorted(decode(encode(counts.values())[0])) == [2]
    Pair = namedtuple("Pair", "left right")
    assert decode(encode(Pair(1, 2))[0]).right == 2
    parameter = torch.nn.Parameter(torch.ones(2))
    assert isinstance(decode(encode(parameter)[0]), torch.nn.Parameter)


def test_other_objects_are_placeholders_that_refuse_to_be_used():
    placeholder = decode(encode(torch.nn.Linear(2, 2))[0])
    assert isinstance(placeholder, Phantom)
    for use in (lambda: placeholder(1), lambda: placeholder.weight, lambda: len(placeholder),
                lambda: bool(placeholder), lambda: torch.add(placeholder, 1),
                lambda: placeholder + 1, lambda: iter(placeholder)):
        with pytest.raises(TypeError, match="only data"):
            use()


@pytest.mark.parametrize("malformed", [
    "not a tuple", ("tensor", "not a tensor", False), ("scalar", object()),
    ("namedtuple", "X", ("import os",), (("scalar", 1),)), ("dtype", "Tensor"),
    ("unknown", 1), ("list", [("scalar", 1)]),
])
def test_malformed_recordings_are_refused(malformed):
    with pytest.raises(ObservationError):
        decode(malformed)


def test_oversized_values_are_refused():
    with pytest.raises(ObservationError, match="64 MB"):
        encode(torch.zeros(20 << 20))  # 80 MB of float32
    with pytest.raises(ObservationError, match="items"):
        encode(iter(range(10**6)))


def test_the_replay_gives_back_what_was_recorded_and_nothing_else():
    student = Recording()
    assert student.observe(1, lambda: torch.ones(2)).sum() == 2
    with pytest.raises(ValueError):
        student.observe(2, lambda: int("x"))
    checks = Recording(student.records)
    never = lambda: pytest.fail("the student's code must not run in the checks")  # noqa: E731
    assert torch.equal(checks.replay(1, never), torch.ones(2))
    with pytest.raises(ValueError, match="invalid literal"):  # the student's error, rebuilt
        checks.replay(2, never)
    with pytest.raises(AssertionError, match="did not run in your notebook: it timed out"):
        checks.replay(3, never, "it timed out")
    with pytest.raises(AssertionError, match="different order"):
        Recording(student.records).replay(2, never)


def test_an_observation_inside_another_is_part_of_the_outer_value():
    """A helper of the checks that calls the student's code, passed to the student's code:
    only the outer call crosses, as the checks replay only that one."""
    student = Recording()

    def helper(x):
        return student.observe(1, lambda: x * 2)  # the inner student call

    assert student.observe(2, lambda: helper(3) + 1) == 7
    assert [record[0] for record in student.records] == [2]
    assert Recording(student.records).replay(2, lambda: None) == 7
