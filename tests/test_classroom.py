"""The classroom edition (ferlib.classroom): conventions, the student edition, the grader.

* Every course notebook follows the nbgrader conventions of ``ferlib.classroom`` and every
  exercise carries hidden tests.
* The committed student edition (``notebooks/student/``) is exactly what the generator makes
  now (no drift), holds no solution or hidden-test text, and its Colab links resolve.
* The grader, on a tiny course made here: full marks for the solution, zero for the stub, a
  wrong answer caught only by a hidden test, an edited or deleted test cell, a hanging cell,
  a dying kernel, an unreadable file, a non-notebook, a missing and a duplicated notebook,
  and the CSV/JSON it writes.
* The course itself (slow, one grading call): the instructor edition scores full marks, the
  student edition zero on every exercise with no error but the stubs', and a prepared wrong
  answer loses every exercise's points.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ferlib import classroom, course
from ferlib.classroom import STUDENT_DIR

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
STUDENT_NOTEBOOKS = sorted((NOTEBOOK_DIR / STUDENT_DIR).glob("*.ipynb"))
COLAB = course.REPO_URL.replace("https://github.com/", "https://colab.research.google.com/github/")
COLAB_PREFIX = f"{COLAB}/blob/{course.COURSE_REF}/notebooks/"

notebook = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _regions(source: str, begin: str, end: str) -> list[str]:
    pattern = rf"^ *{re.escape(begin)}\n(.*?)^ *{re.escape(end)}$"
    return re.findall(pattern, source, flags=re.M | re.S)


# ----------------------------------------------------------------------------- conventions


@notebook
def test_nbgrader_metadata_follows_the_conventions(path):
    nb = _read(path)
    expected = classroom.mark_exercises(_read(path))
    for i, (cell, want) in enumerate(zip(nb.cells, expected.cells, strict=True)):
        assert cell.metadata.get("nbgrader") == want.metadata.get("nbgrader"), (
            f"{path.name}, cell {i}: nbgrader metadata differs from the conventions; "
            f"run: python -m ferlib.classroom mark {path.relative_to(ROOT)}"
        )
    from nbgrader.preprocessors import CheckCellMetadata

    CheckCellMetadata().preprocess(nb, {})  # nbgrader's own schema check (unique ids, ...)


@notebook
def test_every_exercise_has_points_and_hidden_tests(path):
    nb = _read(path)
    headings = sorted(
        {
            int(n)
            for c in nb.cells
            if c.cell_type == "markdown"
            for n in re.findall(r"^#{2,4} Exercise (\d+)", c.source, re.M)
        }
    )
    points = classroom.exercise_points(nb)
    assert sorted(points) == headings, f"{path.name}: exercises {headings}, graded {points}"
    assert all(p > 0 for p in points.values())
    for n in headings:
        tests = [
            c.source
            for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith(f"ex{n}-tests")
        ]
        hidden = [
            r for t in tests for r in _regions(t, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
        ]
        assert any(h.strip() for h in hidden), f"{path.name}: exercise {n} has no hidden tests"
        assert all(
            re.sub(r"(?s)### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", "", t).strip()
            for t in tests
        ), f"{path.name}: exercise {n} has no visible check"


def test_mark_exercises_numbers_cells_and_keeps_points():
    nb = _tiny_course()
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    nb.cells.insert(6, new_code_cell("assert double(5) == 10"))  # a second test cell of ex1
    classroom.mark_exercises(nb)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    assert ids == [
        None,
        None,
        None,
        "ex1-solution",
        "ex1-tests",
        None,
        "ex1-tests-2",
        None,
        "ex2-solution",
        "ex2-tests",
        None,
        "ex3-solution",
        "ex3-tests",
        None,
    ]
    nb.cells[9].metadata["nbgrader"]["points"] = 5
    assert classroom.exercise_points(classroom.mark_exercises(nb)) == {1: 4, 2: 5, 3: 2}


# ----------------------------------------------------------------------------- student edition


def test_student_edition_is_up_to_date():
    assert [p.name for p in STUDENT_NOTEBOOKS] == [p.name for p in NOTEBOOKS]
    drift = classroom.student_edition_drift()
    assert drift == [], "\n".join([*drift, "regenerate it: bash course.sh student"])


@notebook
def test_student_edition_has_no_solution_or_hidden_test(path):
    instructor = _read(path)
    student = _read(NOTEBOOK_DIR / STUDENT_DIR / path.name)
    text = "\n".join(c.source for c in student.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text, f"{path.name}: {marker!r} left in the student edition"
    code = [c.source for c in instructor.cells if c.cell_type == "code"]
    secret = [
        r
        for c in code
        for b, e in [
            ("### BEGIN SOLUTION", "### END SOLUTION"),
            ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
        ]
        for r in _regions(c, b, e)
    ]
    public = "\n".join(
        re.sub(r"(?s)### BEGIN (SOLUTION|HIDDEN TESTS).*?### END \1", "", c)
        for c in code + [c.source for c in instructor.cells if c.cell_type == "markdown"]
    )
    public_lines = {line.strip() for line in public.splitlines()}
    student_lines = {line.strip() for line in text.splitlines()}
    for region in secret:
        for line in region.splitlines():
            line = line.strip()
            if len(line) > 3 and not line.startswith("#") and line not in public_lines:
                assert line not in student_lines, f"{path.name}: {line!r} leaked"
    solutions = sum(len(_regions(c, "### BEGIN SOLUTION", "### END SOLUTION")) for c in code)
    assert text.count("# YOUR CODE HERE\n") == solutions
    assert sum(c.source.count("raise NotImplementedError()") for c in student.cells) >= solutions
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@notebook
def test_student_colab_badge_points_at_the_student_edition(path):
    student = _read(NOTEBOOK_DIR / STUDENT_DIR / path.name)
    first = student.cells[0].source
    assert f"({COLAB_PREFIX}{STUDENT_DIR}/{path.name})" in first
    links = re.findall(
        r"https://colab\.research\.google\.com/github/[^\s)\"']+",
        "\n".join(c.source for c in student.cells),
    )
    assert links
    for link in links:
        assert link.startswith(COLAB_PREFIX), link
        assert (NOTEBOOK_DIR / link.removeprefix(COLAB_PREFIX)).is_file(), f"dangling {link}"
    bootstrap = next(c.source for c in student.cells if c.cell_type == "code")
    assert classroom.BOOTSTRAP_LINE in bootstrap


def test_leave_student_folder(tmp_path, monkeypatch):
    student = tmp_path / "notebooks" / "student"
    student.mkdir(parents=True)
    (tmp_path / "notebooks" / "01_x.ipynb").write_text("{}")
    monkeypatch.chdir(student)
    course.leave_student_folder()
    assert Path.cwd() == tmp_path / "notebooks"
    course.leave_student_folder()  # anywhere else: nothing
    assert Path.cwd() == tmp_path / "notebooks"
    lone = tmp_path / "elsewhere" / "student"
    lone.mkdir(parents=True)
    monkeypatch.chdir(lone)
    course.leave_student_folder()
    assert Path.cwd() == lone


def test_student_edition_refuses_a_solution_outside_a_solution_cell():
    nb = _tiny_course()
    nb.cells[3].metadata.pop("nbgrader")
    with pytest.raises(ValueError, match=r"01_tiny\.ipynb: ClearSolutions"):
        classroom.student_edition(nb, "01_tiny.ipynb")


# ----------------------------------------------------------------------------- a tiny course

BADGE = (
    f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({COLAB_PREFIX}"
)


def _tiny_course() -> nbformat.NotebookNode:
    """Three exercises; ex3's test cell runs a function a student may make hang."""
    cells = [
        new_markdown_cell(f"# Tiny\n\n{BADGE}01_tiny.ipynb)"),
        new_code_cell("import os\nimport ferlib.course\n\nPROFILE = ferlib.course.profile()"),
        new_markdown_cell("### Exercise 1 · Double it"),
        new_code_cell(
            "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"
        ),
        new_code_cell(
            "assert double(2) == 4\n### BEGIN HIDDEN TESTS\nassert double(-3) == -6\n"
            "### END HIDDEN TESTS"
        ),
        new_code_cell(
            "if not os.path.isdir('../results'):  # the grader's folder\n"
            "    raise RuntimeError(os.getcwd())"
        ),
        new_markdown_cell("### Exercise 2 · The answer"),
        new_code_cell("### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION"),
        new_code_cell(
            "import ferlib.checks\nferlib.checks.check_close(answer, 42, 'answer')\n"
            "### BEGIN HIDDEN TESTS\nassert PROFILE == 'quick'\n"
            "### END HIDDEN TESTS"
        ),
        new_markdown_cell("### Exercise 3 · Stop"),
        new_code_cell("def stop():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"),
        new_code_cell(
            "assert stop() == 1\n### BEGIN HIDDEN TESTS\nassert stop() + 1 == 2\n"
            "### END HIDDEN TESTS"
        ),
        new_markdown_cell("## Summary"),
    ]
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}
        },
    )
    return classroom.mark_exercises(nb)


