"""The W-MNIST experiments under their pre-issue-16 import path: ``from ferlib.study import ...``.

Notebooks handed out before the experiments became :mod:`ferlib.experiments` (and student
submissions made from them) import from here. This module only forwards each name to the
module that holds it now: :mod:`ferlib.experiments.wmnist`, ``.table1``, ``.stability``,
``.scale`` and ``.scale_report``; new code imports from those.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = ("wmnist", "table1", "stability", "scale", "scale_report")


def __getattr__(name: str) -> Any:
    """The object ``name`` of the first :data:`_HOMES` module that has it (PEP 562)."""
    for home in _HOMES:
        module = importlib.import_module(f"ferlib.experiments.{home}")
        if hasattr(module, name) and not name.startswith("_"):
            return getattr(module, name)
    raise AttributeError(
        f"module 'ferlib.study' has no attribute {name!r}; the W-MNIST experiments live in "
        f"ferlib.experiments.{{{', '.join(_HOMES)}}}"
    )


__all__ = sorted(
    {n for h in _HOMES for n in importlib.import_module(f"ferlib.experiments.{h}").__all__}
)
