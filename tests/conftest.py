"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ferlib.data import default_data_root


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """Folder containing `MNIST/raw/` (idx files): `$FERLIB_MNIST_ROOT`, else the project's
    data root (where CI copies MNIST), else the workplace copy `../shared/data` beside the
    repository; skip when none has MNIST."""
    env = os.environ.get("FERLIB_MNIST_ROOT")
    candidates = (
        [Path(env)]
        if env
        else [default_data_root(), Path(__file__).resolve().parents[2] / "shared" / "data"]
    )
    for root in candidates:
        if (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
            return root
    pytest.skip(f"MNIST not found in any of {[str(c) for c in candidates]} (set FERLIB_MNIST_ROOT)")
