"""Grade an assignment's reference solution, its blank release and its typical mistakes
through the isolated grader (transformer_course.grading), without nbgrader's bookkeeping.

The quick loop for an author editing test cells: the solution must pass every task, the
released notebook none, and every mutation of tests/assignment_mutations.py must fail exactly
the tasks it names. `make test` checks the same through nbgrader (tests/test_assignments.py).

    python tools/check_assignment.py ch06                 # solution, blank and mutations
    python tools/check_assignment.py ch06 ch07 --only solution -v
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from assignment_mutations import MUTATIONS  # noqa: E402

from transformer_course.grading.course import list_assignments, resolve_assignment  # noqa: E402
from transformer_course.grading.execute import check_submission, is_test  # noqa: E402
from transformer_course.grading.sandbox import Limits, fork_server, probe  # noqa: E402


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def source(assignment: str):
    return nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)


def released_with_tests(assignment: str):
    """The released notebook with its course cells put back, as nbgrader's autograde does."""
    original = {grade_id(c): c for c in source(assignment).cells if grade_id(c)}
    released = nbformat.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb",
                             as_version=4)
    for cell in released.cells:
        meta = cell.metadata.get("nbgrader", {})
        if grade_id(cell) and not meta.get("solution"):
            cell.source = original[grade_id(cell)].source
    return released


def cases(assignment: str, only: str | None):
    tasks = [grade_id(c).removesuffix("_tests") for c in source(assignment).cells if is_test(c)]
    if only in (None, "solution"):
        yield "solution", source(assignment), ()
    if only in (None, "blank"):
        yield "blank", released_with_tests(assignment), tuple(tasks)
    if only in (None, "mutations"):
        for mutation in MUTATIONS.get(assignment, []):
            nb = source(assignment)
            for cell in nb.cells:
                cell.source = cell.source.replace(mutation.old, mutation.new)
            yield mutation.description, nb, mutation.loses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("assignments", nargs="*", help="default: all")
    parser.add_argument("--only", choices=["solution", "blank", "mutations"])
    parser.add_argument("-v", "--verbose", action="store_true", help="show every message")
    args = parser.parse_args(argv)
    names = [resolve_assignment(ROOT, a) for a in args.assignments] or list_assignments(ROOT)
    isolation = probe()
    print(f"isolation: {isolation.describe()}")
    failures = 0
    with fork_server():
        failures = sum(grade(assignment, args, isolation) for assignment in names)
    return 1 if failures else 0


def grade(assignment: str, args, isolation) -> int:
    """Print one line per case of ``assignment``; how many came out wrong."""
    failures = 0
    for name, nb, loses in cases(assignment, args.only):
        start, journal = time.perf_counter(), {}
        verdicts = check_submission(nb, source(assignment), Limits(cell_seconds=60),
                                    isolation, journal=journal)
        failed = sorted(k.removesuffix("_tests") for k, v in verdicts.items()
                        if not v["passed"])
        good = set(failed) == set(loses)
        failures += not good
        print(f"[{'ok' if good else 'WRONG'}] {assignment}: {name}: failed {failed}"
              f"{'' if good else f', expected {sorted(loses)}'} "
              f"({time.perf_counter() - start:.1f} s)")
        if not good or args.verbose:
            for key, verdict in verdicts.items():
                if not verdict["passed"]:
                    print(f"    {key}: {verdict['message']}".replace("\n", "\n    "))
            for key in ("errors", "context_errors", "stopped", "checks_failed"):
                if journal.get(key):
                    print(f"    ({key}: {journal[key]})")
    return failures


if __name__ == "__main__":
    sys.exit(main())
