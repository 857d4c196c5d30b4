"""Grading the course's nbgrader assignments: the ``transformer-course grade`` command.

Every chapter has an nbgrader assignment. Its source, with the reference solutions and the
hidden tests, is ``solutions/<assignment>/<assignment>.ipynb`` in the repository, and
``exercises/`` holds the released student version. Grading a folder of submissions, one
notebook per student named ``<student id>.ipynb``, takes four nbgrader steps in a private
course directory (a temporary one unless you name one):

1. ``generate_assignment`` records the assignment in the gradebook: its cells, points and
   hidden tests;
2. each submission is copied to ``submitted/<student>/<assignment>/<assignment>.ipynb``;
3. ``autograde`` puts the original test and read-only cells back (edited or deleted test
   cells do not count), then, instead of nbgrader's own execution, runs the submission
   isolated and scores its test cells from checks made in a clean process
   (:mod:`.execute`, :mod:`.sandbox`, :mod:`.observe`);
4. ``generate_feedback`` writes one HTML report per student, hidden tests removed.

``nbgrader autograde`` succeeds even when tests fail, so the scores are read from the
gradebook. Written answers are graded by hand: their points are reported as pending.
nbgrader is imported only when grading (``pip install nbgrader``).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

__all__ = [
    "GradingError",
    "Course",
    "Submission",
    "find_repository",
    "list_assignments",
    "grade_folder",
    "format_table",
]

CONFIG_FILE = "nbgrader_config.py"
SOURCE = "solutions"
MAX_SUBMISSION_BYTES = 8 << 20  # larger files are refused, so feedback stays small too
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}")


class GradingError(Exception):
    """A problem that stops grading altogether (the message says what to do)."""


def find_repository(start: Path | None = None) -> Path:
    """The course repository: the first folder, from ``start`` (the current directory) upwards,
    holding ``nbgrader_config.py`` and ``solutions/``; else the checkout this package is in."""
    start = Path.cwd() if start is None else Path(start)
    candidates = [start.resolve(), *start.resolve().parents, Path(__file__).resolve().parents[3]]
    for folder in candidates:
        if (folder / CONFIG_FILE).is_file() and (folder / SOURCE).is_dir():
            return folder
    raise GradingError(f"no course repository (a folder with {CONFIG_FILE} and {SOURCE}/) "
                       f"found from {start}; run from the repository or pass --repository")


def list_assignments(repository: Path) -> list[str]:
    """The assignments of the repository, e.g. ``["ch01_introduction", ...]``."""
    source = Path(repository) / SOURCE
    return sorted(p.parent.name for p in source.glob("*/*.ipynb") if p.stem == p.parent.name)


def resolve_assignment(repository: Path, name: str) -> str:
    """``name`` or the one assignment it is a prefix of (``ch02`` -> ``ch02_attention``)."""
    known = list_assignments(repository)
    matches = [a for a in known if a == name] or [a for a in known if a.startswith(name)]
    if len(matches) != 1:
        raise GradingError(f"unknown assignment {name!r}; the assignments are: "
                           + ", ".join(known))
    return matches[0]


def _put_alembic_on_path() -> None:
    """nbgrader runs the ``alembic`` command when it creates a gradebook; it is installed next
    to this Python, which is not on PATH when a virtual environment is used unactivated."""
    scripts = str(Path(sys.executable).parent)
    if shutil.which("alembic") is None and shutil.which("alembic", path=scripts):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")


class Course:
    """An nbgrader course directory whose configuration is the repository's
    ``nbgrader_config.py``, with its own root (and so its own gradebook).

    ``overrides`` are extra settings, e.g. ``{"Execute": {"timeout": 30}}``.
    """

    def __init__(self, root: Path, repository: Path, overrides: dict | None = None):
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import Config, PyFileConfigLoader

        _put_alembic_on_path()
        self.root = Path(root).resolve()
        self.log = ""
        self.repository = Path(repository).resolve()
        config = PyFileConfigLoader(CONFIG_FILE, path=str(self.repository)).load_config()
        config.merge(Config(overrides or {}))
        config.CourseDirectory.root = str(self.root)
        config.CourseDirectory.db_url = f"sqlite:///{self.root / 'gradebook.db'}"
        self.config = config
        self.coursedir = CourseDirectory(config=config)
        self.api = NbGraderAPI(coursedir=self.coursedir, config=config)

    def configure(self, overrides: dict) -> None:
        """Merge more settings (a new API object reads them)."""
        from nbgrader.apps import NbGraderAPI
        from traitlets.config import Config

        self.config.merge(Config(overrides))
        self.api = NbGraderAPI(coursedir=self.coursedir, config=self.config)

    def isolate(self, assignment: str, limits, isolation, scratch: Path) -> None:
        """Autograde ``assignment`` isolated (:class:`.execute.IsolatedExecute`) from now on,
        its throw-away folders under the private folder ``scratch``."""
        self.configure(isolated_autograde(self.source_notebook(assignment), limits, isolation,
                                          scratch))

    def source_notebook(self, assignment: str) -> Path:
        """The assignment's source notebook as this course holds it."""
        folder = Path(self.coursedir.source_directory)
        folder = folder if folder.is_absolute() else self.root / folder
        return folder / assignment / f"{assignment}.ipynb"

    def path(self, step: str, student: str, assignment: str) -> Path:
        """Where nbgrader keeps ``step`` (``submitted``, ``autograded``, ...) of a student."""
        return Path(self.coursedir.format_path(step, student, assignment))

    def _run(self, action: str, *args) -> dict:
        result = getattr(self.api, action)(*args)
        self.log = result.get("log", "") + result.get("error", "")
        return result

    def generate(self, assignment: str) -> Path:
        """Copy the assignment's source in (unless the course is the repository) and run
        ``generate_assignment``; return the released notebook."""
        source = self.repository / SOURCE / assignment
        if not source.is_dir():
            raise GradingError(f"no assignment source {source}")
        target = Path(self.coursedir.source_directory)
        target = target if target.is_absolute() else self.root / target
        if target / assignment != source:
            shutil.copytree(source, target / assignment, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        result = self._run("generate_assignment", assignment)
        if not result["success"]:
            raise GradingError(f"nbgrader generate_assignment {assignment} failed:\n{self.log}")
        return self.path(self.coursedir.release_directory, ".", assignment) / f"{assignment}.ipynb"

    def submit(self, assignment: str, student: str, notebook: Path) -> None:
        """Place a student's notebook where ``autograde`` looks for it."""
        folder = self.path(self.coursedir.submitted_directory, student, assignment)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shutil.copyfile(notebook, folder / f"{assignment}.ipynb")

    def autograde(self, assignment: str, student: str = "*") -> dict:
        """``nbgrader autograde`` for one student or, with ``"*"``, all submissions at once."""
        return self._run("autograde", assignment, student)

    def autograded(self, assignment: str, student: str) -> Path:
        return (self.path(self.coursedir.autograded_directory, student, assignment)
                / f"{assignment}.ipynb")

    def feedback(self, assignment: str, student: str) -> Path | None:
        """``nbgrader generate_feedback`` for one student; the HTML report, if written."""
        self._run("generate_feedback", assignment, student)
        report = self.path(self.coursedir.feedback_directory, student, assignment)
        report = report / f"{assignment}.html"
        return report if report.is_file() else None

    def scores(self, assignment: str) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """``(max_points, scores)``: the points of every graded cell (by ``grade_id``, in
        notebook order) and, per autograded student, the score of every graded cell."""
        from nbgrader.api import Gradebook

        order = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nbformat.read(
            self.repository / SOURCE / assignment / f"{assignment}.ipynb", as_version=4).cells]
        with Gradebook(self.coursedir.db_url) as gradebook:
            notebook = gradebook.find_notebook(assignment, assignment)
            max_points = {cell.name: cell.max_score for cell in notebook.grade_cells}
            scores = {}
            for submission in gradebook.assignment_submissions(assignment):
                if self.autograded(assignment, submission.student_id).is_file():
                    graded = gradebook.find_submission_notebook(
                        assignment, assignment, submission.student_id)
                    scores[submission.student_id] = {g.name: g.score for g in graded.grades}
        max_points = dict(sorted(max_points.items(), key=lambda item: order.index(item[0])))
        return max_points, scores

    def written_answers(self, assignment: str) -> set[str]:
        """The grade ids of the answers graded by hand (nbgrader's "manually graded answer")."""
        from nbgrader.api import Gradebook

        with Gradebook(self.coursedir.db_url) as gradebook:
            notebook = gradebook.find_notebook(assignment, assignment)
            return {cell.name for cell in notebook.solution_cells} & {
                cell.name for cell in notebook.grade_cells}


