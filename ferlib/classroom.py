"""Classroom edition: student notebooks made from the instructor ones, and an offline grader.

Commands (``bash course.sh student|grade ...`` runs the same)::

    python -m ferlib student                        # notebooks/*.ipynb -> notebooks/student/
    python -m ferlib grade SUBMISSIONS [--out DIR]  # score table, DIR/grades.csv, grades.json

Conventions for an instructor notebook (every ``notebooks/*.ipynb``)
--------------------------------------------------------------------
An exercise is a markdown heading ``### Exercise <n> · <title>`` followed by:

* one **solution cell** (a code cell) whose answer lies between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION``, each marker alone on its line, with the nbgrader metadata ::

      "nbgrader": {"grade": false, "grade_id": "ex<n>-solution", "locked": false,
                   "schema_version": 3, "solution": true, "task": false}

* then one or more **test cells** (code cells calling ``ferlib.checks`` or ``assert``) ::

      "nbgrader": {"grade": true, "grade_id": "ex<n>-tests", "locked": true, "points": 2,
                   "schema_version": 3, "solution": false, "task": false}

  A second test cell of the same exercise is ``ex<n>-tests-2`` (and so on). ``grade_id`` is
  unique in the notebook, and the exercise number is read from it (``ex<n>-``).

* **Hidden tests**: each test cell ends with ``### BEGIN HIDDEN TESTS`` ...
  ``### END HIDDEN TESTS`` (markers alone on their lines). The student edition does not show
  that block; the grader restores it. A hidden block must run on its own right after the
  solution cell (``tests/test_exercises.py`` runs it alone): it makes its own inputs and uses
  nothing that the visible part of its cell defines. Every exercise has a visible check and
  a hidden one, and each fails for a plausible wrong answer (``tests/test_exercises.py``).

* **Points**: an exercise is worth the sum of its test cells' ``points`` (2 per exercise in
  every notebook so far). A test cell scores all its points when it runs without an error in the
  graded run, else none. An exercise whose test cell was deleted or edited in the submission
  (``tampered``) scores zero.

:func:`mark_exercises` writes this metadata from the headings and markers (it keeps points
already set): ``python -m ferlib.classroom mark notebooks/05_x.ipynb [--points 2]``.

The student edition
-------------------
:func:`student_edition` runs nbgrader's own preprocessors (no course directory, no
database): ``CheckCellMetadata``, ``ClearSolutions`` (an answer becomes ``# YOUR CODE HERE``
and ``raise NotImplementedError()``), ``ClearHiddenTests``, ``ClearOutput`` and
``LockCells``; then it points the Colab badge at ``notebooks/student/<name>``, adds a
note for students under the title, and adds one line to the bootstrap cell so that a
notebook opened in ``notebooks/student/`` works from ``notebooks/`` (``../results``).

Grading
-------
:func:`grade_path` takes one notebook, one student's folder of notebooks, or a class folder
holding one subfolder per student (``class/<student>/<notebook>.ipynb``; a file name may
carry a prefix or suffix such as ``Copy of ...`` or `` (1)``). Each submission is executed
offline, in a fresh kernel of this Python, with ``FERLIB_PROFILE=quick``, after its test
cells were replaced by the instructor's (hidden tests included, matched by ``grade_id``).
The cells run in a temporary ``notebooks/`` folder beside a link to the course's
``results/``. A crash, a cell past the per-cell timeout, or a dead kernel costs the exercises
it touches, not the rest.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # nbformat, nbgrader and nbclient are imported where used: dev extra
    from nbformat import NotebookNode

__all__ = [
    "HIDDEN_BEGIN",
    "HIDDEN_END",
    "STUDENT_DIR",
    "ExerciseScore",
    "NotebookGrade",
    "exercise_points",
    "format_table",
    "generate_student_edition",
    "grade_notebook",
    "grade_path",
    "mark_exercises",
    "student_edition",
    "student_edition_drift",
    "write_grades",
]

ROOT = Path(__file__).resolve().parents[1]
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


# ----------------------------------------------------------------------------- grading


@dataclass
class ExerciseScore:
    """One exercise of one submission."""

    exercise: int
    points: float
    max_points: float
    status: str  # "passed", "failed", "tampered", "not run"
    message: str = ""


@dataclass
class NotebookGrade:
    """One student × notebook: a row of the grade table."""

    student: str
    notebook: str  # the instructor notebook's stem, or the file name when it matches none
    file: str
    status: str  # "graded", "missing", "unreadable", "not a notebook", "unknown notebook", ...
    max_points: float
    exercises: list[ExerciseScore] = field(default_factory=list)
    message: str = ""
    errors: list[dict] = field(default_factory=list)  # every cell error of the graded run
    seconds: float = 0.0

    @property
    def points(self) -> float:
        return sum(e.points for e in self.exercises)


def _normalise(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _error_of(cell: NotebookNode) -> dict | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return {"ename": out.get("ename", ""), "evalue": out.get("evalue", "")}
    return None


def _kernel_manager():
    """An asynchronous kernel manager (what nbclient expects, or its timeouts never fire)
    for a kernel of this very Python, like nbval's ``--nbval-current-env``."""
    import ipykernel.kernelspec
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return self.kernel_spec_class(
                resource_dir=ipykernel.kernelspec.RESOURCES,
                **ipykernel.kernelspec.get_kernel_dict(),
            )

    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ThisPython())


