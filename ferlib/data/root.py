"""Where the datasets live: `$FERLIB_DATA`, the repository's `data/`, or `./data`."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_data_root"]


def default_data_root() -> Path:
    """Folder holding the datasets.

    `$FERLIB_DATA` if set; else the repository's `data/` folder when ferlib is imported
    from a source checkout (the folder above the package holds `pyproject.toml`); else
    `./data`.
    """
    env = os.environ.get("FERLIB_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file():
        return repo / "data"
    return Path("data")
