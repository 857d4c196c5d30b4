"""The graded assignments, tested through nbgrader itself (book/instructors.md).

Every assignment under solutions/ is found automatically. The fast tests check its structure,
the registry of deliberately wrong submissions (tests/assignment_mutations.py) and the
released version in exercises/. The slow ones grade, for each assignment, one batch of
submissions with a single `nbgrader autograde` run in a temporary course directory, and read
the scores from nbgrader's gradebook (autograde succeeds even when tests fail):

- the reference solution must get full marks on every autograded task;
- the released notebook, unchanged, must get zero on every autograded task;
- every mutation must lose points on exactly the tasks it names;
- for the first assignment also: a submission that loops forever is stopped by the per-cell
  timeout while its other tasks and the rest of the batch are graded, and a submission whose
  test cells were deleted or edited is graded with the original tests.

Autograding uses the isolated execution of transformer_course.grading: each submission runs
in a sandbox and its checks in a second, clean process, both of which import torch (about
3 s of CPU each); with the solution, the blank and 2-5 mistakes per assignment, plus one 30 s
timeout, the module takes several minutes on a 2-core machine, which is why the grading tests
are marked slow. The static tests also hold every check to a message a student can act on,
and every graded function to being called with each combination of its optional arguments.
"""

import ast
import functools
import importlib.util
import itertools
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from assignment_mutations import MUTATIONS, Mutation
from traitlets.config import PyFileConfigLoader

from transformer_course.grading import Course, list_assignments
from transformer_course.grading.sandbox import Limits, fork_server, probe

ROOT = Path(__file__).resolve().parents[1]
# nbgrader's own noise: SQLAlchemy session warnings, and cells it puts back without an id.
pytestmark = [pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning"),
              pytest.mark.filterwarnings("ignore:Cell is missing an id field")]
ASSIGNMENTS = list_assignments(ROOT)
# The per-cell timeout of the test course: shorter than the configured one (checked below) to
# keep the infinite-loop test short, long enough for a cell that imports torch on a busy CI.
TEST_TIMEOUT = 30
LOOP_ASSIGNMENT = ASSIGNMENTS[0] if ASSIGNMENTS else None


def source(assignment: str) -> Path:
    return ROOT / "solutions" / assignment / f"{assignment}.ipynb"


