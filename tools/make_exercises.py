"""Generate the released assignments, exercises/, from their nbgrader sources in solutions/.

exercises/ is nbgrader's release directory: never edit it by hand; regenerate it after changing
an assignment's source (`make exercises` runs this):

    python tools/make_exercises.py                  # every assignment
    python tools/make_exercises.py ch02_attention   # one
    python tools/make_exercises.py --check          # exit 1 if exercises/ is stale

It runs `nbgrader generate_assignment` with the repository's nbgrader_config.py in a temporary
course directory, so the gradebook nbgrader writes is temporary too (no gradebook.db in the
repository), then replaces exercises/<assignment>/ with the result. Run
`python tools/sync_notebooks.py` first: it writes the Colab badge and setup cell of the sources.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat

from transformer_course.grading import Course, list_assignments

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "exercises"


def generate(assignments: list[str], workdir: Path) -> dict[str, Path]:
    """Release ``assignments`` in a course directory under ``workdir``; their folders there."""
    course = Course(workdir, ROOT)
    return {name: course.generate(name).parent for name in assignments}


def comparable(path: Path) -> list:
    """What must not differ between two releases: every cell's type, source and metadata
    that nbgrader or the book reads, and the kernel (not ids, outputs or format versions)."""
    nb = nbformat.read(path, as_version=4)
    cells = [(c.cell_type, c.source, c.metadata.get("nbgrader"), c.metadata.get("tags"),
              c.metadata.get("deletable"), c.metadata.get("editable")) for c in nb.cells]
    return [nb.metadata.get("kernelspec"), *cells]


def differences(expected: Path, actual: Path) -> list[str]:
    """How the released folder ``actual`` differs from the freshly generated ``expected``."""
    found = []
    expected_files = {p.relative_to(expected) for p in expected.rglob("*") if p.is_file()}
    actual_files = {p.relative_to(actual) for p in actual.rglob("*") if p.is_file()}
    for missing in sorted(expected_files - actual_files):
        found.append(f"missing {missing}")
    for extra in sorted(actual_files - expected_files):
        found.append(f"unexpected {extra}")
    for name in sorted(expected_files & actual_files):
        if name.suffix == ".ipynb":
            want, have = comparable(expected / name), comparable(actual / name)
            if len(want) != len(have):
                found.append(f"{name}: {len(have) - 1} cells instead of {len(want) - 1}")
            else:
                found += [f"{name}: cell {i - 1} differs" if i else f"{name}: kernelspec differs"
                          for i, (w, h) in enumerate(zip(want, have, strict=True)) if w != h]
        elif (expected / name).read_bytes() != (actual / name).read_bytes():
            found.append(f"{name} differs")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    parser.add_argument("--check", action="store_true", help="only compare; change nothing")
    args = parser.parse_args(argv)
    known = list_assignments(ROOT)
    unknown = sorted(set(args.assignments) - set(known))
    if unknown:
        parser.error(f"unknown assignments {unknown}; known: {known}")
    names = args.assignments or known
    # Released assignments whose source is gone are stale too (only when doing them all).
    orphans = [] if args.assignments else sorted(
        p.name for p in RELEASE.glob("*") if p.is_dir() and p.name not in known)
    with tempfile.TemporaryDirectory(prefix="make-exercises-") as workdir:
        generated = generate(names, Path(workdir))
        stale = {name: differences(folder, RELEASE / name) for name, folder in generated.items()}
        stale = {name: found for name, found in stale.items() if found}
        if args.check:
            for name, found in stale.items():
                print(f"exercises/{name} is not what solutions/{name} generates:")
                print("\n".join(f"  {line}" for line in found))
            for name in orphans:
                print(f"exercises/{name} has no source in solutions/")
            if stale or orphans:
                print("run: make exercises (python tools/make_exercises.py)")
                return 1
            return 0
        for name in stale:
            shutil.rmtree(RELEASE / name, ignore_errors=True)
            shutil.copytree(generated[name], RELEASE / name)
            print(f"wrote exercises/{name}")
        for name in orphans:
            shutil.rmtree(RELEASE / name)
            print(f"removed exercises/{name} (no source in solutions/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
