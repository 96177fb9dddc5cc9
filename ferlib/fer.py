"""The FER experiment under its pre-issue-16 import path: ``from ferlib.fer import ...``.

Notebooks handed out before the experiments became :mod:`ferlib.experiments` (and student
submissions made from them) import from here. This module only forwards each name to
:mod:`ferlib.experiments.fer`, which new code imports.
"""

from __future__ import annotations

from typing import Any

from ferlib.experiments import fer as _home

__all__ = list(_home.__all__)


def __getattr__(name: str) -> Any:
    """The object ``name`` of :mod:`ferlib.experiments.fer` (PEP 562)."""
    if name.startswith("_") or not hasattr(_home, name):
        raise AttributeError(
            f"module 'ferlib.fer' has no attribute {name!r}; see ferlib.experiments.fer"
        )
    return getattr(_home, name)
