"""`transformer-course grade`: autograde a folder of submissions with nbgrader."""

import csv
import shutil
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from assignment_mutations import MUTATIONS
from traitlets.config import PyFileConfigLoader

from transformer_course import grading
from transformer_course.cli import main

ROOT = Path(__file__).resolve().parents[1]
# nbgrader's own noise: SQLAlchemy session warnings, and cells it puts back without an id.
pytestmark = [pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning"),
              pytest.mark.filterwarnings("ignore:Cell is missing an id field")]
ASSIGNMENT = "ch01_introduction"  # the quickest to grade
WRONG = MUTATIONS[ASSIGNMENT][1]  # scores not divided by sqrt(d_k): loses task "attend"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The command run once on a folder with a full-marks, a blank, a wrong and a corrupt
    submission, a chapter instead of the assignment, one with a task deleted, and a file that
    is not a notebook."""
    tmp = tmp_path_factory.mktemp("grading")
    folder = tmp / "submissions"
    folder.mkdir()
    solution = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    shutil.copy(solution, folder / "alice.ipynb")
    shutil.copy(ROOT / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", folder / "bob.ipynb")
    wrong = nbformat.read(solution, as_version=4)
    for cell in wrong.cells:
        cell.source = cell.source.replace(WRONG.old, WRONG.new)
    nbformat.write(wrong, folder / "carol.ipynb")
    (folder / "dave.ipynb").write_text('{"cells": [')  # truncated upload
    shutil.copy(ROOT / "chapters" / f"{ASSIGNMENT}.ipynb", folder / "erin.ipynb")  # wrong file
    gaps = nbformat.read(solution, as_version=4)  # task 2 deleted, answer and tests
    deleted = ("attend", "attend_tests")
    gaps.cells = [c for c in gaps.cells
                  if c.metadata.get("nbgrader", {}).get("grade_id") not in deleted]
    nbformat.write(gaps, folder / "frank.ipynb")
    (folder / "notes.txt").write_text("not a notebook")
    output, course = tmp / "grades", tmp / "course"
    argv = ["grade", "ch01", str(folder), "--output", str(output), "--course-dir", str(course)]
    return tmp, main(argv)


@pytest.fixture(scope="module")
def rows(graded):
    tmp, _ = graded
    with open(tmp / "grades" / "grades.csv", newline="") as file:
        return {row["student"]: row for row in csv.DictReader(file)}


@pytest.mark.slow
def test_exit_status_reports_the_files_that_could_not_be_graded(graded, capsys):
    _, status = graded
    assert status == 1


@pytest.mark.slow
def test_grades_csv_has_the_scores_from_the_gradebook(rows):
    assert set(rows) == {"alice", "bob", "carol", "dave", "erin", "frank"}
    tasks = ["softmax_tests", "attend_tests", "costs_tests"]
    assert rows["alice"]["status"] == "graded"
    assert (rows["alice"]["autograded_score"], rows["alice"]["autograded_max"]) == ("8", "8")
    assert rows["alice"]["written_points_to_grade"] == "3"
    assert [rows["alice"][t] for t in tasks] == ["3", "3", "2"]
    assert [rows["bob"][t] for t in tasks] == ["0", "0", "0"]
    assert rows["bob"]["autograded_score"] == "0"
    assert [rows["carol"][t] for t in tasks] == ["3", "0", "2"]
    assert rows["carol"]["autograded_score"] == "5"
    assert rows["dave"]["status"].startswith("error: not a valid notebook")
    assert rows["dave"]["autograded_score"] == ""
    assert "none of the assignment's answer cells" in rows["erin"]["status"]
    assert "answer cell 'attend' was deleted" in rows["frank"]["status"]


@pytest.mark.slow
def test_feedback_is_written_for_every_graded_student(graded):
    tmp, _ = graded
    feedback = tmp / "grades" / "feedback"
    assert sorted(p.name for p in feedback.iterdir()) == ["alice.html", "bob.html", "carol.html"]
    html = (feedback / "carol.html").read_text()
    assert "attend_tests" in html and "Score: 5.0 / 11.0" in html
    assert "NotImplementedError" in (feedback / "bob.html").read_text()


@pytest.mark.slow
def test_the_named_course_directory_is_kept_for_manual_grading(graded):
    tmp, _ = graded
    course = tmp / "course"
    assert (course / "gradebook.db").is_file()
    assert (course / "autograded" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    assert Path(config.CourseDirectory.root) == course  # the repository's settings, its root
    assert config.CourseDirectory.source_directory == "solutions"
    repository = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    assert config.Execute.timeout == repository.Execute.timeout


def test_score_table(tmp_path):
    report = grading.Report(
        "ch01_introduction", {"softmax_tests": 3.0, "attend_tests": 3.0, "reflection": 3.0},
        {"reflection"},
        [grading.Submission("alice", Path("a"), scores={"softmax_tests": 3.0, "attend_tests": 3.0}),
         grading.Submission("carol", Path("c"), scores={"softmax_tests": 3.0, "attend_tests": 0.0}),
         grading.Submission("dave", Path("d"), error="not a valid notebook (JSONDecodeError)")],
        ["notes.txt: skipped, not a .ipynb notebook"], tmp_path)
    table = grading.format_table(report)
    assert table.splitlines() == [
        "student   autograded   written  details",
        "-------  -----------  --------  -------",
        "alice          6 / 6     ? / 3  full marks",
        "carol          3 / 6     ? / 3  lost points on attend_tests",
        "dave               -         -  error: not a valid notebook (JSONDecodeError)",
        "notes.txt: skipped, not a .ipynb notebook",
    ]


def test_unknown_assignment_is_an_error_listing_the_assignments(tmp_path, capsys):
    assert main(["grade", "ch99_nothing", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown assignment 'ch99_nothing'" in err and "ch01_introduction" in err


def test_empty_or_missing_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no notebooks here")
    assert main(["grade", ASSIGNMENT, str(tmp_path), "--output", str(tmp_path / "out")]) == 1
    assert "no .ipynb submissions in" in capsys.readouterr().err
    assert main(["grade", ASSIGNMENT, str(tmp_path / "missing")]) == 1
    assert "is not a folder of submitted notebooks" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_corrupt_and_foreign_files_are_reported_before_grading(tmp_path):
    (tmp_path / "alice.ipynb").write_text("{ this is not json")
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "bob.ipynb")
    (tmp_path / "carol.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    submissions, skipped = grading.read_submissions(tmp_path)
    assert [(s.student, s.error is None) for s in submissions] == [("alice", False),
                                                                   ("bob", True)]
    assert submissions[0].error.startswith("not a valid notebook (")
    assert skipped == ["carol.pdf: skipped, not a .ipynb notebook"]


def test_the_repository_and_its_assignments_are_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the repository: the package's checkout is used
    assert grading.find_repository() == ROOT
    assert grading.find_repository(ROOT / "tests") == ROOT
    assert "ch01_introduction" in grading.list_assignments(ROOT)
    assert grading.resolve_assignment(ROOT, "ch02") == "ch02_attention"


# --------------------------------------------------------------- hostile submissions
# Graded in one batch with honest ones (book/instructors.md, "What the grader promises").

HIDDEN_LINE = "for n in [1, 2, 3, 17, 512, 10_000]:"  # a line of ch01's hidden tests
SOLUTION_LINE = "return seq_len - 1 if layer == \"rnn\" else 1"  # a line of the solution


def _with_cell(nb, code: str, after: str):
    """``nb`` with a cell of the student's own inserted after the cell ``after``."""
    index = next(i for i, c in enumerate(nb.cells)
                 if c.metadata.get("nbgrader", {}).get("grade_id") == after)
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return nb