def _with(nb, **sources) -> nbformat.NotebookNode:
    """A copy of ``nb`` with the cells of the given grade_ids (``ex1_solution=...``) replaced."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", "").replace("-", "_")
        if gid in sources:
            cell.source = sources[gid]
    return nb


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny course graded once: (instructor dir, class dir, rows, seconds)."""
    base = tmp_path_factory.mktemp("tiny")
    instructor = base / "instructor"
    instructor.mkdir()
    nb = _tiny_course()
    nbformat.write(nb, instructor / "01_tiny.ipynb")
    stub = classroom.student_edition(nb, "01_tiny.ipynb")
    klass = base / "class"
    for student in "alice bob carol dave erin frank gina harry ivan kim lena".split():
        (klass / student).mkdir(parents=True)
    nbformat.write(nb, klass / "alice" / "01_tiny.ipynb")
    nbformat.write(stub, klass / "bob" / "Copy of 01_tiny (1).ipynb")
    # carol: passes the visible check of ex1 but not the hidden one; deletes ex2's test cell;
    # her ex3 hangs
    carol = _with(
        stub,
        ex1_solution="def double(x):\n    return x + 2",
        ex2_solution="answer = 42",
        ex3_solution="def stop():\n    while True:\n        pass",
    )
    carol.cells = [
        c for c in carol.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "ex2-tests"
    ]
    nbformat.write(carol, klass / "carol" / "01_tiny.ipynb")
    # dave: right answers, but he "fixes" ex1's test cell and turns ex3's into markdown
    dave = _with(nb, ex1_tests="assert True")
    dave.cells[11].cell_type = "markdown"
    dave.cells[11].pop("outputs", None)
    dave.cells[11].pop("execution_count", None)
    nbformat.write(nbformat.from_dict(dave), klass / "dave" / "01_tiny.ipynb")
    (klass / "erin" / "01_tiny.ipynb").write_text('{"cells": [ not json')
    (klass / "frank" / "notes.txt").write_text("I did it on paper")
    gina = _with(nb, ex3_solution="import os\nos._exit(1)")  # the kernel dies
    nbformat.write(gina, klass / "gina" / "01_tiny.ipynb")
    nbformat.write(nb, klass / "harry" / "01_tiny.ipynb")
    nbformat.write(nb, klass / "harry" / "01_tiny (2).ipynb")
    nbformat.write(nb, klass / "ivan" / "02_other.ipynb")
    # kim pasted everything into a new notebook: right answers, no nbgrader metadata
    kim = _with(
        stub,
        ex1_solution="def double(x):\n    return x * 2",
        ex2_solution="answer = 42",
        ex3_solution="def stop():\n    return 1",
    )
    for cell in kim.cells:
        cell.metadata.pop("nbgrader", None)
    nbformat.write(kim, klass / "kim" / "01_tiny.ipynb")
    # lena silences the checks instead of answering
    lena = _with(
        nb,
        ex2_solution="import ferlib.checks\n\nanswer = 41\n"
        "ferlib.checks.check_close = lambda *args, **kwargs: None",
    )
    nbformat.write(lena, klass / "lena" / "01_tiny.ipynb")
    (klass / "loose.ipynb").write_text("{}")
    (klass / ".ipynb_checkpoints").mkdir()
    nbformat.write(stub, klass / ".ipynb_checkpoints" / "01_tiny-checkpoint.ipynb")
    started = time.perf_counter()
    rows = classroom.grade_path(klass, instructor, timeout=10, progress=False)
    return instructor, klass, rows, time.perf_counter() - started