def _assemble(
    submission: NotebookNode, instructor: NotebookNode, student: NotebookNode
) -> tuple[NotebookNode, dict[str, int], set[str]]:
    """The notebook to run: the submission with the instructor's test cells.

    A submitted test cell is found by its ``grade_id`` or, when its metadata was lost (cells
    pasted into a new notebook), by its text. It counts as untouched when its text is the
    student edition's or the instructor's. Returns the notebook, the index of each
    instructor test cell in it (by grade_id), and the grade_ids deleted or edited.
    """
    import nbformat

    originals = {_nbgrader(c)["grade_id"]: c for _, c in _test_cells(instructor)}
    accepted = {
        gid: {_normalise(_src(c)), _normalise(_src(originals[gid]))}
        for gid, c in ((_nbgrader(c)["grade_id"], c) for _, c in _test_cells(student))
    }
    by_text = {text: gid for gid, texts in accepted.items() for text in texts}
    run = copy.deepcopy(submission)
    cells: list[NotebookNode] = []
    found: dict[str, int] = {}  # grade_id -> position in cells
    tampered: set[str] = set()
    for cell in run.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        grade_id = _nbgrader(cell).get("grade_id")
        if grade_id not in originals or grade_id in found:
            if _nbgrader(cell).get("grade"):
                cell.metadata.pop("nbgrader")  # a test cell nobody handed out: student code
            text_id = by_text.get(_normalise(_src(cell))) if cell.cell_type == "code" else None
            grade_id = text_id if text_id not in found else None
        if grade_id:
            if cell.cell_type != "code" or _normalise(_src(cell)) not in accepted[grade_id]:
                tampered.add(grade_id)
            found[grade_id] = len(cells)
        cells.append(cell)
    # the instructor's source (hidden tests included) in each test cell; a deleted test cell
    # comes back after the cells of its exercise so that later exercises can use what it sets
    fresh = {
        gid: nbformat.v4.new_code_cell(RESTORE_CHECKS + _src(c), metadata=copy.deepcopy(c.metadata))
        for gid, c in originals.items()
    }
    for grade_id, at in found.items():
        cells[at] = fresh[grade_id]
    previous: NotebookNode | None = None
    for grade_id, cell in fresh.items():
        if grade_id not in found:
            tampered.add(grade_id)
            prefix = f"ex{_exercise_of(grade_id)}-"
            after = [
                i
                for i, c in enumerate(cells)
                if _nbgrader(c).get("grade_id", "").startswith(prefix) or c is previous
            ]
            cells.insert((after or [len(cells) - 1])[-1] + 1, cell)
        previous = cell
    run.cells = cells
    index = {gid: next(i for i, c in enumerate(cells) if c is cell) for gid, cell in fresh.items()}
    return run, index, tampered


