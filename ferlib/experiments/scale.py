"""What the size of the training set does: W-MNIST accuracy against its size, at equal SGD
steps and at equal epochs, for softmax and DDA (``results/wmnist-scale``).

Every set is 4:1 (``wmnist_scale_counts``) and drawn with ``WMNIST_SEED``, so the sets are
nested: from today's W-MNIST (600/150) up to the paper-scale set of Sec. 4.1 (5840/1460).
The files it writes are described in :mod:`ferlib.experiments.scale_report`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ferlib.data import WMNIST_SEED, StreamLoader, TensorLoader, load_mnist, wmnist_indices
from ferlib.data.mnist import WMNIST_MINORITY, wmnist_scale_counts
from ferlib.experiments.results import profile_record, resolve_profile, same_profile
from ferlib.experiments.scale_report import SCALE_ARMS, write_scale
from ferlib.experiments.wmnist import (
    PROFILES,
    StudyProfile,
    classifier_and_ncm,
    minority_mean,
    run_config,
)
from ferlib.losses import Scaling
from ferlib.models import LeNetsPP
from ferlib.paper import LAMBDA, PAPER_TABLE1
from ferlib.runner import run
from ferlib.runtime import machine_description

__all__ = [
    "SCALE_EPOCHS",
    "SCALE_EPOCH_SIZES",
    "SCALE_LOSSES",
    "SCALE_SIZES",
    "run_scale",
    "scale_key",
    "scale_plan",
]

#: The two losses of the scale experiment: name -> (λ, γ, DDA scaling). DDA γ = 7 with the
#: published scaling is the recipe that trains under the cpu schedule (results/stability).
SCALE_LOSSES: dict[str, tuple[float, float, Scaling]] = {
    "softmax": (0.0, 0.0, "paper"),
    "dda-7": (LAMBDA, 7.0, "published"),
}
#: Images per majority digit (a quarter of that for 2, 5, 8) in the equal-steps arm:
#: today's W-MNIST (600/150) up to the paper-scale set (5840/1460, WMNIST_PAPER_COUNTS).
#: Each of its runs costs what one cpu-profile run costs (740 steps of 128).
SCALE_SIZES: tuple[int, ...] = (600, 2400, 5840)
#: ... and in the equal-epochs arm, whose cost grows with the size: 185, 365 and 730 steps
#: under the cpu base, so that its largest run has about the equal-steps arm's budget.
SCALE_EPOCH_SIZES: tuple[int, ...] = (600, 1200, 2400)
#: Epochs of every equal-epochs run (the base schedule's decay steps scaled to it).
SCALE_EPOCHS: int = 5


def _scale_recipe(base: StudyProfile, arm: str, majority: int, epochs: int) -> dict[str, Any]:
    """Epochs, decay step, steps per epoch and total steps of one run of the scale grid."""
    counts = wmnist_scale_counts(majority)
    n_train = sum(counts.values())
    per_pass = -(-n_train // base.batch_size)
    if arm == "steps":  # the base profile's schedule and number of steps, on more data
        steps_per_epoch = -(-sum(n for _, n in base.counts) // base.batch_size)
        run_epochs, lr_step = base.train.epochs, base.train.lr_step
    elif arm == "epochs":  # `epochs` passes over the set, the base decay scaled to them
        steps_per_epoch, run_epochs = per_pass, epochs
        lr_step = max(1, round(base.train.lr_step * epochs / base.train.epochs))
    else:
        raise ValueError(f"run_scale: unknown arm {arm!r}; choose from {list(SCALE_ARMS)}")
    return {
        "majority": majority,
        "minority": majority // 4,
        "n_train": n_train,
        "epochs": run_epochs,
        "lr_step": lr_step,
        "steps_per_epoch": steps_per_epoch,
        "steps": run_epochs * steps_per_epoch,
        "passes": round(run_epochs * steps_per_epoch / per_pass, 2),
    }


def _recipe(base: StudyProfile, arm: str, loss: str, majority: int, epochs: int) -> dict:
    """:func:`_scale_recipe` with the loss: what a run of the grid is, in its record."""
    lam, gamma, scaling = SCALE_LOSSES[loss]
    recipe = _scale_recipe(base, arm, majority, epochs)
    return recipe | {"lam": lam, "gamma": gamma, "scaling": scaling, "lr": base.train.lr}


def scale_plan(
    sizes: tuple[int, ...] = SCALE_SIZES,
    epoch_sizes: tuple[int, ...] = SCALE_EPOCH_SIZES,
    losses: tuple[str, ...] = tuple(SCALE_LOSSES),
    seeds: tuple[int, ...] = (0,),
) -> list[tuple[str, str, int, int]]:
    """The runs of the scale experiment as ``(arm, loss, majority, seed)``, in the order
    they are trained: the equal-steps arm first; in each arm the smallest and the largest
    size first, so that an interrupted experiment already spans the range."""
    unknown = sorted(set(losses) - set(SCALE_LOSSES))
    if unknown:
        raise ValueError(f"run_scale: unknown losses {unknown}; choose from {list(SCALE_LOSSES)}")
    for m in (*sizes, *epoch_sizes):
        wmnist_scale_counts(m)  # a clear error for a size that is not 4:1 or too large
    return [
        (arm, loss, m, seed)
        for seed in seeds
        for arm, arm_sizes in (("steps", sizes), ("epochs", epoch_sizes))
        for m in _span_first(arm_sizes)
        for loss in losses
    ]


def _span_first(sizes: tuple[int, ...]) -> list[int]:
    """Sizes, smallest and largest first: (600, 1200, 2400, 5840) -> [600, 5840, 1200, 2400]."""
    ordered = sorted(set(sizes))
    return ordered[:1] + ordered[-1:] + ordered[1:-1] if len(ordered) > 1 else ordered


def scale_key(arm: str, loss: str, majority: int, seed: int) -> str:
    """The name of one run of the scale experiment, e.g. ``steps-dda-7-600-seed0``."""
    return f"{arm}-{loss}-{majority}-seed{seed}"


def _same_settings(table: dict[str, Any], settings: dict[str, Any]) -> bool:
    """Whether a scale table was made on the same base profile, losses and epochs."""
    settings = json.loads(json.dumps(settings))
    return (
        same_profile(table.get("base_profile") or {}, settings["base_profile"])
        and table.get("losses") == settings["losses"]
        and table.get("epochs_arm_epochs") == settings["epochs_arm_epochs"]
    )


def run_scale(
    out_dir: str | Path = "results/wmnist-scale",
    *,
    base: str | StudyProfile = "cpu",
    sizes: tuple[int, ...] = SCALE_SIZES,
    epoch_sizes: tuple[int, ...] = SCALE_EPOCH_SIZES,
    epochs: int = SCALE_EPOCHS,
    losses: tuple[str, ...] = tuple(SCALE_LOSSES),
    seeds: tuple[int, ...] = (0,),
    reuse: tuple[str | Path, ...] = (),
    root: str | Path | None = None,
    checkpoints: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Test accuracy against the size of a 4:1 W-MNIST, at equal SGD steps and at equal
    epochs, for softmax (Eq. 2) and DDA γ = 7 (Eq. 6, published scaling).

    Every run uses the ``base`` profile's recipe (learning rate, decay factor, batch,
    clipping, divergence bound, test set); the sets are ``wmnist_scale_counts(m)`` for
    ``m`` in ``sizes`` (equal-steps arm: the base profile's epochs of
    ``ceil(base images / batch)`` steps, through a :class:`~ferlib.data.StreamLoader`) and
    in ``epoch_sizes`` (equal-epochs arm: ``epochs`` passes, decay step scaled), all drawn
    with ``WMNIST_SEED`` (nested sets). The equal-steps run at ``m = 600`` under the
    ``cpu`` base is the committed study's run, batch for batch: ``reuse`` takes such runs
    from studies' ``table1.json`` (same profile as ``base``; the DDA scaling of
    :data:`SCALE_LOSSES`) instead of training them again, each seed of each file.
    Only the final test is run (testing never changes training).

    Writes ``scale.json``, ``scale.csv``, ``scale.txt`` and ``scale.png`` to ``out_dir``
    after every run; runs already in ``scale.json`` with the same recipe are not trained
    again (and per-epoch checkpoints resume an interrupted run). Returns the table.
    """
    prof = resolve_profile(PROFILES, base, "base profile")
    if epochs < 1:
        raise ValueError(f"run_scale: epochs must be >= 1, got {epochs}")
    plan = scale_plan(sizes, epoch_sizes, losses, seeds)
    out = Path(out_dir)
    ckpt_dir = Path(checkpoints) if checkpoints is not None else out / "checkpoints"
    x_all, y_all = load_mnist(root, train=True)
    x_test, y_test = load_mnist(root, train=False)
    if prof.test_subset is not None:
        x_test, y_test = x_test[: prof.test_subset], y_test[: prof.test_subset]
    test_loader = TensorLoader(x_test, y_test, 1000)
    settings = {
        "base_profile": profile_record(prof),
        "losses": {name: SCALE_LOSSES[name] for name in losses},
        "epochs_arm_epochs": epochs,
    }
    previous: dict[str, Any] = {}
    rows: dict[str, Any] = {}
    reused = _reused_rows(reuse, prof, settings, losses, epochs)
    if (out / "scale.json").exists():
        old_table = json.loads((out / "scale.json").read_text())
        previous = old_table.get("runs", {})
        if _same_settings(old_table, settings):
            # runs of another call on the same base (other seeds, sizes): kept in the table
            planned = {scale_key(*run) for run in plan}
            rows = {k: v for k, v in previous.items() if k not in planned}
    spent = 0.0
    for arm, loss, majority, seed in tqdm(plan, desc="scale", disable=not progress):
        key = scale_key(arm, loss, majority, seed)
        recipe = _recipe(prof, arm, loss, majority, epochs)
        old = previous.get(key)
        if key in reused or (old is not None and old.get("recipe") == recipe):
            rows[key] = reused.get(key, old)
            continue
        idx = wmnist_indices(y_all, wmnist_scale_counts(majority), WMNIST_SEED)
        x_train, y_train = x_all[idx], y_all[idx]
        if arm == "steps":
            loader = StreamLoader(
                x_train, y_train, prof.batch_size, recipe["steps_per_epoch"], seed
            )
        else:
            loader = TensorLoader(x_train, y_train, prof.batch_size, shuffle=True, seed=seed)
        train_eval = TensorLoader(x_train, y_train, 1000)

        def score(model, fit, train_eval=train_eval):
            scores, _ = classifier_and_ncm(model, fit, test_loader, train_eval)
            minority = list(WMNIST_MINORITY)
            scores["minority_acc"] = minority_mean(scores["test_per_class_acc"], minority)
            scores["ncm_minority_acc"] = minority_mean(scores["ncm_per_class_acc"], minority)
            return scores

        lam, gamma, scaling = SCALE_LOSSES[loss]
        config = replace(
            run_config(prof, lam, gamma, scaling, seed),
            epochs=recipe["epochs"],
            lr_step=recipe["lr_step"],
            eval_every=recipe["epochs"],
        )
        rows[key] = run(
            LeNetsPP,
            loader,
            test_loader,
            config,
            checkpoint=ckpt_dir / f"{key}.pt",
            record={"arm": arm, "loss": loss, "seed": seed, "recipe": recipe},
            score=score,
            desc=f"{arm} {loss} {majority}/{majority // 4}",
            progress=progress,
        )
        spent += rows[key]["seconds"]
        write_scale(_scale_table(settings, rows, spent, losses), out)
    rows |= {k: v for k, v in reused.items() if k not in rows}
    if not rows:
        raise ValueError("run_scale: nothing to run (empty sizes and epoch_sizes)")
    write_scale(_scale_table(settings, rows, spent, losses), out)
    return json.loads((out / "scale.json").read_text())


