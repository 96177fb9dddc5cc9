"""The student edition: nbgrader's own preprocessors clear the solutions and hidden tests,
then the Colab badge, a note for students and the bootstrap line are set.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from ferlib.classroom.conventions import (
    BADGE_PATH,
    BOOTSTRAP_ANCHOR,
    BOOTSTRAP_LINE,
    NOTEBOOKS,
    STUDENT_DIR,
    STUDENT_NOTE,
    _src,
)

if TYPE_CHECKING:  # nbformat, nbgrader and nbclient are imported where used: dev extra
    from nbformat import NotebookNode

# ----------------------------------------------------------------------------- student edition


def student_edition(nb: NotebookNode, name: str) -> NotebookNode:
    """The student edition of instructor notebook ``nb`` (saved as ``notebooks/student/name``).

    Raises ``ValueError`` when the nbgrader metadata is invalid or a solution or hidden-test
    region lies outside a solution or test cell (nbgrader's own checks).
    """
    from nbgrader.preprocessors import (
        CheckCellMetadata,
        ClearHiddenTests,
        ClearOutput,
        ClearSolutions,
        LockCells,
    )

    nb = copy.deepcopy(nb)
    steps = (CheckCellMetadata(), ClearSolutions(), ClearHiddenTests(), ClearOutput(), LockCells())
    for step in steps:
        try:
            nb, _ = step.preprocess(nb, {})
        except Exception as err:  # nbgrader raises RuntimeError and its ValidationError
            raise ValueError(f"{name}: {type(step).__name__}: {err}") from err
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timestamps: noise in the committed diff
    title = nb.cells[0]
    badge = f"{BADGE_PATH}{name})"
    if badge not in _src(title):
        raise ValueError(f"{name}: the first cell has no Colab badge ending in {badge}")
    title.source = _src(title).replace(badge, f"{BADGE_PATH}{STUDENT_DIR}/{name})")
    title.source = title.source.rstrip("\n") + "\n\n" + STUDENT_NOTE
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    if BOOTSTRAP_ANCHOR not in _src(first_code):
        raise ValueError(f"{name}: the first code cell has no line {BOOTSTRAP_ANCHOR!r}")
    first_code.source = _src(first_code).replace(
        BOOTSTRAP_ANCHOR, BOOTSTRAP_ANCHOR + BOOTSTRAP_LINE, 1
    )
    return nb


def _instructor_notebooks(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.ipynb"))


def _student_text(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return nbformat.writes(student_edition(nb, path.name)) + "\n"


def generate_student_edition(
    src: Path = NOTEBOOKS, out: Path | None = None, progress: bool = True
) -> list[Path]:
    """Write the student edition of every ``src/*.ipynb`` into ``out`` (``src/student``)."""
    from tqdm.auto import tqdm

    out = src / STUDENT_DIR if out is None else out
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm(_instructor_notebooks(src), desc="student edition", disable=not progress):
        target = out / path.name
        tmp = target.with_suffix(".ipynb.tmp")
        tmp.write_text(_student_text(path), encoding="utf-8")
        tmp.replace(target)
        written.append(target)
    return written


def student_edition_drift(src: Path = NOTEBOOKS, out: Path | None = None) -> list[str]:
    """What differs between the committed student edition and a fresh one ([] if none)."""
    out = src / STUDENT_DIR if out is None else out
    problems = []
    wanted = {p.name for p in _instructor_notebooks(src)}
    for path in _instructor_notebooks(src):
        target = out / path.name
        if not target.is_file():
            problems.append(f"{target} is missing")
        elif target.read_text(encoding="utf-8") != _student_text(path):
            problems.append(f"{target} differs from the student edition of {path}")
    for extra in sorted(out.glob("*.ipynb")):
        if extra.name not in wanted:
            problems.append(f"{extra} has no instructor notebook")
    return problems