def _execute(nb: NotebookNode, timeout: int, workdir: Path) -> str:
    """Run ``nb`` in place; returns '' or why the run stopped early.

    A cell past ``timeout`` seconds is interrupted and gets a ``TimeoutError`` output in
    place of the ``KeyboardInterrupt``; the cells after it still run.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from nbclient.util import run_sync

    env = dict(os.environ, FERLIB_PROFILE="quick", MPLBACKEND="Agg")
    km = _kernel_manager()
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={
            "ename": "TimeoutError",
            "evalue": f"the cell ran past the grader's limit of {timeout} s",
            "traceback": [],
        },
        resources={"metadata": {"path": str(workdir)}},
    )
    timed_out: set[int] = set()

    def on_cell_executed(cell, cell_index, execute_reply) -> None:
        if (execute_reply or {}).get("content", {}).get("ename") == "TimeoutError":
            if timed_out and max(timed_out) == cell_index - 1:  # the interrupt did not help
                raise RuntimeError(f"cells {cell_index - 1} and {cell_index} ran past the limit")
            timed_out.add(cell_index)

    client.on_cell_executed = on_cell_executed
    try:
        # the kernel's own log (not the notebook's stderr, which comes back as outputs)
        client.execute(env=env, stderr=subprocess.DEVNULL)
    except DeadKernelError as err:
        return f"the kernel died ({err}); cells after it did not run"
    except Exception as err:  # the grader must go on with the next submission
        return f"the run stopped: {type(err).__name__}: {err}"
    finally:
        if km.has_kernel:  # a kernel we passed in is ours to stop
            run_sync(km.shutdown_kernel)(now=True)
        for i in timed_out:
            cell = nb.cells[i]
            cell.outputs = [o for o in cell.outputs if o.get("output_type") != "error"]
            cell.outputs.append(
                nbformat.v4.new_output(
                    "error",
                    ename="TimeoutError",
                    evalue=f"the cell ran past the grader's limit of {timeout} s",
                    traceback=[],
                )
            )
    return ""


def grade_notebook(
    path: Path,
    instructor_path: Path,
    student: str = "",
    timeout: int = DEFAULT_TIMEOUT,
) -> NotebookGrade:
    """Execute one submission with the instructor's tests and score each exercise."""
    import nbformat

    instructor = nbformat.read(instructor_path, as_version=4)
    points = exercise_points(instructor)
    row = NotebookGrade(
        student=student or path.parent.name,
        notebook=instructor_path.stem,
        file=str(path),
        status="graded",
        max_points=sum(points.values()),
    )

    def zero(status: str, message: str) -> NotebookGrade:
        row.status, row.message = status, message
        row.exercises = [ExerciseScore(n, 0, p, "not run") for n, p in points.items()]
        return row

    student_nb = student_edition(instructor, instructor_path.name)
    try:
        submission = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        run, index, tampered = _assemble(submission, instructor, student_nb)
    except Exception as err:  # not JSON, not a notebook, cells without source or metadata
        return zero("unreadable", f"not a readable notebook: {type(err).__name__}: {err}"[:300])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ferlib-grade-") as tmp:
        workdir = Path(tmp) / "notebooks"
        workdir.mkdir()
        if (ROOT / "results").is_dir():
            (Path(tmp) / "results").symlink_to(ROOT / "results", target_is_directory=True)
        stopped = _execute(run, timeout, workdir)
    row.seconds = round(time.perf_counter() - started, 1)
    if stopped:
        row.status, row.message = "incomplete", stopped

    errors = {}
    for i, cell in enumerate(run.cells):
        error = cell.cell_type == "code" and _error_of(cell)
        if error:
            errors[i] = error
            row.errors.append({"cell": i, "grade_id": _nbgrader(cell).get("grade_id"), **error})
    for number, total in points.items():
        ids = [g for g in index if _exercise_of(g) == number and g.split("-")[1] == "tests"]
        cells = [run.cells[index[g]] for g in ids]
        earned = sum(
            float(_nbgrader(c)["points"])
            for g, c in zip(ids, cells, strict=True)
            if index[g] not in errors and c.get("execution_count") is not None
        )
        solution = [
            i
            for i, c in enumerate(run.cells)
            if _nbgrader(c).get("grade_id", "").startswith(f"ex{number}-solution")
        ]
        first = next((errors[i] for i in [*solution, *map(index.get, ids)] if i in errors), None)
        if any(g in tampered for g in ids):
            what = "deleted or edited: " + ", ".join(g for g in ids if g in tampered)
            row.exercises.append(ExerciseScore(number, 0, total, "tampered", what))
        elif any(c.get("execution_count") is None for c in cells):
            row.exercises.append(ExerciseScore(number, earned, total, "not run", stopped))
        elif earned < total:
            why = "a check failed"
            if first and first["ename"] == "NotImplementedError":
                why = "NotImplementedError: not answered"
            elif first:
                why = f"{first['ename']}: {first['evalue']}".strip().rstrip(":")
            row.exercises.append(
                ExerciseScore(number, earned, total, "failed", why.strip().split("\n")[0][:200])
            )
        else:
            row.exercises.append(ExerciseScore(number, earned, total, "passed"))
    return row


