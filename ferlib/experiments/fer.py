"""Facial-expression experiments (paper Sec. 4.2): ResNet-18 with softmax, center or DDA loss.

One run trains :class:`ferlib.models.ResNet18` on RAF-DB, AffectNet, FER2013 or the synthetic
stand-in (loaders: :mod:`ferlib.experiments.fer_data`) through :func:`ferlib.runner.run` and
writes its result to ``out_dir``: ``<run>.json`` (accuracy, average per-class accuracy = the
mean of the confusion matrix's diagonal as the paper reports it, per-class accuracy, the
confusion matrix, the history, the machine), ``<run>-test.npz`` (the test set's 512-D
features as float16, predictions and labels: for t-SNE and for picking example faces
without the model) and, over every run in the folder, ``table.csv`` and ``table.txt``.
Results made on the stand-in say "synthetic stand-in" in every row and title.

A :class:`FERProfile` is the data settings plus the recipe of its DDA run
(``FERProfile.train``); the softmax and center runs drop the terms they do not have.
Profiles (:data:`PROFILES`):

* ``rafdb-paper``: ImageNet init, 60 epochs, batch 64, lr 0.01 ÷10 every 20, λ = 0.01,
  α = 0.5, γ = 5 (the paper's RAF-DB recipe, Sec. 4.2.1), crops of 90 from 100;
* ``affectnet-paper``: from scratch, 20 epochs, batch 128, lr 0.01 ÷10 every 5, γ = 4,
  crops of 224 from 256;
* ``cpu``: the stand-in at half RAF-DB's size, 48-pixel faces cropped to 43, 15 epochs,
  for 2 CPU cores;
* ``quick``: a tiny stand-in and two epochs, for tests (numbers mean nothing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ferlib.data.device import DeviceLoader
from ferlib.experiments.fer_data import (
    CROPS,
    DATASETS,
    find_rafdb,
    load_data,
    load_test_outputs,
    save_test_outputs,
)
from ferlib.experiments.results import (
    pct,
    pcts,
    profile_record,
    resolve_profile,
    write_csv,
    write_json,
)
from ferlib.losses import Scaling
from ferlib.metrics import (
    accuracy,
    confusion_matrix,
    mean_class_accuracy,
    nearest_mean_rules,
    per_class_accuracy,
)
from ferlib.models import ResNet18
from ferlib.paper import DACL_RAFDB, GAMMA_AFFECTNET, GAMMA_RAFDB, LAMBDA, PAPER_TABLE2
from ferlib.runner import run
from ferlib.runtime import is_main, pick_device, rank, world_size
from ferlib.training import TrainConfig, predict

__all__ = [
    "CROPS",
    "DACL_RAFDB",
    "DATASETS",
    "LOSSES",
    "PAPER_TABLE2",
    "PROFILES",
    "STANDIN_BANNER",
    "STANDIN_LABEL",
    "FERProfile",
    "find_rafdb",
    "format_table",
    "load_data",
    "load_test_outputs",
    "run_fer",
    "run_name",
    "save_test_outputs",
    "train_config",
    "write_table",
]

LOSSES: dict[str, tuple[bool, bool]] = {  # name -> (center term, DDA term)
    "softmax": (False, False),
    "center": (True, False),
    "dda": (True, True),
}
STANDIN_LABEL = "synthetic stand-in"

#: What a notebook shows above every result made without the real dataset.
STANDIN_BANNER = (
    '<div style="border:3px solid #c00;background:#fee;padding:8px;font-weight:bold">'
    "SYNTHETIC STAND-IN: RAF-DB was not found, so every number and figure below comes from "
    "procedurally drawn faces in RAF-DB's layout and class imbalance. They test the "
    "pipeline; they are NOT RAF-DB results and must not be compared with the paper.</div>"
)


@dataclass(frozen=True)
class FERProfile:
    """How long, on how much data and with which recipe a FER run trains.

    ``train`` is the recipe of the DDA run (λ, γ, α included); :func:`train_config` drops
    the DDA term for the center loss and both terms for the softmax loss.
    """

    name: str
    train: TrainConfig
    batch_size: int
    pretrained: bool = False  # ImageNet initialisation of the backbone
    standin_scale: float = 1.0  # size of the stand-in, as a fraction of RAF-DB's counts
    standin_size: int = 100  # side of the stand-in's images
    crop: int | None = None  # training / test crop; None: the dataset's own (see CROPS)

    def with_train(self, **changes: Any) -> FERProfile:
        """This profile with its recipe changed, e.g. ``profile.with_train(epochs=1)``."""
        return replace(self, train=replace(self.train, **changes))


#: The paper's FER recipe (Sec. 4.2.1): lr 0.01 divided by 10 at each step, λ and α of
#: Sec. 4.2.2; each profile sets its epochs, decay step and γ.
_FER = TrainConfig(lr=0.01, lr_decay=0.1, lam=LAMBDA)

PROFILES: dict[str, FERProfile] = {
    "rafdb-paper": FERProfile(
        "rafdb-paper",
        replace(_FER, epochs=60, lr_step=20, gamma=GAMMA_RAFDB),
        batch_size=64,
        pretrained=True,
    ),
    "affectnet-paper": FERProfile(
        "affectnet-paper",
        replace(_FER, epochs=20, lr_step=5, gamma=GAMMA_AFFECTNET),
        batch_size=128,
    ),
    "cpu": FERProfile(  # 4 runs (softmax, center, DDA in both scalings): ~35 min, 2 cores
        "cpu",
        replace(
            _FER,
            epochs=15,
            lr_step=10,
            gamma=GAMMA_RAFDB,
            grad_clip=10.0,
            max_loss=1000.0,
        ),
        batch_size=64,
        standin_scale=0.5,
        standin_size=48,
        crop=43,
    ),
    "quick": FERProfile(
        "quick",
        replace(_FER, epochs=2, lr_step=2, gamma=GAMMA_RAFDB, grad_clip=10.0),
        batch_size=32,
        standin_scale=0.02,
        standin_size=32,
        crop=28,
    ),
}


def run_name(loss: str, scaling: Scaling, gamma: float) -> str:
    """``softmax``, ``center``, or ``dda-<γ>-<scaling>``."""
    return f"dda-{gamma:g}-{scaling}" if loss == "dda" else loss


def train_config(
    profile: FERProfile,
    loss: str,
    scaling: Scaling,
    seed: int,
    gamma: float | None = None,
    device: torch.device | None = None,
) -> TrainConfig:
    """The recipe of one run on ``device``: the profile's, without the terms ``loss`` does
    not have (Eq. 2: λ = γ = 0; Eq. 4: γ = 0), with ``gamma`` (default: the profile's),
    the scaling and the seed.

    The channels-last memory layout is used on CUDA only: on the CPU it was no faster for
    ResNet-18 than the default layout (0.88x at 43-pixel crops, 0.98x at 90, measured side
    by side by ``benchmarks/bench_fer.py``; ``results/benchmarks/bench_fer_cpu*.txt``).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    center, dda = LOSSES[loss]
    recipe = profile.train
    return replace(
        recipe,
        lam=recipe.lam if center else 0.0,
        gamma=(recipe.gamma if gamma is None else gamma) if dda else 0.0,
        scaling=scaling,
        seed=seed,
        channels_last=device is not None and device.type == "cuda",
    )


def run_fer(
    dataset: str = "standin",
    loss: str = "dda",
    profile: str | FERProfile = "cpu",
    *,
    scaling: Scaling = "paper",
    gamma: float | None = None,
    seed: int = 0,
    root: str | Path | None = None,
    out_dir: str | Path | None = None,
    checkpoints: str | Path | None = None,
    progress: bool = True,
    data: tuple[Any, Any, list[str]] | None = None,
    sync_bn: bool = False,
) -> dict[str, Any]:
    """Train one run of Table 2 (or 3) and write its result; returns the result (see the
    module docstring). Under torchrun every rank returns it and rank 0 writes it.

    ``data`` passes loaders from :func:`load_data` so that several runs share one decode.
    A run that diverges is recorded as diverged, without accuracies.
    """
    prof = resolve_profile(PROFILES, profile)
    out = Path(out_dir) if out_dir is not None else Path("results") / dataset
    device = pick_device()  # under torchrun: this process's GPU
    config = replace(train_config(prof, loss, scaling, seed, gamma, device), sync_bn=sync_bn)
    name = run_name(loss, scaling, config.gamma)
    train_loader, test_loader, classes = data or load_data(
        dataset,
        prof,
        device,
        root,
        seed=seed,
        rank=rank(),
        world_size=world_size(),
        progress=progress and is_main(),
    )
    ckpt_dir = Path(checkpoints) if checkpoints is not None else out / "checkpoints"
    label = f"{dataset} ({STANDIN_LABEL})" if dataset == "standin" else dataset
    stem = f"{prof.name}-{name}-seed{seed}"
    k = len(classes)
    outputs: list[torch.Tensor] = []

    extra: dict[str, torch.Tensor] = {}

    def score(model, _fit):
        outputs[:] = predict(model, test_loader)
        feats, preds, labels = outputs
        scores = {
            "accuracy": pct(accuracy(preds, labels)),
            "mean_class_accuracy": pct(mean_class_accuracy(preds, labels, k)),
            "per_class_accuracy": pcts(per_class_accuracy(preds, labels, k).tolist()),
            "confusion_matrix": confusion_matrix(preds, labels, k).tolist(),
        }
        extra.clear()
        extra.update(nearest_mean_outputs(model, train_loader, feats, k))
        for rule, got in extra.items():
            if rule != "class_means":
                scores[f"{rule}_accuracy"] = pct(accuracy(got, labels))
                scores[f"{rule}_per_class_accuracy"] = pcts(
                    per_class_accuracy(got, labels, k).tolist()
                )
        return scores

    def write(result):
        if result["status"] == "ok":
            save_test_outputs(out / f"{stem}-test.npz", *outputs, extra=extra)
        write_json(out / f"{stem}.json", result)
        write_table(out)

    return run(
        lambda: ResNet18(k, weights="imagenet" if prof.pretrained else None),
        train_loader,
        test_loader,
        config,
        checkpoint=ckpt_dir / f"{stem}.pt",
        record={
            "run": name,
            "dataset": label,
            "loss": loss,
            "lam": config.lam,
            "gamma": config.gamma,
            "scaling": scaling,
            "seed": seed,
            "profile": profile_record(prof),
            "classes": classes,
        },
        score=score,
        write=write,
        desc=f"{label} {name}",
        progress=progress,
    )


def nearest_mean_outputs(
    model: torch.nn.Module, train_loader: Any, test_features: torch.Tensor, num_classes: int
) -> dict[str, torch.Tensor]:
    """The two nearest-class-mean rules of notebook 04 on a FER run's 512-D features.

    The class means are those of the training set's features, each image seen once as at
    test time (centre crop, no flip). Returns ``ncm`` (Euclidean) and ``cosine_ncm``
    predictions (N,) for ``test_features`` (N, D) and the ``class_means`` (K, D); an empty
    dict where the training set is not an in-memory :class:`DeviceLoader` on one process
    (AffectNet streams from disk; under torchrun each rank holds a shard only).
    """
    if not isinstance(train_loader, DeviceLoader) or world_size() > 1:
        return {}
    train_eval = DeviceLoader(
        train_loader.images,
        train_loader.labels,
        256,
        train=False,
        crop=train_loader.crop,
        mean=train_loader.mean,
        std=train_loader.std,
        device=train_loader.device,
        fingerprint=train_loader.fingerprint,
    )
    train_feats, _, train_labels = predict(model, train_eval)
    return nearest_mean_rules(test_features, train_feats, train_labels, num_classes)


def write_table(out: str | Path) -> list[dict[str, Any]]:
    """``table.csv`` and ``table.txt`` over every run result in ``out``; returns the rows."""
    out = Path(out)
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*-seed*.json"))]
    rows = []
    for r in runs:
        ok = r["status"] == "ok"
        rows.append(
            {
                "dataset": r["dataset"],
                "profile": r["profile"]["name"],
                "run": r["run"],
                "seed": r["seed"],
                "status": r["status"],
                "accuracy": r["accuracy"] if ok else "",
                "mean_class_accuracy": r["mean_class_accuracy"] if ok else "",
                **{
                    f"acc_{c}": (r["per_class_accuracy"][i] if ok else "")
                    for i, c in enumerate(r["classes"])
                },
            }
        )
    if rows:
        write_csv(out / "table.csv", list(rows[0]), [list(r.values()) for r in rows])
        (out / "table.txt").write_text(format_table(runs) + "\n")
    return rows


def format_table(runs: list[dict[str, Any]]) -> str:
    """Accuracy and average per-class accuracy per run, with per-class accuracy."""
    if not runs:
        return ""
    classes = runs[0]["classes"]
    title = f"{runs[0]['dataset']}: test accuracy (%)"
    head = f"{'run':<22} {'seed':>4} {'acc':>7} {'avg':>7}" + "".join(
        f" {c[:8]:>8}" for c in classes
    )
    lines = [title, head, "-" * len(head)]
    for r in runs:
        row = f"{r['run']:<22} {r['seed']:>4}"
        if r["status"] != "ok":
            lines.append(f"{row} {'diverged':>15}")
            continue
        row += f" {r['accuracy']:>7.2f} {r['mean_class_accuracy']:>7.2f}"
        lines.append(row + "".join(f" {a:>8.1f}" for a in r["per_class_accuracy"]))
    return "\n".join(lines)