def _row(rows, student: str, notebook: str = "01_tiny"):
    found = [r for r in rows if r.student == student and r.notebook == notebook]
    assert len(found) == 1, [(r.student, r.notebook, r.status) for r in rows]
    return found[0]


def _scores(row) -> dict[int, tuple[float, str]]:
    return {e.exercise: (e.points, e.status) for e in row.exercises}


def test_grader_full_marks_for_the_solution(tiny, monkeypatch):
    row = _row(tiny[2], "alice")
    assert row.status == "graded" and row.errors == []  # ../results exists, profile quick
    assert _scores(row) == {1: (2, "passed"), 2: (2, "passed"), 3: (2, "passed")}
    assert (row.points, row.max_points) == (6, 6)


def test_grader_zero_for_the_stub(tiny):
    row = _row(tiny[2], "bob")  # "Copy of 01_tiny (1).ipynb" is 01_tiny
    assert _scores(row) == {1: (0, "failed"), 2: (0, "failed"), 3: (0, "failed")}
    assert all("NotImplementedError" in e.message for e in row.exercises)


def test_grader_restores_hidden_tests_and_deleted_cells_and_stops_a_hanging_cell(tiny):
    row = _row(tiny[2], "carol")
    assert _scores(row) == {1: (0, "failed"), 2: (0, "tampered"), 3: (0, "failed")}
    ex1, ex2, ex3 = row.exercises
    assert "AssertionError" in ex1.message  # the hidden double(-3) == -6
    assert "ex2-tests" in ex2.message
    assert "TimeoutError" in ex3.message and "10 s" in ex3.message