# ----------------------------------------------------------------------------- a class


def _hidden(path: Path) -> bool:
    return any(part.startswith((".", "__")) for part in path.parts)


def find_submissions(path: Path) -> list[tuple[str, Path]]:
    """``(student, file)`` pairs under ``path`` (see the module docstring for the layouts).

    A file is one student's (the student is its folder's name); a folder without
    subfolders is one student's; a folder with subfolders is a class, each subfolder a
    student (searched recursively). Files lying loose in a class folder come back with
    student ``""``. Hidden files and folders (``.ipynb_checkpoints``) are skipped.
    """
    if path.is_file():
        return [(path.resolve().parent.name, path)]
    if not path.is_dir():
        raise FileNotFoundError(f"no notebook or folder at {path}")
    entries = sorted(p for p in path.iterdir() if not _hidden(p.relative_to(path)))
    folders = [p for p in entries if p.is_dir()]
    if not folders:
        return [(path.resolve().name, p) for p in entries]
    found = [("", p) for p in entries if p.is_file()]
    for folder in folders:
        files = sorted(
            p for p in folder.rglob("*") if p.is_file() and not _hidden(p.relative_to(folder))
        )
        found += [(folder.name, p) for p in files] or [(folder.name, folder)]
    return found


def _which_notebook(name: str, stems: Sequence[str]) -> str | None:
    """The course notebook a file name is a copy of (``Copy of 02_center_loss (1).ipynb``)."""
    hits = [s for s in stems if s.lower() in name.lower()]
    return max(hits, key=len) if hits else None


