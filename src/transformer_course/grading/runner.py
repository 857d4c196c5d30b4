"""The two programs of a grading run, each started by :func:`sandbox.run_sandboxed`.

``python -m transformer_course.grading.runner notebook JOB`` runs in the student's sandbox:
the submission's cells in order in an IPython shell (so magics work as in Jupyter), the
course's cells with their observation points (:mod:`.observe`), each observed value saved
as data in ``observations/<cell>.pt``. Nothing it reports is trusted: it only produces data.

``python -m transformer_course.grading.runner checks JOB`` is the grader's side, started in a
fresh process: the course's cells again, every observation answered from the recording,
every check computed by untouched libraries. It writes ``verdicts.json``: for every test cell,
whether it passed and, if not, what the student is told.

Both report ``{"event": "start" | "end", "index": i}`` on the status descriptor, so the
supervisor can hold each cell to its time limit.
"""

from __future__ import annotations

import io
import json
import os
import sys
import traceback
from pathlib import Path

MAX_OBSERVATION_FILE = 80 << 20
MAX_MESSAGE = 500  # characters of a failed check's message shown to the student


class _StatusChannel:
    def __init__(self):
        fd = int(os.environ.get("GRADER_STATUS_FD", "-1"))
        self.fd = os.dup(fd) if fd >= 0 else -1  # the student's code may close the original

    def send(self, **event) -> None:
        if self.fd >= 0:
            try:
                os.write(self.fd, (json.dumps(event) + "\n").encode())
            except OSError:
                pass


class _CappedStream(io.TextIOBase):
    """sys.stdout / sys.stderr of a cell: passes the first ``cap`` bytes on, counts the rest."""

    def __init__(self, target, cap: int):
        self.target, self.cap, self.written, self.dropped = target, cap, 0, 0

    def reset(self) -> None:
        self.written = self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        text = str(text)
        room = self.cap - self.written
        if room > 0:
            part = text[:room]
            self.target.write(part)
            self.written += len(part)
        self.dropped += max(len(text) - max(room, 0), 0)
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    return f"{type(error).__name__}: {str(error)[:300]}"


def run_notebook(job_path: Path) -> int:
    """The student's side (see the module's doc)."""
    job = json.loads(job_path.read_text())
    status = _StatusChannel()
    # Imported before any of the student's code runs; the student can still replace them
    # in this process, which changes nothing but the data this process produces.
    import torch
    from IPython.core.interactiveshell import InteractiveShell

    from transformer_course.grading.observe import OBSERVE, Recording, observed

    output_dir = Path(job["observations"])
    output_dir.mkdir(parents=True, exist_ok=True)
    shell = InteractiveShell.instance()
    shell.user_ns["observed"] = observed
    cap = int(job.get("output_bytes", 65536))
    stdout, stderr = _CappedStream(sys.stdout, cap), _CappedStream(sys.stderr, cap)
    sys.stdout, sys.stderr = stdout, stderr
    for cell in job["cells"]:
        index = cell["index"]
        stdout.reset()
        stderr.reset()
        recording = Recording() if cell["kind"] == "course" else None
        if recording is not None:
            shell.user_ns[OBSERVE] = recording.observe
        status.send(event="start", index=index)
        error = None
        try:
            result = shell.run_cell(cell["source"], store_history=True, silent=False)
            error = result.error_before_exec or result.error_in_exec
        except BaseException as failure:  # SystemExit and the like from the student's code
            error = failure
        if recording is not None:
            try:
                torch.save(recording.records, output_dir / f"{index}.pt")
            except Exception as failure:  # an unsavable value: the checks will say so
                error = error or failure
        status.send(event="end", index=index, error=_error_text(error),
                    output_dropped=stdout.dropped + stderr.dropped)
    status.send(event="done")
    return 0


class _Replay:
    def __init__(self, job: dict):
        self.job = job
        self.folder = Path(job["observations"])

    def recording(self, index: int):
        from transformer_course.grading.observe import Recording

        path = self.folder / f"{index}.pt"
        if not path.is_file():
            return Recording([])
        if path.stat().st_size > MAX_OBSERVATION_FILE:
            raise AssertionError("your code produced more data than the checks accept")
        import torch

        try:
            records = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise AssertionError(f"the values your code produced could not be read back "
                                 f"({type(error).__name__})") from None
        if not isinstance(records, list):
            raise AssertionError("the values your code produced could not be read back")
        return Recording(records)