def keep_course(course_dir: Path, repository: Path) -> None:
    """Give a course directory that is kept an ``nbgrader_config.py`` loading the repository's,
    so that nbgrader's commands and formgrader work there afterwards."""
    config = Path(course_dir) / CONFIG_FILE
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "# Written by `transformer-course grade`: the course repository's settings, with\n"
            "# this folder as the course directory.\n"
            "import os\n\n"
            "c = get_config()  # noqa: F821\n"
            f"load_subconfig({str(Path(repository).resolve() / CONFIG_FILE)!r})  # noqa: F821\n"
            "c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))\n")


def _grade_ids(notebook: Path, solution: bool = False) -> set[str]:
    """The nbgrader cell ids of a notebook (only its answer cells with ``solution``)."""
    cells = nbformat.read(notebook, as_version=4).cells
    return {c.metadata["nbgrader"].get("grade_id") for c in cells if "nbgrader" in c.metadata
            and (c.metadata["nbgrader"].get("solution") or not solution)}


@dataclass
class Submission:
    """One file of the folder and what became of it."""

    student: str
    path: Path
    error: str | None = None
    scores: dict[str, float] = field(default_factory=dict)  # autograded cells only
    feedback: Path | None = None


def read_submissions(folder: Path) -> tuple[list[Submission], list[str]]:
    """The notebooks of ``folder`` (student id = file name without ``.ipynb``) and a note for
    every other file. Unreadable notebooks come back with their ``error`` set."""
    submissions, skipped = [], []
    for path in sorted(Path(folder).iterdir()):
        if path.name.startswith("."):
            continue  # .ipynb_checkpoints, .DS_Store, ...
        if path.suffix != ".ipynb" or not path.is_file() or path.is_symlink():
            skipped.append(f"{path.name}: skipped, not a .ipynb notebook")
            continue
        if not STUDENT_ID.fullmatch(path.stem):
            skipped.append(f"{path.name}: skipped, a student id is letters, digits and _.@+- "
                           "(at most 100 characters)")
            continue
        submission = Submission(path.stem, path)
        size = path.stat().st_size
        if size > MAX_SUBMISSION_BYTES:
            submission.error = (f"{size / 2**20:.1f} MB; a submission may be at most "
                                f"{MAX_SUBMISSION_BYTES >> 20} MB (clear the outputs and "
                                "submit again)")
            submissions.append(submission)
            continue
        try:
            with warnings.catch_warnings():  # cells without ids: nbgrader gives them ids
                warnings.simplefilter("ignore", nbformat.validator.MissingIDFieldWarning)
                nbformat.validate(nbformat.read(path, as_version=4))
        except Exception as error:  # JSON, encoding or schema errors alike
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            submission.error = f"not a valid notebook ({type(error).__name__}: {first_line})"
        submissions.append(submission)
    return submissions, skipped


