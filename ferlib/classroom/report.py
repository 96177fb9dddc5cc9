"""The grade table, as printed and as files: ``grades.csv`` (one row per student and
notebook), ``totals.csv`` and ``grades.json`` (everything, messages whole).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

from ferlib.classroom.grading import ExerciseScore, NotebookGrade


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