def _hostile_submissions(course: Path, folder: Path) -> dict[str, object]:
    solution = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    released = ROOT / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    gradebook = course / "gradebook.db"
    alice_graded = course / "autograded" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"

    def blank():
        return nbformat.read(released, as_version=4)

    def honest():
        return nbformat.read(solution, as_version=4)

    def tampered():  # test cells deleted, or replaced by a print
        nb = blank()
        tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
                 and not c.metadata["nbgrader"].get("solution") and c.cell_type == "code"]
        nb.cells.remove(tests[0])
        for cell in tests[1:]:
            cell.source = "print('all tests passed')"
        return nb

    def wrong():  # every answer returns a wrong value instead of raising
        nb = blank()
        for cell in nb.cells:
            cell.source = cell.source.replace("raise NotImplementedError()", "return 0")
        return nb

    tamper = f"""
import sqlite3
for attempt in range(3):
    try:
        db = sqlite3.connect({str(gradebook)!r})
        db.execute("update grade set auto_score = 0")
        db.execute("update grade set auto_score = max_score where id is not null")
        db.commit()
    except Exception as error:
        print("gradebook:", error)
    try:
        open({str(alice_graded)!r}, "w").write("{{}}")
    except Exception as error:
        print("alice:", error)
"""
    disarm = """
import builtins, numpy, torch
torch.testing.assert_close = lambda *args, **kwargs: None
numpy.testing.assert_allclose = lambda *args, **kwargs: None
torch.equal = lambda *args, **kwargs: True
torch.allclose = lambda *args, **kwargs: True
torch.Tensor.__eq__ = lambda *args: torch.tensor(True)
builtins.isinstance = lambda *args: True
builtins.AssertionError = type("Harmless", (Exception,), {})
"""
    snoop = f"""
import os
for path in [{str(solution)!r}, {str(folder / 'alice.ipynb')!r}, {str(gradebook)!r}]:
    try:
        print(open(path, errors="replace").read()[:100000])
    except Exception as error:
        print("SNOOP" + "ED", error)  # the joined word appears only in printed output
print(get_ipython().user_ns.get("In"))
"""
    daemon = f"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        sys.argv[0] = "hostile-daemon-marker"
        for _ in range(600):
{textwrap.indent(tamper, " " * 12)}
            time.sleep(0.2)
    os._exit(0)