def nbgrader_cells(nb) -> list:
    return [c for c in nb.cells if "nbgrader" in c.metadata]


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def is_test_cell(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")


def is_written_answer(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("grade")) and bool(meta.get("solution"))


def autograded_tasks(assignment: str) -> list[str]:
    """Task names, in order: the test cell ``<task>_tests`` grades the answer cell ``<task>``."""
    nb = nbformat.read(source(assignment), as_version=4)
    return [grade_id(c).removesuffix("_tests") for c in nb.cells if is_test_cell(c)]


def mutation_cases():
    return [pytest.param(a, m, id=f"{a}: {m.description}")
            for a in ASSIGNMENTS for m in MUTATIONS.get(a, [])]


def mutated(assignment: str, mutation: Mutation):
    nb = nbformat.read(source(assignment), as_version=4)
    for cell in nb.cells:
        cell.source = cell.source.replace(mutation.old, mutation.new)
    return nb


# ---------------------------------------------------------------------------- fast checks


def test_every_assignment_has_mutations_and_every_mutation_an_assignment():
    assert ASSIGNMENTS, "no assignments found under solutions/"
    assert set(MUTATIONS) == set(ASSIGNMENTS), "tests/assignment_mutations.py is out of step"
    for assignment, mutations in MUTATIONS.items():
        assert len(mutations) >= 2, f"{assignment}: at least two wrong submissions, please"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_assignment_follows_the_standard(assignment):
    path = source(assignment)
    nb = nbformat.read(path, as_version=4)
    assert re.match(r"# Assignment \d+: ", nb.cells[0].source), "the first cell holds the title"
    assert "setup" in nb.cells[2].metadata.get("tags", []), "run tools/sync_notebooks.py"
    cells = nbgrader_cells(nb)
    ids = [grade_id(c) for c in cells]
    assert all(ids) and len(set(ids)) == len(ids), f"grade ids must be set and unique: {ids}"
    tests = [c for c in cells if is_test_cell(c)]
    written = [c for c in cells if is_written_answer(c)]
    assert 3 <= len(tests) + len(written) <= 6, "3 to 6 graded tasks"
    assert written and all(c.cell_type == "markdown" for c in written), "a written answer"
    for cell in cells:
        meta = cell.metadata["nbgrader"]
        if meta.get("grade"):
            assert meta["points"] > 0, f"{grade_id(cell)} has no points"
    for cell in tests:
        # The cell before a test cell is its answer cell: autograde puts a deleted test cell
        # back after it, and the mutations name tasks by it.
        before = cells[cells.index(cell) - 1]
        assert grade_id(cell) == f"{grade_id(before)}_tests", f"{grade_id(cell)} follows its task"
        assert before.metadata["nbgrader"]["solution"] and before.cell_type == "code"
        assert cell.metadata["nbgrader"]["locked"], f"{grade_id(cell)} must be locked"
        assert "### BEGIN HIDDEN TESTS" in cell.source and "### END HIDDEN TESTS" in cell.source
        assert "### BEGIN SOLUTION" in before.source and "### END SOLUTION" in before.source


@pytest.mark.parametrize(("assignment", "mutation"), mutation_cases())
def test_mutation_applies_to_the_solution(assignment, mutation):
    nb = nbformat.read(source(assignment), as_version=4)
    count = sum(cell.source.count(mutation.old) for cell in nb.cells)
    assert count == 1, f"{mutation.old!r} occurs {count} times in {assignment}"
    assert mutation.loses and set(mutation.loses) <= set(autograded_tasks(assignment))


def _answer_signatures(nb) -> dict[str, tuple[list[str], list[str]]]:
    """Each function and class of the answer cells: (its parameters, the optional ones)."""
    found = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("solution"):
            continue
        for node in ast.parse(cell.source).body:
            function, skip = node, 0
            if isinstance(node, ast.ClassDef):
                function = next((m for m in node.body if isinstance(m, ast.FunctionDef)
                                 and m.name == "__init__"), None)
                skip = 1  # self
            if not isinstance(function, ast.FunctionDef):
                continue
            args = function.args
            positional = [a.arg for a in args.posonlyargs + args.args][skip:]
            optional = positional[len(positional) - len(args.defaults):] if args.defaults else []
            optional += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                         if d is not None]
            found[node.name] = (positional, optional)
    return found


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_check_says_what_is_wrong(assignment):
    """A student reads the message of a failed check, often nothing else: every assert and
    every assert_close of a test cell carries one ("Tensor-likes are not close!" is not)."""
    silent = []
    for cell in nbformat.read(source(assignment), as_version=4).cells:
        if not is_test_cell(cell):
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Assert) and node.msg is None:
                silent.append(f"{grade_id(cell)}:{node.lineno}: {ast.unparse(node)[:70]}")
            if (isinstance(node, ast.Call) and ast.unparse(node.func).endswith(
                    ("assert_close", "assert_equal", "assert_allclose"))
                    and not any(k.arg in ("msg", "err_msg") for k in node.keywords)):
                silent.append(f"{grade_id(cell)}:{node.lineno}: {ast.unparse(node)[:70]}")
    assert not silent, "checks without a message:\n" + "\n".join(silent)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_argument_combination_is_tested(assignment):
    """Each graded function (and class) is called with every combination of its optional
    arguments given or left out, so that a default handled wrongly cannot pass."""
    nb = nbformat.read(source(assignment), as_version=4)
    signatures = _answer_signatures(nb)
    seen = {name: set() for name in signatures}
    for cell in nb.cells:
        if not is_test_cell(cell):
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in signatures):
                continue
            if any(isinstance(a, ast.Starred) for a in node.args) or any(
                    k.arg is None for k in node.keywords):
                continue  # f(*args): which ones are given is not visible here
            positional, optional = signatures[node.func.id]
            given = set(positional[:len(node.args)]) | {k.arg for k in node.keywords}
            seen[node.func.id].add(frozenset(given & set(optional)))
    missing = []
    for name, (_, optional) in signatures.items():
        for size in range(len(optional) + 1):
            for combination in itertools.combinations(optional, size):
                if frozenset(combination) not in seen[name]:
                    missing.append(f"{name}({', '.join(combination) or 'no optional argument'})")
    assert not missing, "never called with exactly these optional arguments: " + "; ".join(
        missing)