@dataclass
class Report:
    assignment: str
    max_points: dict[str, float]  # every graded cell, in notebook order
    written: set[str]  # the cells among them graded by hand
    submissions: list[Submission]
    skipped: list[str]
    output: Path

    @property
    def autograded_tasks(self) -> list[str]:
        return [name for name in self.max_points if name not in self.written]

    @property
    def autograded_max(self) -> float:
        return sum(self.max_points[name] for name in self.autograded_tasks)

    @property
    def written_max(self) -> float:
        return sum(self.max_points[name] for name in self.written)


def isolated_autograde(assignment_source: Path, limits, isolation, scratch: Path) -> dict:
    """Settings of :class:`.execute.IsolatedExecute`, which ``nbgrader_config.py`` puts in
    place of nbgrader's execution (it also keeps hidden tests out of the feedback)."""
    from dataclasses import asdict

    return {"IsolatedExecute": {"source_notebook": str(assignment_source),
                                "limits": asdict(limits), "isolation": asdict(isolation),
                                "allow_unisolated": not isolation.filesystem,
                                "scratch": str(scratch)}}


def grade_folder(assignment: str, folder: Path, output: Path | None = None,
                 course_dir: Path | None = None, repository: Path | None = None,
                 allow_unisolated: bool = False, cell_timeout: float | None = None,
                 log=None) -> Report:
    """Autograde every notebook in ``folder``; write ``grades.csv`` and ``feedback/`` into
    ``output`` (default ``grades/<assignment>``) and return the report.

    Each submission runs in its own throw-away folder under every restriction the machine
    offers (:func:`.sandbox.probe`); without file-system isolation (Landlock) grading is
    refused unless ``allow_unisolated``. ``cell_timeout`` overrides the per-cell limit of
    ``nbgrader_config.py``. ``log`` (e.g. ``print``) hears which isolation is used.

    Raises ``GradingError`` for an unknown assignment, a folder without notebooks or a machine
    that cannot isolate; a file that cannot be graded gets an error in the report and the
    others are still graded.
    """
    from .execute import JOURNAL
    from .sandbox import Limits, fork_server, probe

    repository = find_repository() if repository is None else Path(repository)
    assignment = resolve_assignment(repository, assignment)
    folder = Path(folder)
    if not folder.is_dir():
        raise GradingError(f"{folder} is not a folder of submitted notebooks")
    submissions, skipped = read_submissions(folder)
    if not submissions:
        raise GradingError(f"no .ipynb submissions in {folder}"
                           + (f" ({len(skipped)} other files)" if skipped else ""))
    isolation = probe()
    if not isolation.filesystem and not allow_unisolated:
        raise GradingError(
            "this machine cannot isolate submissions: Landlock (Linux 5.13 or newer) is not "
            "available, so a submission could read other students' work and the course's "
            "files. Grade on such a Linux machine or in a container, or pass "
            "--allow-unisolated to accept the risk (book/instructors.md)")
    if log is not None:
        log(f"isolation: {isolation.describe()}")
    output = Path(output or Path("grades") / assignment)
    (output / "feedback").mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="nbgrader-course-") as temporary, \
            warnings.catch_warnings(), fork_server():
        warnings.filterwarnings("ignore", ".*not in session", module="nbgrader")  # SQLAlchemy's
        private = Path(temporary)
        os.chmod(private, 0o700)
        if course_dir is not None:
            keep_course(course_dir, repository)
        course = Course(Path(course_dir or private / "course"), repository)
        timeout = cell_timeout if cell_timeout is not None else course.config.Execute.timeout
        limits = Limits(cell_seconds=float(timeout))
        (private / "scratch").mkdir()
        course.isolate(assignment, limits, isolation, private / "scratch")
        answers = _grade_ids(course.generate(assignment), solution=True)
        lines = [f"isolation: {isolation.describe()}"]
        for submission in submissions:
            if submission.error is None and not answers & _grade_ids(submission.path):
                submission.error = ("none of the assignment's answer cells is in it (another "
                                    "assignment's notebook?)")
            if submission.error is None:
                course.submit(assignment, submission.student, submission.path)
                course.autograde(assignment, submission.student)
                journal = JOURNAL.pop((assignment, submission.student), {})
                lines.append(f"== autograde {submission.student}\n{course.log}"
                             + "".join(f"{key}: {value}\n" for key, value in journal.items()))
                if not course.autograded(assignment, submission.student).is_file():
                    errors = re.findall(r"^\s*(\w+(?:Error|Exception): .*)$", course.log, re.M)
                    reason = [e for e in errors if not e.startswith("NbGraderException")]
                    submission.error = "nbgrader could not autograde it" + (
                        f" ({reason[-1].strip()})" if reason else "") + "; see nbgrader.log"
                    deleted = re.match(r"KeyError: '(.*)'", reason[-1] if reason else "")
                    if deleted and deleted.group(1) in answers:  # nbgrader cannot restore it
                        submission.error = (
                            f"answer cell {deleted.group(1)!r} was deleted with its tests; copy "
                            "both back from the released notebook and grade it again")
        max_points, scores = course.scores(assignment)
        written = course.written_answers(assignment)
        for submission in submissions:
            if submission.error is None:
                submission.scores = {name: score for name, score in
                                     scores[submission.student].items() if name not in written}
                report = course.feedback(assignment, submission.student)
                if report is not None:
                    submission.feedback = output / "feedback" / f"{submission.student}.html"
                    shutil.copyfile(report, submission.feedback)
        (output / "nbgrader.log").write_text("\n".join(lines))

    report = Report(assignment, max_points, written, submissions, skipped, output)
    write_csv(report, output / "grades.csv")
    return report