"""
    return {
        "alice": honest(),
        "bob": blank(),
        "mallory-gradebook": _with_cell(blank(), tamper, "course_code_1"),
        "mallory-daemon": _with_cell(blank(), daemon, "course_code_1"),
        "mallory-disarm": _with_cell(wrong(), disarm, "course_code_1"),
        "mallory-tampered": tampered(),
        "mallory-snoop": _with_cell(blank(), snoop, "course_code_1"),
        "mallory-hog": _with_cell(honest(), "block = bytearray(6 * 2**30)\n"
                                            "print('x' * 100_000_000)", "course_code_1"),
        "mallory-exit": _with_cell(honest(), "import os\nos._exit(0)", "softmax_tests"),
        "mallory-stubborn": _with_cell(honest(), "import signal\n"
                                                 "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                                 "while True:\n    pass", "softmax_tests"),
    }


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    folder, course = tmp / "submissions", tmp / "course"
    folder.mkdir()
    for student, nb in _hostile_submissions(course, folder).items():
        nbformat.write(nb, folder / f"{student}.ipynb")
    started = time.monotonic()
    report = grading.grade_folder(ASSIGNMENT, folder, tmp / "grades", course_dir=course,
                                  cell_timeout=10)
    return report, tmp, time.monotonic() - started


@pytest.mark.slow
def test_hostile_submissions_gain_nothing_and_honest_ones_keep_their_marks(hostile):
    report, _, seconds = hostile
    scores = {s.student: sum(s.scores.values()) for s in report.submissions}
    full = report.autograded_max
    assert all(s.error is None for s in report.submissions), [s.error for s in report.submissions]
    assert scores["alice"] == full, "an honest submission keeps full marks"
    for student in ("bob", "mallory-gradebook", "mallory-daemon", "mallory-disarm",
                    "mallory-snoop", "mallory-tampered"):
        assert scores[student] == 0, f"{student} gained {scores[student]} points"
    assert scores["mallory-hog"] == full, "its own limits hit, its answers still graded"
    first = report.max_points["softmax_tests"]
    assert scores["mallory-exit"] == scores["mallory-stubborn"] == first, \
        "graded up to the cell that ended (or hung) its notebook, nothing after"
    assert seconds < 600, "the batch finishes"


@pytest.mark.slow
def test_the_gradebook_and_graded_notebooks_were_not_touched(hostile):
    report, tmp, _ = hostile
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{tmp / 'course' / 'gradebook.db'}") as gradebook:
        alice = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, "alice")
        assert alice.score == report.autograded_max
    graded = tmp / "course" / "autograded" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nbformat.validate(nbformat.read(graded, as_version=4))


@pytest.mark.slow
def test_no_process_of_a_submission_outlives_grading(hostile):
    alive = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        try:
            if b"hostile-daemon-marker" in (entry / "cmdline").read_bytes():
                alive.append(entry.name)
        except OSError:
            continue
    assert not alive, f"left running: {alive}"


@pytest.mark.slow
def test_feedback_is_bounded_and_holds_no_hidden_tests_or_others_work(hostile):
    report, tmp, _ = hostile
    for submission in report.submissions:
        html = submission.feedback.read_text()
        assert len(html) < 2_000_000, f"{submission.student}: {len(html)} bytes of feedback"
        assert HIDDEN_LINE not in html, f"{submission.student}'s feedback shows hidden tests"
        if submission.student != "alice":
            assert SOLUTION_LINE not in html, f"{submission.student}'s feedback shows a solution"
    snoop = (tmp / "grades" / "feedback" / "mallory-snoop.html").read_text()
    assert "SNOOPED" not in snoop, "what the student's process printed never reaches feedback"


@pytest.mark.slow
def test_failed_checks_tell_the_student_what_is_wrong(hostile):
    report, tmp, _ = hostile
    html = (tmp / "grades" / "feedback" / "bob.html").read_text()
    assert "NotImplementedError" in html, "the stub's error, shown at its task"
    assert "All checks passed" in (tmp / "grades" / "feedback" / "alice.html").read_text()


def test_grading_is_refused_where_submissions_cannot_be_isolated(tmp_path, monkeypatch, capsys):
    from transformer_course.grading import sandbox

    shutil.copy(ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", tmp_path / "a.ipynb")
    monkeypatch.setattr(sandbox, "probe", lambda: sandbox.Isolation(landlock_abi=0))
    assert main(["grade", ASSIGNMENT, str(tmp_path), "--output", str(tmp_path / "out")]) == 1
    assert "cannot isolate submissions" in capsys.readouterr().err


def test_oversized_and_oddly_named_submissions_are_refused_before_grading(tmp_path):
    (tmp_path / "big.ipynb").write_bytes(b" " * (grading.course.MAX_SUBMISSION_BYTES + 1))
    (tmp_path / "-rf.ipynb").write_text("{}")
    submissions, skipped = grading.read_submissions(tmp_path)
    assert [s.student for s in submissions] == ["big"]
    assert "at most 8 MB" in submissions[0].error
    assert skipped and "student id" in skipped[0]
