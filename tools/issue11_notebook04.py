"""Issue 11 for notebook 04: nbgrader metadata and hidden tests on its three exercises.

Run once, after the notebook's other edits, then re-execute it and regenerate the student
edition (the hidden checks print lines, so the committed outputs change)::

    .venv/bin/python tools/issue11_notebook04.py
    FERLIB_PROFILE=quick .venv/bin/jupyter nbconvert --to notebook --execute --inplace \\
        --ExecutePreprocessor.timeout=1800 notebooks/04_wmnist_study.ipynb
    .venv/bin/python -m ferlib student

It is one load-modify-save (written to a temporary file, then renamed), and refuses to run
twice. The hidden blocks follow ferlib.classroom's conventions: each runs on its own after
the exercise's solution (tests/test_exercises.py runs it against the wrong answers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from ferlib.classroom import HIDDEN_BEGIN, HIDDEN_END, exercise_points, mark_exercises

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_wmnist_study.ipynb"

HIDDEN = {
    1: """# other settings: the paper's γ = 7 at m = 16; with m = 1 nothing changes
ferlib.checks.check_close(effective_gamma(7.0, 16), 0.4375, "effective_gamma(7, 16)")
ferlib.checks.check_close(effective_gamma(3.0, 1), 3.0, "effective_gamma(3, 1)")""",
    2: """# two classes out of four, not the first ones
ferlib.checks.check_close(
    minority_mean([10.0, 20.0, 30.0, 40.0], [1, 3]), 30.0, "minority_mean, classes 1 and 3 of 4"
)""",
    3: """# a new dict, every digit's count
assert isinstance(harsh_counts, dict), f"harsh_counts: expected a dict, got {type(harsh_counts)}"
ferlib.checks.check_close(
    [harsh_counts[k] for k in range(10)],
    [20 if k in (2, 5, 8) else WMNIST_COUNTS[k] for k in range(10)],
    "harsh_counts, digit by digit",
)""",
}


def main() -> int:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    if HIDDEN_BEGIN in "".join(c.source for c in nb.cells):
        print(f"{NOTEBOOK.name} already has hidden tests: nothing done", file=sys.stderr)
        return 1
    mark_exercises(nb)
    done = []
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if grade_id in {f"ex{n}-tests" for n in HIDDEN}:
            n = int(grade_id[2:].split("-")[0])
            block = f"\n{HIDDEN_BEGIN}\n{HIDDEN[n]}\n{HIDDEN_END}"
            cell.source = cell.source.rstrip("\n") + block
            done.append(n)
    if sorted(done) != sorted(HIDDEN):
        print(f"{NOTEBOOK.name}: found test cells of exercises {done}", file=sys.stderr)
        return 1
    tmp = NOTEBOOK.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(NOTEBOOK)
    print(f"{NOTEBOOK.name}: exercises and points {exercise_points(nb)}, hidden tests added")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