def write_csv(report: Report, path: Path) -> None:
    """One row per submission: the autograded total, the points left to grade by hand, and the
    score of every autograded test cell (by ``grade_id``)."""
    tasks = report.autograded_tasks
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "status", "autograded_score", "autograded_max",
                         "written_points_to_grade", *tasks])
        for s in report.submissions:
            if s.error:
                writer.writerow([s.student, f"error: {s.error}", "",
                                 _number(report.autograded_max), _number(report.written_max),
                                 *[""] * len(tasks)])
            else:
                writer.writerow([s.student, "graded", _number(sum(s.scores.values())),
                                 _number(report.autograded_max), _number(report.written_max),
                                 *[_number(s.scores[t]) for t in tasks]])


def _number(value: float) -> str:
    return f"{value:g}"


def format_table(report: Report) -> str:
    """The score table the command prints."""
    width = max([7, *(len(s.student) for s in report.submissions)])
    lines = [f"{'student':<{width}}  {'autograded':>11}  {'written':>8}  details",
             f"{'-' * width}  {'-' * 11}  {'-' * 8}  {'-' * 7}"]
    auto_max, written_max = _number(report.autograded_max), _number(report.written_max)
    for s in report.submissions:
        if s.error:
            lines.append(f"{s.student:<{width}}  {'-':>11}  {'-':>8}  error: {s.error}")
            continue
        lost = [t for t in report.autograded_tasks if s.scores[t] < report.max_points[t]]
        details = "full marks" if not lost else "lost points on " + ", ".join(lost)
        score = f"{_number(sum(s.scores.values()))} / {auto_max}"
        lines.append(f"{s.student:<{width}}  {score:>11}  {'? / ' + written_max:>8}  {details}")
    lines.extend(report.skipped)
    return "\n".join(lines)
