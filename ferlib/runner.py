"""One run of an experiment, from seed to record: the shape every experiment shares.

    seed -> build the model -> train (checkpointed, resumable) -> score -> record -> write

:func:`run` is what ``run_study``, ``run_stability``, ``run_scale`` and ``run_fer``
(``ferlib.experiments``) call for each of their runs. They keep only what is theirs: the
grid of runs, how a trained model is scored, the table and the figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ferlib.runtime import is_main, machine_description, pick_device, world_size
from ferlib.training import (
    BatchLoader,
    NonFiniteLossError,
    TrainConfig,
    TrainResult,
    seed_everything,
    train,
)

__all__ = ["Scorer", "run"]

#: Scores a trained model: ``score(model, result) -> {metric: value}`` (JSON-ready values).
Scorer = Callable[[nn.Module, TrainResult], Mapping[str, Any]]


def run(
    build: Callable[[], nn.Module],
    train_loader: BatchLoader,
    test_loader: BatchLoader | None,
    config: TrainConfig,
    *,
    checkpoint: str | Path | None,
    record: Mapping[str, Any] | None = None,
    score: Scorer | None = None,
    write: Callable[[dict[str, Any]], None] | None = None,
    desc: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one model with Algorithm 1 of the paper (:func:`ferlib.training.train`) and
    return its finished record.

    Args:
        build: makes the model; called right after ``seed_everything(config.seed)``, so that
            the initial weights depend on the seed alone.
        train_loader, test_loader: as for :func:`ferlib.training.train`.
        config: the run's recipe (usually ``dataclasses.replace(profile.train, ...)``).
        checkpoint: written after every epoch; an existing one is resumed (or refused, when
            it holds another configuration or other data).
        record: what the caller knows of the run beforehand (its name, λ, γ, ...); copied.
        score: scores the trained model; its metrics join the record of a finished run.
        write: called with the finished record on rank 0 only (one writer under torchrun).
        desc, progress: the progress bar's label, and whether to show it.

    Returns:
        ``record`` plus ``status``: ``"ok"`` with the metrics of ``score`` and the
        ``history``, or ``"diverged"`` with the ``epoch`` and ``step`` where the loss became
        NaN or infinite, the ``error`` message and the ``history`` of the completed epochs;
        then ``seconds`` (training and scoring; for a resumed run, including the training
        time of the epochs read back), ``world_size`` and ``machine``. Every rank
        returns the same record.
    """
    out = dict(record or {})
    seed_everything(config.seed)
    model = build()
    tic = time.perf_counter()
    try:
        fit = train(
            model,
            train_loader,
            test_loader,
            config,
            checkpoint=checkpoint,
            progress=progress,
            desc=desc,
        )
    except NonFiniteLossError as err:
        out |= {"status": "diverged", "epoch": err.epoch, "step": err.step, "error": str(err)}
        out["history"] = err.history
    else:
        out["status"] = "ok"
        out |= dict(score(model, fit)) if score is not None else {}
        out["history"] = fit.history
        # a resumed run also counts the training time of the epochs it read back, so that
        # rerunning a finished run does not replace its time with that of reading it back
        tic -= sum(h.get("seconds", 0.0) for h in fit.history[: fit.resumed_epochs])
    out["seconds"] = round(time.perf_counter() - tic, 1)
    out["world_size"] = world_size()
    out["machine"] = machine_description(pick_device(config.device))
    if write is not None and is_main():
        write(out)
    return out