def test_repository_nbgrader_configuration():
    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    assert Path(config.CourseDirectory.root) == ROOT
    assert config.CourseDirectory.source_directory == "solutions"
    assert config.CourseDirectory.release_directory == "exercises"
    assert 60 <= config.Execute.timeout <= 120, "a per-cell timeout stops infinite loops"
    assert config.Execute.interrupt_on_timeout, "interrupt, then grade the rest"
    assert config.OverwriteCells.add_missing_cells, "deleted test cells must come back"


def test_nbgrader_working_files_are_not_committed(tmp_path):
    paths = ["gradebook.db", "submitted/alice/x.ipynb", "autograded/alice/x.ipynb",
             "feedback/alice/x.html", "grades/ch01_introduction/grades.csv"]
    result = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True,
                            text=True)
    assert sorted(result.stdout.split()) == sorted(paths), "add them to .gitignore"


def _make_exercises():
    spec = importlib.util.spec_from_file_location("make_exercises",
                                                  ROOT / "tools" / "make_exercises.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exercises_are_what_nbgrader_generates_from_the_solutions(capsys):
    """exercises/ is never edited by hand: `make exercises` regenerates it."""
    assert _make_exercises().main(["--check"]) == 0, capsys.readouterr().out


def solution_lines(cell) -> list[str]:
    """The substantial lines between ### BEGIN SOLUTION and ### END SOLUTION."""
    region = re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", cell.source, re.S)
    lines = [line.strip() for part in region for line in part.splitlines()]
    return [line for line in lines if len(line) > 12 and not line.startswith("#")]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_hold_no_solutions_and_no_hidden_tests(assignment):
    released_path = ROOT / "exercises" / assignment / f"{assignment}.ipynb"
    released = nbformat.read(released_path, as_version=4)
    text = "\n".join(c.source for c in released.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    by_id = {grade_id(c): c for c in nbgrader_cells(released)}
    for cell in nbgrader_cells(nbformat.read(source(assignment), as_version=4)):
        out = by_id[grade_id(cell)]
        if is_written_answer(cell):
            assert out.source == "YOUR ANSWER HERE"
        elif cell.metadata["nbgrader"]["solution"]:
            assert "raise NotImplementedError()" in out.source
            leaked = [line for line in solution_lines(cell) if line in out.source]
            assert not leaked, f"solution code in the released notebook: {leaked}"
        else:  # a test cell: the visible tests only
            visible = re.sub(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", "", cell.source,
                             flags=re.S)
            assert out.source.strip() == visible.strip(), f"{grade_id(cell)}: hidden tests leak"


# ------------------------------------------------------------------- autograding batches


@dataclass
class Batch:
    """One assignment, its submissions autograded in one run."""

    course: Course
    assignment: str
    max_points: dict[str, float]  # every graded cell
    scores: dict[str, dict[str, float]]  # student -> graded cell -> score
    log: str

    def tasks(self, student: str) -> dict[str, float]:
        """The autograded tasks of a student: task -> score."""
        assert student in self.scores, f"{student} was not autograded:\n{self.log[-3000:]}"
        return {task: self.scores[student][f"{task}_tests"]
                for task in autograded_tasks(self.assignment)}

    def full(self, task: str) -> float:
        return self.max_points[f"{task}_tests"]

    def lost(self, student: str) -> set[str]:
        return {task for task, score in self.tasks(student).items() if score < self.full(task)}

    def errors(self, student: str) -> dict[str, list[str]]:
        """The names of the errors in each cell of the autograded notebook."""
        nb = nbformat.read(self.course.autograded(self.assignment, student), as_version=4)
        return {grade_id(c): [o.ename for o in c.outputs if o.output_type == "error"]
                for c in nb.cells if c.cell_type == "code"}


def loop_submission(assignment: str):
    """The solution, with an infinite loop at the top of the first answer cell."""
    nb = nbformat.read(source(assignment), as_version=4)
    first = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    first.source = "while True:  # never ends\n    pass\n" + first.source
    return nb, grade_id(first)


def tampered_submission(released: Path):
    """The blank release with its test cells deleted, edited, or stripped of their metadata:
    graded with the original tests, it must still score zero."""
    nb = nbformat.read(released, as_version=4)
    tests = [c for c in nb.cells if is_test_cell(c)]
    for number, cell in enumerate(tests):
        if number % 3 == 0:
            nb.cells.remove(cell)
        elif number % 3 == 1:
            cell.source = "print('all tests passed')"
        else:
            cell.source = "pass"
            del cell.metadata["nbgrader"]
    return nb


@functools.cache
def isolation():
    """What this machine offers (tests/test_grading.py checks the refusal without it)."""
    return probe()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """``batch(assignment)``: the assignment's submissions, autograded once (cached)."""
    done = {}

    def grade(assignment: str) -> Batch:
        if assignment not in done:
            root = tmp_path_factory.mktemp(f"course-{assignment}")
            course = Course(root, ROOT)
            scratch = tmp_path_factory.mktemp(f"scratch-{assignment}")
            course.isolate(assignment, Limits(cell_seconds=TEST_TIMEOUT), isolation(), scratch)
            released = course.generate(assignment)
            notebooks = {"solution": nbformat.read(source(assignment), as_version=4),
                         "blank": nbformat.read(released, as_version=4)}
            for number, mutation in enumerate(MUTATIONS.get(assignment, [])):
                notebooks[f"mutation-{number}"] = mutated(assignment, mutation)
            if assignment == LOOP_ASSIGNMENT:
                notebooks["infinite-loop"] = loop_submission(assignment)[0]
                notebooks["tampered"] = tampered_submission(released)
            for student, nb in notebooks.items():
                path = root / f"{student}.ipynb"
                nbformat.write(nb, path)
                course.submit(assignment, student, path)
            with fork_server():
                course.autograde(assignment)  # all of them, in one run
            max_points, scores = course.scores(assignment)
            done[assignment] = Batch(course, assignment, max_points, scores, course.log)
        return done[assignment]

    return grade


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_gets_full_marks(batch, assignment):
    graded = batch(assignment)
    assert graded.lost("solution") == set(), graded.errors("solution")


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_released_notebook_gets_zero_on_every_code_task(batch, assignment):
    graded = batch(assignment)
    scores = graded.tasks("blank")
    assert all(score == 0 for score in scores.values()), scores


@pytest.mark.slow
@pytest.mark.parametrize(("assignment", "mutation"), mutation_cases())
def test_mutation_loses_points_on_exactly_the_right_tasks(batch, assignment, mutation):
    graded = batch(assignment)
    student = f"mutation-{MUTATIONS[assignment].index(mutation)}"
    assert graded.lost(student) == set(mutation.loses), graded.errors(student)


@pytest.mark.slow
def test_an_infinite_loop_is_stopped_and_everything_else_still_graded(batch):
    graded = batch(LOOP_ASSIGNMENT)
    _, looping_task = loop_submission(LOOP_ASSIGNMENT)
    assert graded.lost("infinite-loop") == {looping_task}
    assert graded.tasks("infinite-loop")[looping_task] == 0
    assert "CellTimeoutError" in graded.errors("infinite-loop")[looping_task]
    assert graded.errors("infinite-loop")[f"{looping_task}_tests"], "its checks failed"
    assert graded.lost("solution") == set()  # graded after it in the same run


@pytest.mark.slow
def test_deleted_or_edited_test_cells_are_replaced_by_the_originals(batch):
    graded = batch(LOOP_ASSIGNMENT)
    scores = graded.tasks("tampered")
    assert all(score == 0 for score in scores.values()), scores
    autograded = nbformat.read(graded.course.autograded(LOOP_ASSIGNMENT, "tampered"), 4)
    original = nbformat.read(source(LOOP_ASSIGNMENT), as_version=4)
    restored = {grade_id(c): c.source for c in autograded.cells if is_test_cell(c)}
    for cell in original.cells:
        if is_test_cell(cell):  # the hidden tests ran too
            assert cell.source in restored[grade_id(cell)], f"{grade_id(cell)} not restored"