def hidden_lines(cells: list[dict]) -> list[str]:
    """The lines of every hidden test, longest first: the student's process ran them and may
    try to smuggle them into a message, through a value that the message quotes."""
    lines = set()
    for cell in cells:
        source = cell["source"].splitlines()
        lines.update(line.strip() for line in source[cell.get("hidden_from", 10 ** 9):])
    return sorted((line for line in lines if len(line) >= 8), key=len, reverse=True)


def _redact(message: str, hidden: list[str]) -> str:
    for line in hidden:
        if line in message:
            message = message.replace(line, "[hidden test]")
    return message


def _failure_message(error: BaseException, cell: dict,
                     hidden: list[str] = ()) -> tuple[str, str, int | None]:
    """(exception name, message for the student, line) of a failed check; the line and the
    message of a hidden check never quote the hidden source."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if f.filename == f"<cell {cell['index']}>"]
    line = frames[-1].lineno if frames else None
    visible = line is not None and line < cell.get("hidden_from", 10 ** 9)
    message = _redact(str(error).strip(), hidden)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + " [...]"
    name = type(error).__name__
    if name == "StudentCodeError":
        name = "Error"
    where = f"line {line}" if visible else "a hidden check"
    if isinstance(error, NotImplementedError) and not message:
        message = "not implemented yet (the function still raises NotImplementedError)"
    if not message and not isinstance(error, AssertionError):
        message = f"raised at {where}"
    elif not message:
        source_lines = cell.get("original", cell["source"]).splitlines()
        quoted = source_lines[line - 1].strip() if visible and line <= len(source_lines) else ""
        message = f"failed at {where}" + (f": {quoted}" if quoted else "")
    elif not isinstance(error, AssertionError):
        message = f"{message} (raised at {where})"
    elif not visible:
        message = f"{message} (a hidden check)"
    return name, message, line if visible else None


def run_checks(job_path: Path) -> int:
    """The grader's side (see the module's doc)."""
    job = json.loads(job_path.read_text())
    status = _StatusChannel()
    import builtins

    from transformer_course.grading.observe import OBSERVE, Phantom, observed

    replay = _Replay(job)
    namespace = {"__name__": "__main__", "__builtins__": builtins, "observed": observed}
    for name in job["student_names"]:
        namespace[name] = Phantom(f"{name} (your code)")
    verdicts = {}
    hidden = hidden_lines(job["cells"])
    sink = io.StringIO()
    real_stdout, real_stderr = sys.stdout, sys.stderr
    for cell in job["cells"]:
        index = cell["index"]
        status.send(event="start", index=index)
        stopped = job["stopped"].get(str(index), "")
        error = None
        try:
            recording = replay.recording(index)
            namespace[OBSERVE] = lambda site, thunk, r=recording, s=stopped: r.replay(site, thunk,
                                                                                       s)
            code = compile(cell["source"], f"<cell {index}>", "exec")
            sys.stdout = sys.stderr = sink
            try:
                exec(code, namespace)  # noqa: S102 (the course's own cell)
            finally:
                sys.stdout, sys.stderr = real_stdout, real_stderr
                sink.seek(0)
                sink.truncate()
            if cell["kind"] == "test" and recording.position < len(recording.records):
                raise AssertionError("your notebook recorded values that the checks did not "
                                     "ask for (did your code change the test?)")
        except BaseException as failure:
            error = failure
        if cell["kind"] == "test":
            if error is None:
                verdicts[cell["key"]] = {"passed": True}
            else:
                name, message, line = _failure_message(error, cell, hidden)
                verdicts[cell["key"]] = {"passed": False, "name": name, "message": message,
                                         "line": line}
        elif error is not None:
            verdicts.setdefault("_context_errors", {})[cell["key"]] = _error_text(error)
        status.send(event="end", index=index, error=_error_text(error))
    Path(job["verdicts"]).write_text(json.dumps(verdicts))
    status.send(event="done")
    return 0


if __name__ == "__main__":
    mode, path = sys.argv[1], Path(sys.argv[2])
    sys.exit(run_notebook(path) if mode == "notebook" else run_checks(path))
