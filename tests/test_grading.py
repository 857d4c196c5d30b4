"""`transformer-course grade`: autograde a folder of submissions with nbgrader."""

import csv
import shutil
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