def test_grader_takes_the_test_cells_from_the_instructor(tiny):
    row = _row(tiny[2], "dave")
    assert _scores(row) == {1: (0, "tampered"), 2: (2, "passed"), 3: (0, "tampered")}


def test_grader_restores_the_checks_a_solution_replaced(tiny):
    row = _row(tiny[2], "lena")
    assert _scores(row) == {1: (2, "passed"), 2: (0, "failed"), 3: (2, "passed")}
    assert "AssertionError: answer: not close enough" in row.exercises[1].message


def test_grader_finds_test_cells_that_lost_their_metadata(tiny):
    row = _row(tiny[2], "kim")
    assert _scores(row) == {1: (2, "passed"), 2: (2, "passed"), 3: (2, "passed")}


def test_grader_survives_bad_files(tiny):
    rows = tiny[2]
    erin = _row(rows, "erin")
    assert erin.status == "unreadable" and "not a readable notebook" in erin.message
    assert erin.points == 0 and erin.max_points == 6
    frank = [r for r in rows if r.student == "frank"]
    assert sorted((r.notebook, r.status) for r in frank) == [
        ("01_tiny", "missing"),
        ("notes.txt", "not a notebook"),
    ]
    gina = _row(rows, "gina")
    assert gina.status == "incomplete" and "kernel died" in gina.message
    assert _scores(gina) == {1: (2, "passed"), 2: (2, "passed"), 3: (0, "not run")}
    harry = _row(rows, "harry")
    assert harry.status == "duplicate" and harry.points == 0 and "keep one" in harry.message
    ivan = [r for r in rows if r.student == "ivan"]
    assert sorted((r.notebook, r.status) for r in ivan) == [
        ("01_tiny", "missing"),
        ("02_other.ipynb", "unknown notebook"),
    ]
    assert [r.status for r in rows if r.student == ""] == ["not in a student folder"]
    everyone = {"", *"alice bob carol dave erin frank gina harry ivan kim lena".split()}
    assert {r.student for r in rows} == everyone  # .ipynb_checkpoints skipped


def test_grade_table_csv_and_json(tiny, tmp_path):
    rows = tiny[2]
    table = classroom.format_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == ["student", "notebook", "ex1", "ex2", "ex3", "points", "status"]
    assert re.search(r"^alice +01_tiny +2 +2 +2 +6/6 +graded$", table, re.M)
    assert re.search(r"^carol +01_tiny +0 ✗ +0 T +0 ✗ +0/6 +graded \(ex1 failed: ", table, re.M)
    assert re.search(r"^  alice +6/6$", table, re.M) and re.search(r"^  frank +0/6$", table, re.M)
    classroom.write_grades(rows, tmp_path)
    with open(tmp_path / "grades.csv", encoding="utf-8") as f:
        table_rows = list(csv.DictReader(f))
    assert len(table_rows) == len(rows)
    alice = next(r for r in table_rows if r["student"] == "alice")
    assert (alice["ex1"], alice["points"], alice["max_points"], alice["status"]) == (
        "2",
        "6",
        "6",
        "graded",
    )
    data = json.loads((tmp_path / "grades.json").read_text())
    assert data["totals"]["alice"] == {"points": 6, "max_points": 6}
    assert data["totals"]["gina"] == {"points": 4, "max_points": 6}
    carol = next(r for r in data["rows"] if r["student"] == "carol")
    assert [e["status"] for e in carol["exercises"]] == ["failed", "tampered", "failed"]
    with open(tmp_path / "totals.csv", encoding="utf-8") as f:
        assert {r["student"]: r["points"] for r in csv.DictReader(f)}["dave"] == "2"


