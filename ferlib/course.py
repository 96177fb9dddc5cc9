"""Course plumbing: the repository and release, the speed switch, the environment report.

Every notebook starts the same way: on Colab it clones the course at the release
:data:`COURSE_REF` of :data:`REPO_URL` into :data:`COLAB_DIR` (code, notebooks and the
committed ``results/``), installs it, and works from its ``notebooks/`` folder; then it
reads the speed switch with :func:`profile`::

    PROFILE = ferlib.course.profile()   # "quick" (CI, CPU) or "full" (the real experiment)

The switch is the environment variable ``FERLIB_PROFILE``. Unset, it is ``"full"`` when a
CUDA GPU is present and ``"quick"`` otherwise, so a laptop gets minutes-long runs and a
Colab GPU the paper's settings.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "COLAB_DIR",
    "COURSE_REF",
    "PROFILES",
    "PROFILE_ENV",
    "RAFDB_LABELS",
    "REPO_URL",
    "RUNS_ENV",
    "environment_report",
    "in_colab",
    "leave_student_folder",
    "print_environment",
    "profile",
    "quiet",
    "runs_dir",
]

# The ONE place the repository URL is written in Python. Notebooks repeat it literally in
# their Colab cell (a notebook must install ferlib before it can import it);
# tests/test_course.py checks that they match.
REPO_URL = "https://github.com/ferlib-course/ferlib"

# The release the Colab bootstrap clones and the Colab badges open: a git tag, never the
# moving default branch, so that a notebook, the library it imports and the results it
# discusses are one revision. It is "v" + the package version; releasing means bumping the
# version in pyproject.toml and ferlib/__init__.py, this line and the notebooks' first
# cells and badges (tests/test_course.py checks they agree), then tagging that commit.
COURSE_REF = "v0.2.0"
COLAB_DIR = "/content/ferlib"  # where the bootstrap clones the course on Colab

PROFILE_ENV = "FERLIB_PROFILE"
PROFILES: tuple[str, ...] = ("quick", "full")

# RAF-DB is not downloadable (it needs a licence agreement); this is the label file that
# tells the course it has been put in place under the data root.
RAFDB_LABELS = Path("RAF-DB") / "basic" / "EmoLabel" / "list_patition_label.txt"


def profile() -> str:
    """The speed switch: ``"quick"`` or ``"full"``, from ``$FERLIB_PROFILE``.

    Unset (or empty): ``"full"`` when CUDA is available, else ``"quick"``. Any other
    value raises ``ValueError`` naming the allowed values.
    """
    value = os.environ.get(PROFILE_ENV, "").strip().lower()
    if not value:
        return "full" if torch.cuda.is_available() else "quick"
    if value not in PROFILES:
        raise ValueError(
            f"{PROFILE_ENV}={os.environ[PROFILE_ENV]!r} is not a profile: use one of "
            f"{', '.join(repr(p) for p in PROFILES)} (or leave it unset to choose by hardware)"
        )
    return value


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


RUNS_ENV = "FERLIB_RUNS"
#: Where a notebook keeps its runs on Colab when Google Drive is mounted at /content/drive.
DRIVE_RUNS = Path("/content/drive/MyDrive/ferlib-runs")


def runs_dir(name: str, local: str | Path = Path("..") / "runs") -> Path:
    """The folder of a notebook's runs (checkpoints and results), ``<base>/<name>``.

    ``<base>`` is ``$FERLIB_RUNS`` when set; else, on Colab with Google Drive mounted
    (``drive.mount("/content/drive")``), :data:`DRIVE_RUNS`, so that checkpoints outlive a
    disconnected runtime and a rerun resumes; else ``local`` (the course's ``runs/``,
    git-ignored).
    """
    base = os.environ.get(RUNS_ENV, "").strip()
    if base:
        return Path(base) / name
    if in_colab() and DRIVE_RUNS.parent.is_dir():
        return DRIVE_RUNS / name
    return Path(local) / name


def leave_student_folder() -> None:
    """Work from ``notebooks/`` when the notebook runs in ``notebooks/student/``.

    The student edition (``notebooks/student/``, see :mod:`ferlib.classroom`) calls this in
    its first cell so that ``../results`` and ``../data`` mean what they mean for the
    instructor edition. Anywhere else (Colab's clone after the bootstrap, the grader) it
    does nothing.
    """
    here = Path.cwd()
    if here.name == "student" and any(here.parent.glob("*.ipynb")):
        os.chdir(here.parent)


def _device_name() -> str:
    from ferlib.runtime import pick_device

    device = pick_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def environment_report(data_root: str | Path | None = None) -> dict[str, Any]:
    """What the course runs on: versions, the device found, the profile, the datasets.

    Keys: ``python``, ``platform``, ``torch``, ``torchvision``, ``ferlib``, ``device``,
    ``cpu_threads``, ``profile``, ``colab``, ``data_root`` and ``datasets``
    (``{"MNIST": bool, "RAF-DB": bool}``: whether the files are under the data root).
    """
    import torchvision

    import ferlib
    from ferlib.data import MNIST_FILES, default_data_root

    root = Path(data_root) if data_root is not None else default_data_root()
    raw = root / "MNIST" / "raw"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "ferlib": ferlib.__version__,
        "device": _device_name(),
        "cpu_threads": torch.get_num_threads(),
        "profile": profile(),
        "colab": in_colab(),
        "data_root": str(root),
        "datasets": {
            "MNIST": all((raw / name).is_file() for name in MNIST_FILES),
            "RAF-DB": (root / RAFDB_LABELS).is_file(),
        },
    }


def print_environment(report: dict[str, Any] | None = None) -> None:
    """Print :func:`environment_report` as an aligned table."""
    report = environment_report() if report is None else report
    rows = {k: v for k, v in report.items() if k != "datasets"}
    for name, present in report.get("datasets", {}).items():
        rows[f"dataset {name}"] = "present" if present else "missing"
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")


@contextmanager
def quiet() -> Iterator[None]:
    """Silence Python warnings inside a ``with`` block (for clean committed outputs).

    Use it around a call whose warning is understood and harmless, never as a blanket
    at the top of a notebook: a warning that nobody expected is worth seeing.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