def _scale_table(
    settings: dict[str, Any], rows: dict[str, Any], spent: float, losses: tuple[str, ...]
) -> dict[str, Any]:
    """The scale experiment's table: settings, seeds, machine, the paper's numbers, runs."""
    return {
        **settings,
        "seeds": sorted({r["seed"] for r in rows.values()}),
        "wmnist_seed": WMNIST_SEED,
        "minority_digits": list(WMNIST_MINORITY),
        "wall_seconds_this_call": round(spent, 1),
        "train_seconds_all_runs": round(sum(r["seconds"] for r in rows.values()), 1),
        "machine": machine_description(),
        "paper_table1": {name: PAPER_TABLE1[name] for name in losses},
        "runs": rows,
    }


def _reused_rows(
    paths: tuple[str | Path, ...],
    prof: StudyProfile,
    settings: dict[str, Any],
    losses: tuple[str, ...],
    epochs: int,
) -> dict[str, Any]:
    """Equal-steps rows at the base size taken from studies' table1.json (see run_scale)."""
    rows: dict[str, Any] = {}
    if not paths:
        return rows
    majority = max(n for _, n in prof.counts)
    if majority % 4 or dict(prof.counts) != wmnist_scale_counts(majority):
        raise ValueError(
            f"run_scale: reuse needs a 4:1 base W-MNIST, {prof.name!r} has {dict(prof.counts)}"
        )
    minority = list(WMNIST_MINORITY)
    for path in paths:
        study_table = json.loads(Path(path).read_text())
        if not same_profile(study_table["profile"], settings["base_profile"]):
            raise ValueError(f"run_scale: {path} was not run with the base profile {prof.name!r}")
        seed = study_table["seed"]
        for loss in losses:
            gamma, scaling = SCALE_LOSSES[loss][1:]
            r = study_table["runs"].get(loss)
            if r is None or (gamma > 0 and study_table["scaling"] != scaling):
                continue
            recipe = _recipe(prof, "steps", loss, majority, epochs)
            row: dict[str, Any] = {"arm": "steps", "loss": loss, "seed": seed, "recipe": recipe}
            if r["status"] == "ok":
                row |= {
                    "status": "ok",
                    "test_acc": r["test_acc"],
                    "minority_acc": minority_mean(r["test_per_class_acc"], minority),
                    "test_per_class_acc": r["test_per_class_acc"],
                    "ncm_acc": r["ncm_acc"],
                    "ncm_minority_acc": minority_mean(r["ncm_per_class_acc"], minority),
                    "ncm_per_class_acc": r["ncm_per_class_acc"],
                    "final_train_acc": round(r["history"][-1]["train_acc"], 2),
                    "history": r["history"],
                }
            else:
                row |= {"status": "diverged", "error": r["error"], "history": []}
            row |= {"seconds": r.get("seconds") or 0.0, "source": str(path)}
            rows[scale_key("steps", loss, majority, seed)] = row
    return rows