def test_grade_command_on_one_notebook(tiny, tmp_path, capsys):
    from ferlib.cli import main

    instructor, klass = tiny[0], tiny[1]
    code = main(
        [
            "grade",
            str(klass / "alice" / "01_tiny.ipynb"),
            "--instructor",
            str(instructor),
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert re.search(r"^alice +01_tiny +2 +2 +2 +6/6 +graded$", out, re.M)
    assert (tmp_path / "grades.csv").is_file() and (tmp_path / "grades.json").is_file()
    assert main(["grade", str(tmp_path / "nowhere"), "--instructor", str(instructor)]) == 2


def test_student_command_check_finds_drift(tmp_path, capsys):
    from ferlib.cli import main

    src = tmp_path / "notebooks"
    src.mkdir()
    nbformat.write(_tiny_course(), src / "01_tiny.ipynb")
    assert main(["student", "--src", str(src), "--check"]) == 1
    assert main(["student", "--src", str(src)]) == 0
    assert (src / STUDENT_DIR / "01_tiny.ipynb").is_file()
    assert main(["student", "--src", str(src), "--check"]) == 0
    student = src / STUDENT_DIR / "01_tiny.ipynb"
    student.write_text(student.read_text().replace("YOUR CODE HERE", "my answer"))
    assert main(["student", "--src", str(src), "--check"]) == 1
    assert "differs" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the course


def _wrong_submission(stem: str) -> nbformat.NotebookNode:
    """The student edition of ``stem`` with the first wrong answer of each exercise."""
    from test_exercises import CASES

    nb = _read(NOTEBOOK_DIR / STUDENT_DIR / f"{stem}.ipynb")
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if not gid.endswith("-solution"):
            continue
        answers = CASES[(stem, int(gid[2:].split("-")[0]))][1]
        wrong = next(iter(answers.values()))
        stub = "# YOUR CODE HERE\nraise NotImplementedError()"
        # a stub at the top level keeps what surrounds it (an import); a function's is replaced
        cell.source = cell.source.replace(stub, wrong) if stub in cell.source else wrong
    return nb


@pytest.fixture(scope="module")
def course_grades(tmp_path_factory):
    """Instructor, student and wrong-answer editions of every notebook, graded in one call."""
    klass = tmp_path_factory.mktemp("course")
    for who in ("instructor", "student", "wrong"):
        (klass / who).mkdir()
    for path in NOTEBOOKS:
        shutil.copy(path, klass / "instructor" / path.name)
        shutil.copy(NOTEBOOK_DIR / STUDENT_DIR / path.name, klass / "student" / path.name)
        nbformat.write(_wrong_submission(path.stem), klass / "wrong" / path.name)
    started = time.perf_counter()
    rows = classroom.grade_path(klass, NOTEBOOK_DIR, progress=False)
    seconds = time.perf_counter() - started
    print(classroom.format_table(rows))
    print(f"graded {len(rows)} notebooks in {seconds:.0f} s")
    return {(r.student, r.notebook): r for r in rows}


def _course_rows(grades, who):
    rows = [grades[(who, p.stem)] for p in NOTEBOOKS]
    assert len(rows) == len(NOTEBOOKS)
    return rows


@pytest.mark.slow
def test_instructor_edition_scores_full_marks(course_grades):
    for row in _course_rows(course_grades, "instructor"):
        assert row.status == "graded" and row.errors == [], (row.notebook, row.errors)
        assert row.points == row.max_points > 0, (row.notebook, row.exercises)


@pytest.mark.slow
def test_student_edition_scores_zero_and_fails_only_in_its_stubs(course_grades):
    for row in _course_rows(course_grades, "student"):
        assert row.status == "graded", (row.notebook, row.message)
        assert [e.points for e in row.exercises] == [0] * len(row.exercises), row.notebook
        for error in row.errors:
            gid = error["grade_id"] or ""
            allowed = {"NotImplementedError"} | ({"NameError"} if "-tests" in gid else set())
            assert gid and error["ename"] in allowed, (row.notebook, error)
        solutions = {e["grade_id"] for e in row.errors if "-solution" in (e["grade_id"] or "")}
        stubs = {f"ex{e.exercise}-solution" for e in row.exercises}
        assert solutions <= stubs


@pytest.mark.slow
def test_a_wrong_answer_loses_each_exercises_points(course_grades):
    for row in _course_rows(course_grades, "wrong"):
        assert row.status == "graded", (row.notebook, row.message)
        for e in row.exercises:
            assert e.status == "failed" and e.points < e.max_points, (row.notebook, e)
