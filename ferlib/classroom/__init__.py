"""Classroom edition: student notebooks made from the instructor ones, and an offline grader.

One module per part: :mod:`~ferlib.classroom.conventions` (what defines an exercise, below),
:mod:`~ferlib.classroom.edition` (the student edition), :mod:`~ferlib.classroom.grading`
(kernel execution and scoring), :mod:`~ferlib.classroom.sandbox` (each submission's kernel
in a sandbox), :mod:`~ferlib.classroom.report` (table, CSV, JSON) and
:mod:`~ferlib.classroom.cli` (the commands).

Commands (``bash course.sh student|grade ...`` runs the same)::

    python -m ferlib student                        # notebooks/*.ipynb -> notebooks/student/
    python -m ferlib grade SUBMISSIONS [--out DIR]  # score table, DIR/grades.csv, grades.json
                          [--no-sandbox] [--memory-gb GB]

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

A submission is untrusted code. Where bubblewrap works (Linux with ``bwrap``), each one's
kernel runs in its own sandbox (:mod:`~ferlib.classroom.sandbox`): the course and Python
read-only, no network, its own temporary home and folder, no instructor notebook or other
submission in sight (the grader sends the hidden tests as cells, from its own memory), no
process left when it ends, and limits on memory, processes and CPU time. The command's
first line says whether grading is sandboxed; elsewhere (macOS, Windows, no ``bwrap``) it
grades as before, and ``--no-sandbox`` asks for that.
"""

from ferlib.classroom.conventions import (
    BOOTSTRAP_LINE,
    HIDDEN_BEGIN,
    HIDDEN_END,
    STUDENT_DIR,
    exercise_points,
    mark_exercises,
)
from ferlib.classroom.edition import (
    generate_student_edition,
    student_edition,
    student_edition_drift,
)
from ferlib.classroom.grading import (
    ExerciseScore,
    NotebookGrade,
    find_submissions,
    grade_notebook,
    grade_path,
)
from ferlib.classroom.report import format_table, totals, write_grades
from ferlib.classroom.sandbox import Limits, sandbox_mode

__all__ = [
    "BOOTSTRAP_LINE",
    "HIDDEN_BEGIN",
    "HIDDEN_END",
    "STUDENT_DIR",
    "ExerciseScore",
    "Limits",
    "NotebookGrade",
    "exercise_points",
    "find_submissions",
    "format_table",
    "generate_student_edition",
    "grade_notebook",
    "grade_path",
    "mark_exercises",
    "sandbox_mode",
    "student_edition",
    "student_edition_drift",
    "totals",
    "write_grades",
]
