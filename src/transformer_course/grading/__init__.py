"""Grading the course's assignments: ``transformer-course grade`` (see :mod:`.course`).

Submissions are code from strangers: :mod:`.sandbox` runs each one isolated, :mod:`.observe`
and :mod:`.runner` keep the checks that award points out of the student's reach, and
:mod:`.execute` plugs both into nbgrader's autograde step.

The names of :mod:`.course` are loaded on first use: the sandboxed processes import
:mod:`.observe` only and should not pay for nbformat and nbgrader.
"""

from .observe import observed

_COURSE = ["Course", "GradingError", "Report", "Submission", "find_repository", "format_table",
           "grade_folder", "list_assignments", "read_submissions", "resolve_assignment"]
__all__ = [*_COURSE, "observed"]


def __getattr__(name):
    if name in _COURSE or name == "course":
        import importlib

        course = importlib.import_module(f"{__name__}.course")
        return course if name == "course" else getattr(course, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
