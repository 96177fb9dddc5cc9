"""Grading: each submission executed offline in a fresh kernel, with the instructor's test
cells (hidden tests included), scored per exercise; a class folder graded notebook by
notebook, so that one submission never stops the class.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ferlib.classroom.conventions import (
    DEFAULT_TIMEOUT,
    NOTEBOOKS,
    RESTORE_CHECKS,
    ROOT,
    _exercise_of,
    _nbgrader,
    _src,
    _test_cells,
    exercise_points,
)
from ferlib.classroom.edition import _instructor_notebooks, student_edition
from ferlib.classroom.sandbox import (
    Limits,
    kernel_env,
    kernel_manager,
    sandbox_mode,
    this_python_kernelspecs,
)

if TYPE_CHECKING:  # nbformat, nbgrader and nbclient are imported where used: dev extra
    from nbformat import NotebookNode

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
    sandboxed: bool = False  # run in a sandbox (ferlib.classroom.sandbox)

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


def _data_root() -> Path | None:
    """The course's data folder, when it is an absolute path (shown in the sandbox)."""
    from ferlib.data.root import default_data_root

    root = default_data_root()
    return root.resolve() if root.is_absolute() and root.is_dir() else None


def _kernel_manager():
    """An asynchronous kernel manager (what nbclient expects, or its timeouts never fire)
    for a kernel of this very Python, unsandboxed."""
    from jupyter_client import AsyncKernelManager

    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=this_python_kernelspecs())


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


def _execute(nb: NotebookNode, timeout: int, workdir: Path, km, env: dict, log: Path) -> str:
    """Run ``nb`` in place in the kernel of ``km``; returns '' or why the run stopped early.

    A cell past ``timeout`` seconds is interrupted and gets a ``TimeoutError`` output in
    place of the ``KeyboardInterrupt``; the cells after it still run. The kernel's own log
    (not the notebook's stderr, which comes back as outputs) goes to ``log``.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from nbclient.util import run_sync

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

    def last_log_line() -> str:
        lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
        return f" (kernel log: {lines[-1][:200]})" if lines else ""

    try:
        with open(log, "wb") as out:  # nothing of the kernel's reaches our stdout
            client.execute(env=env, stdout=out, stderr=out)
    except DeadKernelError as err:
        return f"the kernel died ({err}); cells after it did not run{last_log_line()}"
    except Exception as err:  # the grader must go on with the next submission
        return f"the run stopped: {type(err).__name__}: {err}{last_log_line()}"
    finally:
        if km.has_kernel:  # a kernel we passed in is ours to stop
            try:
                run_sync(km.shutdown_kernel)(now=True)
            except Exception:  # its interrupt (by message) failed: kill it
                run_sync(km.provisioner.kill)()
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
    sandbox: bool | None = None,
    limits: Limits | None = None,
) -> NotebookGrade:
    """Execute one submission with the instructor's tests and score each exercise.

    ``sandbox``: ``None`` runs the kernel in a sandbox (:mod:`ferlib.classroom.sandbox`,
    with ``limits``) where one can be made, ``True`` requires one, ``False`` runs it as the
    grader's user, as before.
    """
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
    row.sandboxed = sandbox_mode(sandbox)[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ferlib-grade-", ignore_cleanup_errors=True) as tmp:
        box = Path(tmp) / "box"  # all the kernel may see of it, in a sandbox
        workdir = box / "notebooks"
        workdir.mkdir(parents=True)
        if (ROOT / "results").is_dir():
            (box / "results").symlink_to(ROOT / "results", target_is_directory=True)
        env = dict(os.environ, FERLIB_PROFILE="quick", MPLBACKEND="Agg")
        if row.sandboxed:
            hide = [instructor_path.parent, path.parent]
            km = kernel_manager(box, ROOT, _data_root(), limits, hide)
            env = kernel_env(env, box / "home")
        else:
            km = _kernel_manager()
        stopped = _execute(run, timeout, workdir, km, env, Path(tmp) / "kernel.log")
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
    sandbox: bool | None = None,
    limits: Limits | None = None,
) -> list[NotebookGrade]:
    """Grade every submission under ``path``: one row per student × notebook.

    ``notebooks`` (stems) are the assigned notebooks; by default those that at least one
    student handed in. A student without one of them gets a ``missing`` row; a file that is
    not a notebook, matches no course notebook, is unreadable or duplicates another gets a
    row saying so. Rows are sorted by student, then notebook. Each submission runs in its
    own sandbox where one can be made (``sandbox``, ``limits``: see :func:`grade_notebook`).
    """
    import nbformat
    from tqdm.auto import tqdm

    sandboxed = sandbox_mode(sandbox)[0]
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
            rows.append(
                grade_notebook(files[0], sources[stem], student, timeout, sandboxed, limits)
            )
        except Exception as err:  # one submission never stops the class
            best = sum(exercise_points(nbformat.read(sources[stem], as_version=4)).values())
            rows.append(
                NotebookGrade(student, stem, str(files[0]), "grader error", best, message=repr(err))
            )
    return sorted(rows, key=lambda r: (r.student, r.notebook))
