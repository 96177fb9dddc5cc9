"""The grader's sandbox (``ferlib.classroom.sandbox``, issue 20 part 1) on the tiny course of
``tests/test_classroom.py``: one class where malicious students, graded first, try to

* write the instructor notebook, ``ferlib/checks.py`` (so that every later correct answer
  fails), the course's ``results/`` and data, and the next student's submission;
* read the instructor notebook (its hidden tests), the course's instructor notebooks and
  ``.git``, another student's submission, the grader's command line and its environment;
* leave a detached process running after their submission;
* reach the network, or the grader's machine over loopback;

and an honest student graded after them keeps full marks. Each attack reports what it
managed in an error message (the only thing of a run the grade table keeps). Run with
``sandbox=False`` instead, every one of these attacks succeeds (the attack tests fail):
that is the grader before the sandbox.

Also: the limits (address space, processes, CPU time), the grader without a sandbox
(``--no-sandbox``), the one line that says which mode grades, and the sandbox's overhead
per notebook (printed; ``-s`` shows it).

These tests need bubblewrap (``sudo apt-get install bubblewrap``, Debian/Ubuntu); without
it they skip saying so, and CI sets ``FERLIB_REQUIRE_SANDBOX=1``, which turns every such
skip into a failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell
from test_classroom import _row, _scores, _tiny_course, _with

import ferlib.checks
from ferlib import classroom
from ferlib.classroom import sandbox

ROOT = Path(__file__).resolve().parents[1]
REQUIRE = os.environ.get("FERLIB_REQUIRE_SANDBOX", "") == "1"
SECRET = "GRADER_API_TOKEN"  # a variable of the grader's that no kernel may see
SABOTAGE = "\n\ndef check_close(*args, **kwargs):\n    raise AssertionError('sabotaged')\n"
FULL = {1: (2, "passed"), 2: (2, "passed"), 3: (2, "passed")}


def need_sandbox() -> None:
    """Skip (fail under ``FERLIB_REQUIRE_SANDBOX=1``) where no sandbox can be made."""
    problem = sandbox.sandbox_problem()
    if problem:
        message = f"sandbox test: {problem}"
        if sandbox.INSTALL not in problem:
            message += f" (Debian/Ubuntu: `{sandbox.INSTALL}`)"
        if REQUIRE:
            pytest.fail(message + " (FERLIB_REQUIRE_SANDBOX=1: this must run)", pytrace=False)
        pytest.skip(message)


def _attack(code: str, **params) -> nbformat.NotebookNode:
    """The instructor's (right) answers plus one cell running ``code`` with ``P`` (the
    params) and a ``report`` dict, raised at the end as ``RuntimeError('REPORT {json}')``."""
    nb = _tiny_course()
    prologue = f"import json, os, sys\nP = json.loads({json.dumps(params)!r})\nreport = {{}}\n"
    epilogue = "\nraise RuntimeError('REPORT ' + json.dumps(report))"
    nb.cells.insert(2, new_code_cell(prologue + code + epilogue))
    return nb


def _report(row) -> dict:
    found = [e["evalue"] for e in row.errors if e["evalue"].startswith("REPORT ")]
    assert len(found) == 1, row.errors
    return json.loads(found[0].removeprefix("REPORT "))


WRITE = """
for target, text in P["targets"].items():
    try:
        with open(target, "a" if target.endswith(".py") else "w") as f:
            f.write(text)
        report[target] = "written"
    except OSError as err:
        report[target] = type(err).__name__
"""

READ = """
import glob
for target in P["targets"]:
    try:
        text = open(target, errors="replace").read()
        report[target] = "read, hidden tests" if "HIDDEN TESTS" in text else "read"
    except OSError as err:
        report[target] = type(err).__name__
hits = []
for path in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        line = open(path, "rb").read().replace(b"\\0", b" ").decode(errors="replace")
    except OSError:
        continue
    if "pytest" in line or P["instructor"] in line:
        hits.append(line[:200])
