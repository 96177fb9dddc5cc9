"""The classroom's commands: ``python -m ferlib student|grade`` and
``python -m ferlib.classroom student|grade|mark``. Errors are reported as every ferlib
command reports them (:mod:`ferlib.commands`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ferlib.classroom.conventions import (
    DEFAULT_POINTS,
    DEFAULT_TIMEOUT,
    NOTEBOOKS,
    exercise_points,
    mark_exercises,
)
from ferlib.classroom.edition import generate_student_edition, student_edition_drift
from ferlib.classroom.grading import grade_path
from ferlib.classroom.report import format_table, write_grades
from ferlib.classroom.sandbox import Limits, sandbox_mode
from ferlib.commands import run_command

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
    grade.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run submissions as yourself, not each in a bubblewrap sandbox (Linux; the "
        "default where bwrap works): only for notebooks you trust",
    )
    grade.add_argument(
        "--memory-gb",
        type=float,
        default=0.0,
        help="address space per process of a sandboxed submission (default: half the "
        "machine's memory, at least 8)",
    )


def classroom_command(args: argparse.Namespace) -> int:
    """Run ``student`` or ``grade`` (parsed by :func:`add_arguments`). Bad input raises; the
    caller reports it (:func:`ferlib.commands.run_command`)."""
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
    sandboxed, line = sandbox_mode(False if args.no_sandbox else None)
    print(line, flush=True)
    rows = grade_path(
        args.path,
        args.instructor,
        args.notebooks,
        args.timeout,
        progress=not args.no_progress,
        sandbox=sandboxed,
        limits=Limits(memory_gb=args.memory_gb),
    )
    print(format_table(rows))
    for path in write_grades(rows, args.out):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ferlib.classroom student|grade|mark ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m ferlib.classroom", description="the classroom edition and the grader"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_arguments(sub)
    mark = sub.add_parser("mark", help="write the nbgrader metadata of the conventions")
    mark.add_argument("notebooks", type=Path, nargs="+")
    mark.add_argument("--points", type=int, default=DEFAULT_POINTS, help="points per new test cell")
    args = parser.parse_args(argv)
    handler = _mark if args.command == "mark" else classroom_command
    return run_command(f"{parser.prog} {args.command}", handler, args)


def _mark(args: argparse.Namespace) -> int:
    """``mark``: write the nbgrader metadata of the conventions into each notebook."""
    import nbformat

    for path in args.notebooks:
        nb = mark_exercises(nbformat.read(path, as_version=4), args.points)
        tmp = path.with_suffix(".ipynb.tmp")
        nbformat.write(nb, tmp)
        tmp.replace(path)
        print(f"{path}: exercises {exercise_points(nb)}")
    return 0
