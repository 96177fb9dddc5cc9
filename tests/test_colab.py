"""The notebooks' Colab bootstrap, run for real against a local clone of this repository.

On Colab the first code cell clones the course at ``ferlib.course.COURSE_REF`` into
``COLAB_DIR``, installs it and moves into its ``notebooks/`` folder, so that notebook 04's
committed-study cells find ``../results``. Here the same cell runs in a fresh interpreter
that believes it is on Colab (a stub ``google.colab`` module), with the repository URL
pointed at a local clone tagged ``COURSE_REF`` and pip replaced by a stub that records its
arguments (the test must not reinstall the project under test).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ferlib import course

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "04_wmnist_study.ipynb"

PROBE = """
import json, os, sys
sys.executable = {stub!r}  # the cell runs pip as [sys.executable, "-m", "pip", ...]
import google.colab  # noqa: F401  (the stub: this interpreter now "is" Colab)
exec(compile({cell!r}, "bootstrap-cell", "exec"))
import ferlib
print(json.dumps({{
    "cwd": os.getcwd(),
    "ferlib": ferlib.__file__,
    "profile": PROFILE,
    "results": sorted(p for p in os.listdir("../results") if not p.startswith(".")),
}}))
"""


def _bootstrap_cell() -> str:
    nb = json.loads(NOTEBOOK.read_text())
    first = next(c for c in nb["cells"] if c["cell_type"] == "code")
    return "".join(first["source"])


def _git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A clone of this repository's committed HEAD with the tag COURSE_REF on it."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the course")
    origin = tmp_path / "origin"
    _git("clone", "--quiet", str(ROOT), str(origin))
    _git("tag", "--force", course.COURSE_REF, "HEAD", cwd=origin)
    return origin


def _run_probe(tmp_path: Path, cell: str) -> dict:
    fake = tmp_path / "fake"
    (fake / "google").mkdir(parents=True, exist_ok=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab.py").write_text("")
    stub = tmp_path / "pip-stub.sh"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "pip-calls.txt"}\n')
    stub.chmod(0o755)
    probe = PROBE.format(stub=str(stub), cell=cell)
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(fake), "FERLIB_PROFILE": "quick"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bootstrap_clones_the_release_installs_it_and_finds_the_committed_results(
    tmp_path, release
):
    cell = _bootstrap_cell()
    home = tmp_path / "content" / "ferlib"
    constants = f'"{course.REPO_URL}", "{course.COURSE_REF}", "{course.COLAB_DIR}"'
    assert constants in cell
    cell = cell.replace(constants, f'"file://{release}", "{course.COURSE_REF}", "{home}"')

    seen = _run_probe(tmp_path, cell)
    assert _git("rev-parse", "HEAD", cwd=home) == _git("rev-parse", "HEAD", cwd=release)
    assert Path(seen["cwd"]) == home / "notebooks"
    assert Path(seen["ferlib"]).is_relative_to(home), "ferlib must come from the clone"
    assert seen["profile"] == "quick"
    assert "wmnist-published" in seen["results"]
    assert (home / "results" / "wmnist-published" / "table1.json").is_file()
    calls = (tmp_path / "pip-calls.txt").read_text().splitlines()
    assert calls == [f"-m pip install -q -e {home}"]

    _run_probe(tmp_path, cell)  # a second run (another notebook) reuses the clone
    assert (tmp_path / "pip-calls.txt").read_text().splitlines() == calls


STUDENT_NOTEBOOK = ROOT / "notebooks" / "student" / "00_setup.ipynb"


def _student_bootstrap_cell() -> str:
    nb = json.loads(STUDENT_NOTEBOOK.read_text())
    return "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])


def test_student_edition_bootstrap_on_colab_works_from_the_clones_notebooks(tmp_path, release):
    """The student edition's extra line leaves Colab's working folder alone."""
    cell = _student_bootstrap_cell()
    home = tmp_path / "content" / "ferlib"
    constants = f'"{course.REPO_URL}", "{course.COURSE_REF}", "{course.COLAB_DIR}"'
    assert constants in cell and "leave_student_folder()" in cell
    cell = cell.replace(constants, f'"file://{release}", "{course.COURSE_REF}", "{home}"')
    seen = _run_probe(tmp_path, cell)
    assert Path(seen["cwd"]) == home / "notebooks"
    assert "wmnist-published" in seen["results"]
    assert (home / "notebooks" / "student" / STUDENT_NOTEBOOK.name).is_file()


def test_student_edition_bootstrap_in_a_clone_moves_up_to_notebooks():
    """Opened from notebooks/student/ (git clone, Jupyter), ../results is the course's."""
    probe = (
        f"exec(compile({_student_bootstrap_cell()!r}, 'bootstrap-cell', 'exec'))\n"
        "import json, os\n"
        "print(json.dumps({'cwd': os.getcwd(), 'results': os.listdir('../results')}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=STUDENT_NOTEBOOK.parent,
        env={"PATH": "/usr/bin:/bin", "FERLIB_PROFILE": "quick"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(seen["cwd"]) == ROOT / "notebooks"
    assert "wmnist-published" in seen["results"]