report["grader command lines"] = hits
report["secret"] = os.environ.get(P["secret"], "")
"""

DAEMON = """
import subprocess, time
code = (
    "import sys, time\\n"
    "for _ in range(300):\\n"
    "    time.sleep(0.2)\\n"
    "    try:\\n"
    "        open(sys.argv[2], 'a').write('still here\\\\n')\\n"
    "    except OSError:\\n"
    "        pass\\n"
)
p = subprocess.Popen(
    [sys.executable, "-c", code, P["token"], P["trace"]],
    start_new_session=True,
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
time.sleep(0.5)
report["started"] = p.poll() is None
"""

NETWORK = """
import socket
for name, host, port in [("grader", "127.0.0.1", P["port"]), ("internet", "1.1.1.1", 53)]:
    try:
        socket.create_connection((host, port), timeout=3).close()
        report[name] = "connected"
    except OSError as err:
        report[name] = type(err).__name__
"""

LIMITS = """
import mmap, resource, subprocess
report["limits"] = {
    r: resource.getrlimit(getattr(resource, "RLIMIT_" + r))[0] for r in ("AS", "NPROC", "CPU")
}
try:
    m = mmap.mmap(-1, 6 * 2**30)  # address space only: nothing is touched
    m.close()
    report["6 GiB"] = "mapped"
except (OSError, MemoryError) as err:
    report["6 GiB"] = type(err).__name__
kids = []
try:
    while len(kids) < 500:
        kids.append(subprocess.Popen(["sleep", "60"]))
except OSError as err:
    report["fork"] = type(err).__name__
report["processes"] = len(kids)
for k in kids:
    k.kill()
    k.wait()
spin = subprocess.run([sys.executable, "-c", "while True: pass"], timeout=60)
report["busy loop"] = spin.returncode
"""


def _processes_with(token: str) -> list[int]:
    pids = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if token.encode() in path.read_bytes():
                pids.append(int(path.parent.name))
        except OSError:
            pass
    return pids


@pytest.fixture(scope="module")
def attacks(tmp_path_factory):
    """A class of four attackers and one honest student (graded last), graded once in
    sandboxes: (rows, context). The repository's ``ferlib/checks.py`` is put back as it
    was whatever happens (and the test then fails)."""
    need_sandbox()
    base = tmp_path_factory.mktemp("attacks")
    instructor, klass = base / "instructor", base / "class"
    instructor.mkdir()
    nb = _tiny_course()
    nbformat.write(nb, instructor / "01_tiny.ipynb")
    sabotaged = _with(nb, ex1_tests="assert False, 'sabotaged'")
    stub = classroom.student_edition(nb, "01_tiny.ipynb")
    honest = klass / "zoe" / "01_tiny.ipynb"
    checks = Path(ferlib.checks.__file__)
    data = Path(classroom.grading._data_root() or base / "no-data")
    ctx = {
        "instructor": instructor / "01_tiny.ipynb",
        "honest": honest,
        "checks": checks,
        "token": f"ferlib-daemon-{uuid.uuid4().hex}",
        "trace": base / "daemon.txt",
        # results/ is read-only; the data folder takes new files in a throw-away layer
        "planted": [ROOT / "results" / "sabotage.txt", data / "sabotage.txt"],
    }
    listener = socket.create_server(("127.0.0.1", 0))
    ctx["port"] = listener.getsockname()[1]
    before = {p: p.read_bytes() for p in (ctx["instructor"], checks)}
    writes = {
        str(ctx["instructor"]): nbformat.writes(sabotaged),
        str(checks): SABOTAGE,
        str(honest): nbformat.writes(stub),
        **{str(p): "sabotage" for p in ctx["planted"]},
    }
    reads = [ctx["instructor"], honest, ROOT / ".git" / "HEAD", *ROOT.glob("notebooks/*.ipynb")]
    submissions = {
        "mallory-1-writes": _attack(WRITE, targets=writes),
        "mallory-2-reads": _attack(
            READ, targets=[str(p) for p in reads], instructor=str(instructor), secret=SECRET
        ),
        "mallory-3-daemon": _attack(DAEMON, token=ctx["token"], trace=str(ctx["trace"])),
        "mallory-4-network": _attack(NETWORK, port=ctx["port"]),
        "zoe": nb,
    }
    for student, submission in submissions.items():
        (klass / student).mkdir(parents=True)
        nbformat.write(submission, klass / student / "01_tiny.ipynb")
    ctx["honest_before"] = honest.read_bytes()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(SECRET, "s3cr3t")
            rows = classroom.grade_path(klass, instructor, timeout=30, progress=False)
        ctx["ended"] = time.time()
        time.sleep(1.5)  # a process left behind would go on writing its trace
        ctx["after"] = {p: p.read_bytes() for p in before}
        ctx["left"] = _processes_with(ctx["token"])
        yield rows, ctx
    finally:
        listener.close()
        for pid in _processes_with(ctx["token"]):  # only ours: the token is unique
            os.kill(pid, signal.SIGKILL)
        if checks.read_bytes() != before[checks]:
            checks.write_bytes(before[checks])
        for path in ctx["planted"]:
            if path.is_file() and path.read_text() == "sabotage":
                path.unlink()


def test_every_submission_was_graded_in_a_sandbox(attacks):
    rows, _ = attacks
    assert {r.student: r.sandboxed for r in rows} == {
        "mallory-1-writes": True,
        "mallory-2-reads": True,
        "mallory-3-daemon": True,
        "mallory-4-network": True,
        "zoe": True,
    }
    for row in rows:  # each ran whole: its answers and the instructor's tests
        assert row.status == "graded" and _scores(row) == FULL, (row.student, row.errors)


def test_a_submission_cannot_change_the_course_or_other_submissions(attacks):
    rows, ctx = attacks
    report = _report(_row(rows, "mallory-1-writes"))
    layer = str(ctx["planted"][1])  # may be "written": in the sandbox's layer, not here
    assert len(report) == 5, report
    assert [k for k, v in report.items() if v == "written" and k != layer] == [], report
    assert ctx["after"] == {p: p.read_bytes() for p in ctx["after"]}  # unchanged since
    assert ctx["after"][ctx["checks"]] == ctx["checks"].read_bytes()
    assert "sabotaged" not in ctx["checks"].read_text()
    assert "sabotaged" not in ctx["instructor"].read_text()
    assert ctx["honest"].read_bytes() == ctx["honest_before"]
    assert not any(p.exists() for p in ctx["planted"])


def test_an_honest_student_graded_after_them_keeps_full_marks(attacks):
    row = _row(attacks[0], "zoe")
    assert row.status == "graded" and row.errors == []
    assert _scores(row) == FULL and row.points == row.max_points == 6


def test_a_submission_cannot_read_the_hidden_tests_or_the_grader(attacks):
    rows, ctx = attacks
    report = _report(_row(rows, "mallory-2-reads"))
    files = {k: v for k, v in report.items() if k.startswith("/")}
    assert str(ctx["instructor"]) in files and str(ctx["honest"]) in files
    assert files and not any(v.startswith("read") for v in files.values()), files
    assert report["grader command lines"] == []
    assert report["secret"] == ""


def test_no_process_of_a_submission_outlives_it(attacks):
    rows, ctx = attacks
    report = _report(_row(rows, "mallory-3-daemon"))
    assert report["started"] is True  # it ran, detached, while its submission ran
    assert ctx["left"] == []
    trace = ctx["trace"]
    assert not trace.exists() or trace.stat().st_mtime < ctx["ended"]


def test_a_submission_has_no_network(attacks):
    report = _report(_row(attacks[0], "mallory-4-network"))
    assert report["grader"] != "connected" and report["internet"] != "connected", report


def test_memory_processes_and_cpu_time_are_limited(tmp_path):
    need_sandbox()
    (tmp_path / "instructor").mkdir()
    nbformat.write(_tiny_course(), tmp_path / "instructor" / "01_tiny.ipynb")
    nbformat.write(_attack(LIMITS), tmp_path / "greedy.ipynb")
    limits = sandbox.Limits(memory_gb=5, processes=64, cpu_seconds=4)  # torch maps 3 GiB
    row = classroom.grade_notebook(
        tmp_path / "greedy.ipynb",
        tmp_path / "instructor" / "01_tiny.ipynb",
        sandbox=True,
        limits=limits,
        timeout=60,
    )
    report = _report(row)
    assert report["limits"] == {"AS": 5 * 2**30, "NPROC": 64, "CPU": 4}
    assert report["6 GiB"] != "mapped"
    assert report["fork"] == "BlockingIOError" and report["processes"] < 64
    assert report["busy loop"] == -signal.SIGXCPU
    assert _scores(row) == FULL


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bubblewrap is for Linux")
def test_instructor_notebooks_in_a_folder_shown_are_covered(tmp_path):
    data, box = tmp_path / "data", tmp_path / "box"
    (data / "instructor").mkdir(parents=True)
    (data / "MNIST").mkdir()
    (box / "notebooks").mkdir(parents=True)
    args = sandbox.bwrap_args(box, ROOT, data, sandbox.Limits(), hide=[data / "instructor"])
    text = " ".join(args)
    assert f"--ro-bind {data / 'instructor'} " in text  # shown, as every entry of data/
    assert f"--tmpfs {data / 'instructor'} " in text  # then covered
    assert text.index(f"--tmpfs {data / 'instructor'}") > text.index(f"--ro-bind {data}/")
    assert f"--tmpfs {ROOT}" not in text and f"--tmpfs {data} " not in text
    args = sandbox.bwrap_args(box, ROOT, None, sandbox.Limits(), hide=[ROOT / "notebooks"])
    assert args.count("--tmpfs") == 2  # /dev/shm and /tmp: notebooks/ is not shown anyway


# ----------------------------------------------------------------------------- modes


def test_the_mode_is_said_in_one_line(monkeypatch):
    used, line = sandbox.sandbox_mode(False)
    assert not used and line.startswith("grading WITHOUT a sandbox (--no-sandbox)")
    monkeypatch.setattr(sandbox, "_bwrap", lambda: None)
    sandbox.sandbox_problem.cache_clear()
    try:
        used, line = sandbox.sandbox_mode()
        assert not used and "\n" not in line
        assert line.startswith("grading WITHOUT a sandbox: ")
        assert "bubblewrap" in line
        with pytest.raises(RuntimeError, match="a sandbox was required"):
            sandbox.sandbox_mode(True)
    finally:
        sandbox.sandbox_problem.cache_clear()


def test_without_a_sandbox_the_grader_works_as_before(tmp_path, capsys):
    from ferlib.cli import main

    (tmp_path / "instructor").mkdir()
    (tmp_path / "class" / "alice").mkdir(parents=True)
    nb = _tiny_course()
    nbformat.write(nb, tmp_path / "instructor" / "01_tiny.ipynb")
    nbformat.write(nb, tmp_path / "class" / "alice" / "01_tiny.ipynb")
    args = ["grade", str(tmp_path / "class"), "--instructor", str(tmp_path / "instructor")]
    args += ["--out", str(tmp_path / "grades"), "--no-progress", "--no-sandbox"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("grading WITHOUT a sandbox (--no-sandbox)")
    assert re.search(r"^alice +01_tiny +2 +2 +2 +6/6 +graded$", out, re.M)
    data = json.loads((tmp_path / "grades" / "grades.json").read_text())
    assert [r["sandboxed"] for r in data["rows"]] == [False]


def test_the_command_says_it_grades_in_a_sandbox(tmp_path, capsys):
    need_sandbox()
    from ferlib.cli import main

    (tmp_path / "instructor").mkdir()
    nbformat.write(_tiny_course(), tmp_path / "instructor" / "01_tiny.ipynb")
    args = ["grade", str(tmp_path / "instructor" / "01_tiny.ipynb")]
    args += ["--instructor", str(tmp_path / "instructor"), "--out", str(tmp_path / "grades")]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("grading in a sandbox (bubblewrap")
    assert re.search(r"^instructor +01_tiny +2 +2 +2 +6/6 +graded$", out, re.M)


def test_the_sandbox_overhead_per_notebook(tmp_path):
    """The tiny course's notebook graded three times each way, alternately; printed."""
    need_sandbox()
    (tmp_path / "instructor").mkdir()
    nb = _tiny_course()
    nbformat.write(nb, tmp_path / "instructor" / "01_tiny.ipynb")
    nbformat.write(nb, tmp_path / "alice.ipynb")
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(3):
        for sandboxed in (True, False):
            started = time.perf_counter()
            row = classroom.grade_notebook(
                tmp_path / "alice.ipynb",
                tmp_path / "instructor" / "01_tiny.ipynb",
                sandbox=sandboxed,
            )
            seconds[sandboxed].append(time.perf_counter() - started)
            assert row.points == 6 and row.sandboxed == sandboxed
    box, plain = statistics.median(seconds[True]), statistics.median(seconds[False])
    print(
        f"\nper notebook (tiny course, median of 3): sandbox {box:.2f} s, none {plain:.2f} s, "
        f"overhead {box - plain:+.2f} s (x{box / plain:.2f})"
    )
    assert box < plain + 10  # a loose bound: the machine may be busy
