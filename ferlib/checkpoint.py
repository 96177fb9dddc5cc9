"""Checkpoint files of the training loop: written atomically, read back with
``weights_only=True``, and the test a resumed run must pass (the same configuration).

A checkpoint records the run's :class:`~ferlib.training.TrainConfig` as plain data
(:func:`comparable`). Checkpoints written by older versions still resume: a setting they
lack had its default, and a setting ``TrainConfig`` no longer has (:data:`RETIRED`) must
hold the value it always held; anything else is "a different configuration".
"""

from __future__ import annotations

import os
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ferlib.training import TrainConfig

__all__ = [
    "RETIRED",
    "comparable",
    "config_differences",
    "load_checkpoint",
    "same_config",
    "save_atomic",
]


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` so that an interrupted save leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic on POSIX and Windows: old file or new, never half
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: tensors and plain data only, never
    arbitrary pickled code."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"checkpoint {path} cannot be read as a ferlib checkpoint (tensors and plain data, "
            f"loaded with weights_only=True): {type(err).__name__}: {str(err)[:300]}. "
            "Delete it or pass another checkpoint path; never load a checkpoint you do not "
            "trust with weights_only=False."
        ) from err


def comparable(config: TrainConfig) -> dict[str, Any]:
    """The settings a resumed run must share with its checkpoint: all but ``epochs`` (a run
    may be extended), ``max_loss`` and ``sync_every`` (guards that never change a finished
    epoch) and ``eval_every`` (testing never changes training)."""
    saved = asdict(config)
    del saved["epochs"], saved["max_loss"], saved["eval_every"], saved["sync_every"]
    return saved


#: Settings that ``TrainConfig`` once had, with the value that every checkpoint of that time
#: saved (they were never used): such a checkpoint resumes; any other value is refused.
RETIRED: dict[str, Any] = {"extra": {}}


def config_differences(
    saved: dict[str, Any], now: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """The settings in which a checkpoint's configuration and this run's differ, as
    ``{name: (saved, now)}`` (each a :func:`comparable`); a setting missing from an older
    checkpoint had its value in ``defaults`` (``comparable(TrainConfig())``), a retired one
    (:data:`RETIRED`) must hold the value it always had, and the DDA scaling is irrelevant
    when there is no DDA term (gamma = 0)."""
    keys = set(saved | now) - ({"scaling"} if now.get("gamma") == 0 else set())
    differ = {}
    for k in sorted(keys):
        if k in RETIRED and k not in now:
            if saved[k] != RETIRED[k]:
                differ[k] = (saved[k], RETIRED[k])
        elif (was := saved.get(k, defaults.get(k))) != (is_ := now.get(k, defaults.get(k))):
            differ[k] = (was, is_)
    return differ


def same_config(saved: dict[str, Any], now: dict[str, Any], defaults: dict[str, Any]) -> bool:
    """True when :func:`config_differences` finds none."""
    return not config_differences(saved, now, defaults)
