"""nbgrader's autograde step with the execution done in isolation (:class:`IsolatedExecute`).

``nbgrader autograde`` normally runs a submission in a Jupyter kernel of the grader's own
user, next to the gradebook, with the test cells inside the student's process. This
preprocessor takes the place of nbgrader's ``Execute`` in the autograde pipeline; nbgrader's
other steps are kept (restoring the original test cells, saving the scores in the gradebook,
the feedback):

1. the submission runs in a throw-away folder in the sandbox (:mod:`.sandbox`), test cells
   rewritten to record what the student's code returns (:mod:`.observe`);
2. once that process and everything it started are gone, the test cells run again in a fresh
   process that never ran the student's code, on the recorded values;
3. each test cell gets an output saying it passed, or an error saying what is wrong, from
   which nbgrader's ``SaveAutoGrades`` scores it.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Dict, Unicode

from .observe import instrument_cells, student_names
from .sandbox import Isolation, Limits, probe, run_sandboxed

__all__ = ["IsolatedExecute", "JOURNAL", "course_cells", "check_submission"]

HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
# What the grader learnt about each submission (isolation, errors, limits hit), by
# (assignment, student): read by grade_folder for its log.
JOURNAL: dict[tuple[str, str], dict] = {}


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def is_answer(cell) -> bool:
    return cell.cell_type == "code" and bool(_meta(cell).get("solution"))


def is_test(cell) -> bool:
    meta = _meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def is_course_cell(cell) -> bool:
    """A code cell the course wrote and nbgrader restores: a test or a read-only cell."""
    meta = _meta(cell)
    return (cell.cell_type == "code" and bool(meta.get("grade_id")) and not meta.get("solution")
            and (meta.get("grade") or meta.get("locked")))


def course_cells(source: nbformat.NotebookNode) -> tuple[set[str], dict[str, dict]]:
    """The student's names and, by grade id in notebook order, the course's code cells with
    their observation points, kind (``test`` or ``context``) and first hidden line."""
    names = student_names([c.source for c in source.cells if is_answer(c)])
    cells = [c for c in source.cells if is_course_cell(c)]
    rewritten = instrument_cells([c.source for c in cells], names)
    result = {}
    for cell, text in zip(cells, rewritten, strict=True):
        hidden = next((i + 1 for i, line in enumerate(cell.source.splitlines())
                       if line.strip() == HIDDEN_BEGIN), 10 ** 9)
        result[_meta(cell)["grade_id"]] = {"source": text, "original": cell.source,
                                           "hidden_from": hidden,
                                           "kind": "test" if is_test(cell) else "context"}
    return names, result


class IsolatedExecute(NbGraderPreprocessor):
    """Runs the submission isolated and scores its test cells from checks in a separate,
    clean process (see the module's doc).

    ``nbgrader_config.py`` puts it in place of nbgrader's ``Execute``, so plain ``nbgrader
    autograde`` is isolated too; ``transformer-course grade`` sets the traits below. Without
    file-system isolation on the machine it refuses, unless ``allow_unisolated``."""

    source_notebook = Unicode("", help="the assignment's source notebook (default: found in "
                              "the course's source directory)").tag(config=True)
    limits = Dict({}, help="Limits fields overriding the defaults").tag(config=True)
    isolation = Dict({}, help="Isolation fields (default: sandbox.probe())").tag(config=True)
    allow_unisolated = Bool(False, help="grade even without file-system isolation").tag(
        config=True)
    scratch = Unicode("", help="a private folder for the throw-away directories").tag(
        config=True)

    def preprocess(self, nb, resources):
        assignment = resources["nbgrader"]["assignment"]
        student = resources["nbgrader"]["student"]
        source = nbformat.read(self._source(assignment, resources["nbgrader"]["notebook"]),
                               as_version=4)
        isolation = Isolation(**self.isolation) if self.isolation else probe()
        if not isolation.filesystem and not self.allow_unisolated:
            raise RuntimeError("this machine cannot isolate submissions (no Landlock): set "
                               "IsolatedExecute.allow_unisolated to grade anyway")
        limits = dict(self.limits)
        limits.setdefault("cell_seconds", float(self.config.Execute.get("timeout", 90) or 90))
        journal = JOURNAL.setdefault((assignment, student), {})
        verdicts = check_submission(nb, source, Limits(**limits), isolation,
                                    self.scratch or None, journal)
        for cell in nb.cells:
            if is_test(cell):
                cell.outputs = [_output(verdicts.get(_meta(cell)["grade_id"]))]
        return nb, resources

    def _source(self, assignment: str, notebook: str) -> str:
        if self.source_notebook:
            return self.source_notebook
        directory = self.config.CourseDirectory
        root = directory.get("root", ".")
        return str(Path(root, directory.get("source_directory", "source"), assignment,
                        f"{notebook}.ipynb"))


def check_submission(nb, source, limits: Limits, isolation: Isolation, scratch=None,
                     journal: dict | None = None) -> dict[str, dict]:
    """Run ``nb`` (a submission whose course cells are the originals) isolated and check it
    against ``source``: ``{test grade id: {"passed": bool, "name", "message", "line"}}``.
    ``journal`` receives what happened (isolation, errors, limits hit)."""
    journal = {} if journal is None else journal
    names, course = course_cells(source)
    folder = Path(tempfile.mkdtemp(prefix="submission-", dir=scratch))
    try:
        stopped = _run_submission(nb, course, folder / "student", limits, isolation, journal)
        return _run_checks(names, course, stopped, folder, limits, isolation, journal)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_submission(nb, course, folder, limits, isolation, journal) -> dict[str, str]:
    """Run the notebook in the sandbox; return why each course cell stopped, if it did.
    The folder holds the student's notebook and the job, nothing else of the course."""
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / "submission.ipynb")
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    cells, keys = [], {}
    for index, cell in enumerate(code_cells):
        key = _meta(cell).get("grade_id")
        if is_course_cell(cell) and key in course:
            cells.append({"index": index, "kind": "course", "source": course[key]["source"]})
            keys[index] = key
        else:  # an answer cell, or a cell the student added
            cells.append({"index": index, "kind": "student", "source": cell.source})
    job = {"cells": cells, "observations": str(folder / "observations"),
           "output_bytes": limits.output_bytes}
    (folder / "job.json").write_text(json.dumps(job))
    result = run_sandboxed([sys.executable, "-m", "transformer_course.grading.runner",
                            "notebook", str(folder / "job.json")], folder, limits, isolation)
    journal.update(isolation=result.isolation, stopped=result.stopped,
                   output=(result.stdout + result.stderr)[-4000:])
    timeout = f"stopped after {limits.cell_seconds:g} s, the time limit of a cell"
    reason = {"cell timeout": f"your notebook was stopped: a cell ignored the interrupt "
                              f"after {limits.cell_seconds:g} s",
              "total timeout": "your notebook ran past the time limit of "
                               f"{limits.total_seconds:g} s",
              "folder size": "your notebook wrote more files than allowed",
              "status flood": "your notebook was stopped"}.get(result.stopped or "", "")
    stopped, errors = {}, {}
    ended = {e.get("index") for e in result.events if e.get("event") == "end"}
    interrupted = {e.get("index") for e in result.events if e.get("event") == "interrupted"}
    for event in result.events:
        index = event.get("index")
        if event.get("event") != "end" or not isinstance(index, int) \
                or not 0 <= index < len(code_cells):
            continue
        if index in keys and index in interrupted:
            stopped[keys[index]] = f"the cell was {timeout}"
        if event.get("error"):
            errors[keys.get(index, _meta(code_cells[index]).get("grade_id", f"cell {index}"))] \
                = str(event["error"])[:300]
        if index not in keys and event.get("error"):  # the student's cell: show its error
            code_cells[index].outputs = [_student_error(event, index in interrupted, timeout)]
    for index, key in keys.items():
        if index not in ended:
            stopped.setdefault(key, reason or "your notebook stopped before this cell "
                                              f"(exit status {result.returncode})")
    journal["errors"] = errors
    # Keep the observations only: nothing else of the student's folder is read.
    observations = folder / "observations"
    target = folder.parent / "observations"
    target.mkdir(exist_ok=True)
    if observations.is_dir() and not observations.is_symlink():
        for index, key in keys.items():
            recorded = observations / f"{index}.pt"
            if recorded.is_file() and not recorded.is_symlink():
                shutil.copyfile(recorded, target / f"{key}.pt")
    return stopped