def grade_path(
    path: Path,
    instructor: Path = NOTEBOOKS,
    notebooks: Sequence[str] | None = None,
    timeout: int = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> list[NotebookGrade]:
    """Grade every submission under ``path``: one row per student × notebook.

    ``notebooks`` (stems) are the assigned notebooks; by default those that at least one
    student handed in. A student without one of them gets a ``missing`` row; a file that is
    not a notebook, matches no course notebook, is unreadable or duplicates another gets a
    row saying so. Rows are sorted by student, then notebook.
    """
    import nbformat
    from tqdm.auto import tqdm

    sources = {p.stem: p for p in _instructor_notebooks(instructor)}
    if not sources:
        raise FileNotFoundError(f"no instructor notebooks in {instructor}")
    rows: list[NotebookGrade] = []
    jobs: dict[tuple[str, str], list[Path]] = {}
    students: set[str] = set()

    def note(student: str, file: Path, status: str, message: str) -> None:
        rows.append(NotebookGrade(student, file.name, str(file), status, 0, message=message))

    for student, file in find_submissions(path):
        if not student:
            note("", file, "not in a student folder", f"move it to {path}/<student>/")
            continue
        students.add(student)
        if file.is_dir():
            continue  # an empty student folder: every notebook missing
        if file.suffix != ".ipynb":
            note(student, file, "not a notebook", "only .ipynb files are graded")
            continue
        stem = _which_notebook(file.name, list(sources))
        if stem is None:
            note(student, file, "unknown notebook", f"the name matches none of {sorted(sources)}")
            continue
        jobs.setdefault((student, stem), []).append(file)
    unknown = sorted(set(notebooks or ()) - set(sources))
    if unknown:
        raise ValueError(f"not course notebooks: {unknown}; choose among {sorted(sources)}")
    assigned = sorted(notebooks) if notebooks else sorted({stem for _, stem in jobs})
    for student in sorted(students):
        for stem in assigned:
            if (student, stem) not in jobs:
                points = sum(exercise_points(nbformat.read(sources[stem], as_version=4)).values())
                rows.append(NotebookGrade(student, stem, "", "missing", points, message="no file"))
    todo = sorted((k, v) for k, v in jobs.items() if k[1] in assigned)
    bar = tqdm(todo, desc="grading", unit="notebook", disable=not progress)
    for (student, stem), files in bar:
        bar.set_postfix_str(f"{student}/{stem}")
        if len(files) > 1:
            points = exercise_points(nbformat.read(sources[stem], as_version=4))
            rows.append(
                NotebookGrade(
                    student,
                    stem,
                    ", ".join(map(str, files)),
                    "duplicate",
                    sum(points.values()),
                    [ExerciseScore(n, 0, p, "not run") for n, p in points.items()],
                    message="several files for this notebook: keep one and grade again",
                )
            )
            continue
        try:
            rows.append(grade_notebook(files[0], sources[stem], student, timeout=timeout))
        except Exception as err:  # one submission never stops the class
            best = sum(exercise_points(nbformat.read(sources[stem], as_version=4)).values())
            rows.append(
                NotebookGrade(student, stem, str(files[0]), "grader error", best, message=repr(err))
            )
    return sorted(rows, key=lambda r: (r.student, r.notebook))


def totals(rows: Iterable[NotebookGrade]) -> dict[str, tuple[float, float]]:
    """``{student: (points, max points)}`` over the rows that belong to a student."""
    out: dict[str, tuple[float, float]] = {}
    for row in rows:
        if row.student:
            got, best = out.get(row.student, (0.0, 0.0))
            out[row.student] = (got + row.points, best + row.max_points)
    return out


def _fmt(x: float) -> str:
    return f"{x:g}"


def _cell(score: ExerciseScore) -> str:
    mark = {"passed": "", "failed": " ✗", "tampered": " T", "not run": " –"}[score.status]
    return _fmt(score.points) + mark


def _notes(row: NotebookGrade, limit: int | None = None) -> str:
    """Why points were lost; each reason cut to ``limit`` characters (the printed table)."""

    def cut(text: str) -> str:
        return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"

    parts = [cut(row.message)] if row.message else []
    parts += [
        f"ex{e.exercise} {e.status}" + (f": {cut(e.message)}" if e.message else "")
        for e in row.exercises
        if e.status != "passed" and row.status in ("graded", "incomplete")
    ]
    return "; ".join(parts)


def format_table(rows: Sequence[NotebookGrade]) -> str:
    """The score table as text: one line per student × notebook, then each student's total.

    An exercise shows its points, with ✗ (a check failed), T (tampered: a test cell was
    edited or deleted) or – (not run). Reasons are cut to 60 characters (the CSV and the
    JSON have them whole).
    """
    width = max((len(r.exercises) for r in rows), default=0)
    head = ["student", "notebook", *[f"ex{i}" for i in range(1, width + 1)], "points", "status"]
    body = []
    for r in rows:
        exercises = [_cell(e) for e in r.exercises] + [""] * (width - len(r.exercises))
        points = f"{_fmt(r.points)}/{_fmt(r.max_points)}"
        notes = _notes(r, limit=60)
        status = r.status + (f" ({notes})" if notes else "")
        body.append([r.student or "?", r.notebook, *exercises, points, status])
    sizes = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    sizes[-1] = 0
    lines = [
        "  ".join(f"{x:<{n}}" for x, n in zip(line, sizes, strict=True)).rstrip()
        for line in [head, *body]
    ]
    lines.insert(1, "-" * (sum(sizes) + 2 * len(sizes) + 20))
    lines += ["", "total per student"]
    for student, (got, best) in sorted(totals(rows).items()):
        lines.append(f"  {student:<{sizes[0]}}  {_fmt(got)}/{_fmt(best)}")
    return "\n".join(lines)


def write_grades(rows: Sequence[NotebookGrade], out: Path) -> list[Path]:
    """Write ``grades.csv`` (one row per student × notebook), ``totals.csv`` and
    ``grades.json`` (everything, with each cell error) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    width = max((len(r.exercises) for r in rows), default=0)
    ex_cols = [f"ex{i}" for i in range(1, width + 1)]
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["student", "notebook", *ex_cols, "points", "max_points", "status", "notes", "file"]
        )
        for r in rows:
            scores = [_fmt(e.points) for e in r.exercises] + [""] * (width - len(r.exercises))
            writer.writerow(
                [
                    r.student,
                    r.notebook,
                    *scores,
                    _fmt(r.points),
                    _fmt(r.max_points),
                    r.status,
                    _notes(r),
                    r.file,
                ]
            )
    with open(out / "totals.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "points", "max_points"])
        for student, (got, best) in sorted(totals(rows).items()):
            writer.writerow([student, _fmt(got), _fmt(best)])
    data = {
        "rows": [{**asdict(r), "points": r.points} for r in rows],
        "totals": {s: {"points": g, "max_points": b} for s, (g, b) in totals(rows).items()},
    }
    (out / "grades.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return [out / "grades.csv", out / "totals.csv", out / "grades.json"]


# ----------------------------------------------------------------------------- command line


def add_arguments(sub: argparse._SubParsersAction) -> None:
    """Add ``student`` and ``grade`` to a ``python -m ferlib`` subparser set."""
    student = sub.add_parser("student", help="write the student edition into notebooks/student/")
    student.add_argument("--src", type=Path, default=NOTEBOOKS, help="instructor notebooks")
    student.add_argument("--out", type=Path, default=None, help="default: SRC/student")
    student.add_argument(
        "--check",
        action="store_true",
        help="write nothing; fail when the committed edition is out of date",
    )
    grade = sub.add_parser("grade", help="grade a notebook, a student's folder or a class")
    grade.add_argument("path", type=Path, help="a .ipynb, a student's folder or a class folder")
    grade.add_argument("--out", type=Path, default=Path("grades"), help="where the CSV/JSON go")
    grade.add_argument(
        "--instructor",
        type=Path,
        default=NOTEBOOKS,
        help="the instructor notebooks (tests and points come from them)",
    )
    grade.add_argument(
        "--notebooks",
        nargs="+",
        default=None,
        help="assigned notebook stems (default: every one handed in)",
    )
    grade.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, help="seconds per cell")
    grade.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_command(args: argparse.Namespace) -> int:
    """Run ``student`` or ``grade`` (parsed by :func:`add_arguments`)."""
    if args.command == "student":
        if args.check:
            drift = student_edition_drift(args.src, args.out)
            for line in drift:
                print(line, file=sys.stderr)
            if drift:
                print("run: python -m ferlib student", file=sys.stderr)
            return 1 if drift else 0
        for path in generate_student_edition(args.src, args.out):
            print(f"wrote {path}")
        return 0
    try:
        rows = grade_path(
            args.path, args.instructor, args.notebooks, args.timeout, progress=not args.no_progress
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"grade: {err}", file=sys.stderr)
        return 2
    print(format_table(rows))
    for path in write_grades(rows, args.out):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ferlib.classroom student|grade|mark ...``."""
    import nbformat

    parser = argparse.ArgumentParser(
        prog="python -m ferlib.classroom", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_arguments(sub)
    mark = sub.add_parser("mark", help="write the nbgrader metadata of the conventions")
    mark.add_argument("notebooks", type=Path, nargs="+")
    mark.add_argument("--points", type=int, default=DEFAULT_POINTS, help="points per new test cell")
    args = parser.parse_args(argv)
    if args.command != "mark":
        return run_command(args)
    for path in args.notebooks:
        nb = mark_exercises(nbformat.read(path, as_version=4), args.points)
        tmp = path.with_suffix(".ipynb.tmp")
        nbformat.write(nb, tmp)
        tmp.replace(path)
        print(f"{path}: exercises {exercise_points(nb)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
