"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ferlib.data import default_data_root, load_mnist


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """Folder containing `MNIST/raw/` (idx files): `$FERLIB_MNIST_ROOT`, else the project's
    data root (where CI copies MNIST), else the workplace copy `../shared/data` beside the
    repository. When none has MNIST it is downloaded into the data root, as a student's
    first notebook would; if that fails, every MNIST test fails with the reason (a test
    suite that silently skips the dataset proves nothing about it)."""
    env = os.environ.get("FERLIB_MNIST_ROOT")
    candidates = (
        [Path(env)]
        if env
        else [default_data_root(), Path(__file__).resolve().parents[2] / "shared" / "data"]
    )
    for root in candidates:
        if (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
            return root
    root = candidates[0]
    try:
        load_mnist(root, train=True, download=True)
        load_mnist(root, train=False, download=True)
    except FileNotFoundError as err:
        pytest.fail(
            f"MNIST is needed and is not in any of {[str(c) for c in candidates]}, and the "
            f"download into {root} failed: {err}",
            pytrace=False,
        )
    return root