def _student_error(event: dict, interrupted: bool, timeout: str):
    if interrupted:
        return nbformat.v4.new_output("error", ename="CellTimeoutError", evalue=timeout,
                                      traceback=[f"CellTimeoutError: {timeout}"])
    name, _, message = str(event["error"]).partition(": ")
    return nbformat.v4.new_output("error", ename=name[:100], evalue=message[:300],
                                  traceback=[str(event["error"])[:400]])


def _run_checks(names, course, stopped, scratch, limits, isolation, journal) -> dict:
    folder = scratch / "checks"
    folder.mkdir()
    (scratch / "observations").mkdir(exist_ok=True)
    shutil.move(scratch / "observations", folder / "observations")
    cells = [{"index": key, "key": key, **info} for key, info in course.items()]
    job = {"cells": cells, "student_names": sorted(names),
           "observations": str(folder / "observations"),
           "stopped": {key: reason for key, reason in stopped.items()},
           "verdicts": str(folder / "verdicts.json")}
    (folder / "job.json").write_text(json.dumps(job))
    result = run_sandboxed([sys.executable, "-m", "transformer_course.grading.runner",
                            "checks", str(folder / "job.json")], folder, limits, isolation)
    verdicts_file = folder / "verdicts.json"
    if not verdicts_file.is_file():
        journal["checks_failed"] = (result.stopped, result.stderr[-2000:])
        return {}
    verdicts = json.loads(verdicts_file.read_text())
    journal["context_errors"] = verdicts.pop("_context_errors", {})
    return verdicts


def _output(verdict: dict | None):
    if verdict is None:
        verdict = {"passed": False, "name": "Error",
                   "message": "the checks could not be run on your notebook"}
    if verdict["passed"]:
        return nbformat.v4.new_output("stream", name="stdout", text="All checks passed.\n")
    message = re.sub(r"\s+\n", "\n", verdict["message"])
    return nbformat.v4.new_output("error", ename=verdict["name"], evalue=message,
                                  traceback=[f"{verdict['name']}: {message}"])
