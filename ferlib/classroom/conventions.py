"""The conventions that define an exercise in an instructor notebook (the package
docstring, :mod:`ferlib.classroom`, states them): markers, nbgrader metadata, points, and
:func:`mark_exercises`, which writes that metadata from the headings and markers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # nbformat, nbgrader and nbclient are imported where used: dev extra
    from nbformat import NotebookNode

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
STUDENT_DIR = "student"  # the student edition: notebooks/student/<same name>.ipynb

SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUB = "raise NotImplementedError()"
DEFAULT_POINTS = 2
DEFAULT_TIMEOUT = 600  # seconds per cell; the quick profile's longest cell takes ~80 s

BADGE_PATH = "/notebooks/"
BOOTSTRAP_ANCHOR = "import ferlib.course\n"
BOOTSTRAP_LINE = (
    "\nferlib.course.leave_student_folder()  # the student edition works from notebooks/ too\n"
)
STUDENT_NOTE = (
    "> **Student edition.** Replace each `# YOUR CODE HERE` and `raise NotImplementedError()` "
    "with your answer, run the cell and then the check cell below it. Do not edit or delete "
    "the check cells: the grader runs the instructor's copies, with more (hidden) checks, "
    "and an exercise whose check cell was changed scores zero."
)

# run before each test cell by the grader: a solution cell that replaced ferlib.checks'
# functions (``ferlib.checks.check_close = lambda *a, **k: None``) gets the real ones back
RESTORE_CHECKS = "__import__('importlib').reload(__import__('ferlib.checks').checks)\n"

_EXERCISE_HEADING = re.compile(r"^#{2,4} Exercise (\d+)\b", re.M)
_GRADE_ID = re.compile(r"^ex(\d+)-(solution|tests)(?:-(\d+))?$")


def _src(cell: NotebookNode) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _nbgrader(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _exercise_of(grade_id: str) -> int | None:
    found = _GRADE_ID.match(grade_id or "")
    return int(found.group(1)) if found else None


# ----------------------------------------------------------------------------- metadata


def mark_exercises(nb: NotebookNode, points: int = DEFAULT_POINTS) -> NotebookNode:
    """Write the nbgrader metadata of the conventions above into ``nb`` (in place).

    Within each ``Exercise <n>`` section the cell holding ``### BEGIN SOLUTION`` becomes
    ``ex<n>-solution`` and every later code cell that checks something (``ferlib.checks.``
    or ``assert``) becomes a test cell ``ex<n>-tests`` (``-2``, ...) worth ``points``
    unless it already carries points. Other cells lose any nbgrader metadata.
    """
    section: int | None = None
    seen: dict[int, dict[str, int]] = {}
    for cell in nb.cells:
        text = _src(cell)
        if cell.cell_type == "markdown":
            heading = _EXERCISE_HEADING.search(text)
            if heading:
                section = int(heading.group(1))
            elif re.match(r"^#{1,3} ", text.lstrip()):
                section = None
            cell.metadata.pop("nbgrader", None)
            continue
        old = _nbgrader(cell)
        kind = None
        if section is not None and SOLUTION_BEGIN in text:
            kind = "solution"
        elif section is not None and seen.get(section, {}).get("solution"):
            if "ferlib.checks." in text or re.search(r"^\s*assert\b", text, re.M):
                kind = "tests"
        if kind is None:
            cell.metadata.pop("nbgrader", None)
            continue
        count = seen.setdefault(section, {}).get(kind, 0) + 1
        seen[section][kind] = count
        grade_id = f"ex{section}-{kind}" + (f"-{count}" if count > 1 else "")
        meta = {
            "grade": kind == "tests",
            "grade_id": grade_id,
            "locked": kind == "tests",
            "schema_version": 3,
            "solution": kind == "solution",
            "task": False,
        }
        if kind == "tests":
            meta["points"] = old.get("points", points) if old.get("grade") else points
        cell.metadata["nbgrader"] = meta
    return nb


def _test_cells(nb: NotebookNode) -> list[tuple[int, NotebookNode]]:
    return [
        (i, c)
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and _nbgrader(c).get("grade")
    ]


def exercise_points(nb: NotebookNode) -> dict[int, float]:
    """``{exercise number: points}`` from the test cells' metadata, in exercise order."""
    points: dict[int, float] = {}
    for _, cell in _test_cells(nb):
        meta = _nbgrader(cell)
        number = _exercise_of(meta.get("grade_id", ""))
        if number is None:
            raise ValueError(
                f"test cell grade_id {meta.get('grade_id')!r} does not follow 'ex<n>-tests[-k]'"
            )
        points[number] = points.get(number, 0) + float(meta.get("points", 0))
    return dict(sorted(points.items()))
