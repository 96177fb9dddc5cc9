"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """Folder containing `MNIST/raw/` (idx files): `$FERLIB_MNIST_ROOT`, else the
    workplace copy `../shared/data` beside the repository; skip when neither has MNIST."""
    env = os.environ.get("FERLIB_MNIST_ROOT")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"MNIST not found in {root}/MNIST/raw/ (set FERLIB_MNIST_ROOT)")
    return root
