"""Facial-expression experiments (paper Sec. 4.2): ResNet-18 with softmax, center or DDA loss.

One run trains :class:`ferlib.models.ResNet18` on RAF-DB, AffectNet, FER2013 or the synthetic
stand-in through :func:`ferlib.training.train` (the course's one loop) and writes its result
to ``out_dir``: ``<run>.json`` (accuracy, average per-class accuracy = the mean of the
confusion matrix's diagonal as the paper reports it, per-class accuracy, the confusion
matrix, the history, the machine), ``<run>-test.npz`` (the test set's 512-D features as
float16, predictions and labels: for t-SNE and for picking example faces without the model)
and, over every run in the folder, ``table.csv`` and ``table.txt``. Results made on the
stand-in say "synthetic stand-in" in every row and title.

Profiles (:data:`PROFILES`):

* ``rafdb-paper``: ImageNet init, 60 epochs, batch 64, lr 0.01 ÷10 every 20, λ = 0.01,
  α = 0.5, γ = 5 (the paper's RAF-DB recipe), crops of 90 from 100;
* ``affectnet-paper``: from scratch, 20 epochs, batch 128, lr 0.01 ÷10 every 5, γ = 4,
  crops of 224 from 256;
* ``cpu``: the stand-in at half RAF-DB's size, 48-pixel faces cropped to 43, 15 epochs,
  for 2 CPU cores;
* ``quick``: a tiny stand-in and two epochs, for tests (numbers mean nothing).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from ferlib.data import (
    FER2013,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RAFDB,
    RAFDB_MEAN,
    RAFDB_STD,
    AffectNet,
    default_data_root,
)
from ferlib.data.cache import decode_dataset
from ferlib.data.device import DeviceLoader, stream_loader
from ferlib.data.synthetic import make_standin
from ferlib.losses import Scaling
from ferlib.metrics import accuracy, confusion_matrix, mean_class_accuracy, per_class_accuracy
from ferlib.models import ResNet18
from ferlib.runtime import is_distributed, is_main, machine_description, rank, world_size
from ferlib.training import (
    NonFiniteLossError,
    TrainConfig,
    pick_device,
    predict,
    seed_everything,
    train,
)

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
    "load_data",
    "load_test_outputs",
    "run_fer",
    "run_name",
    "save_test_outputs",
    "train_config",
    "write_table",
]

DATASETS: tuple[str, ...] = ("rafdb", "affectnet", "fer2013", "standin")
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

#: The paper's Table 2 on RAF-DB (ResNet-18): (accuracy %, average per-class accuracy %).
PAPER_TABLE2: dict[str, tuple[float, float]] = {
    "softmax": (85.56, 77.28),
    "center": (86.25, 77.81),
    "dda": (86.99, 79.71),
}
#: The authors' follow-up (Farzaneh & Qi, "Facial Expression Recognition in the Wild via
#: Deep Attentive Center Loss", WACV 2021), RAF-DB accuracy (%) with a ResNet-18 initialised
#: from face recognition: their softmax and center-loss baselines, and DACL.
DACL_RAFDB: dict[str, float] = {"softmax": 86.54, "center": 87.06, "dacl": 87.78}


@dataclass(frozen=True)
class FERProfile:
    """How long, on how much data and with which recipe a FER run trains."""

    name: str
    epochs: int
    batch_size: int
    lr: float
    lr_step: int
    lr_decay: float = 0.1
    pretrained: bool = False  # ImageNet initialisation of the backbone
    lam: float = 0.01
    gamma: float = 5.0
    alpha: float = 0.5
    grad_clip: float | None = None
    max_loss: float | None = None
    eval_every: int = 1
    standin_scale: float = 1.0  # size of the stand-in, as a fraction of RAF-DB's counts
    standin_size: int = 100  # side of the stand-in's images
    crop: int | None = None  # training / test crop; None: the dataset's own (see CROPS)


PROFILES: dict[str, FERProfile] = {
    "rafdb-paper": FERProfile(
        "rafdb-paper", epochs=60, batch_size=64, lr=0.01, lr_step=20, pretrained=True, gamma=5.0
    ),
    "affectnet-paper": FERProfile(
        "affectnet-paper", epochs=20, batch_size=128, lr=0.01, lr_step=5, gamma=4.0
    ),
    "cpu": FERProfile(  # 4 runs (softmax, center, DDA in both scalings): ~30 min, 2 cores
        "cpu",
        epochs=15,
        batch_size=64,
        lr=0.02,
        lr_step=10,
        gamma=5.0,
        grad_clip=10.0,
        max_loss=1000.0,
        eval_every=5,
        standin_scale=0.5,
        standin_size=48,
        crop=43,
    ),
    "quick": FERProfile(
        "quick",
        epochs=2,
        batch_size=32,
        lr=0.01,
        lr_step=2,
        gamma=5.0,
        grad_clip=10.0,
        standin_scale=0.02,
        standin_size=32,
        crop=28,
    ),
}

#: The paper's crops: (image side, crop side).
CROPS: dict[str, tuple[int, int]] = {
    "rafdb": (100, 90),
    "standin": (100, 90),
    "affectnet": (256, 224),
    "fer2013": (48, 44),
}


def run_name(loss: str, scaling: Scaling, gamma: float) -> str:
    """``softmax``, ``center``, or ``dda-<γ>-<scaling>``."""
    return f"dda-{gamma:g}-{scaling}" if loss == "dda" else loss


def load_data(
    dataset: str,
    profile: FERProfile,
    device: torch.device,
    root: str | Path | None = None,
    *,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
) -> tuple[Any, Any, list[str]]:
    """Training and test loaders on ``device`` and the class names of ``dataset``.

    RAF-DB, FER2013 and the stand-in are decoded once into a uint8 tensor cached under
    ``<data root>/cache`` and augmented on the device; AffectNet streams from disk through
    a DataLoader with workers. Under DistributedDataParallel each rank reads its own shard.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    data_root = Path(root) if root is not None else None
    size, crop = CROPS[dataset]
    if profile.crop is not None:
        crop = profile.crop
    mean, std = (
        (RAFDB_MEAN, RAFDB_STD)
        if dataset in ("rafdb", "standin")
        else (
            IMAGENET_MEAN,
            IMAGENET_STD,
        )
    )
    shard = {"rank": rank, "world_size": world_size, "device": device}
    if dataset == "affectnet":
        train_set, test_set = AffectNet(data_root, "train"), AffectNet(data_root, "val")
        common = {"crop": crop, "resize": size, "device": device, "seed": seed}
        return (
            stream_loader(
                train_set,
                profile.batch_size,
                train=True,
                rank=rank,
                world_size=world_size,
                **common,
            ),
            stream_loader(test_set, 256, train=False, rank=rank, world_size=world_size, **common),
            list(train_set.classes),
        )

    def prepare() -> list[tuple[Any, Tensor, Tensor]]:
        if dataset == "standin":
            folder = data_root or default_data_root() / "standin"
            folder = folder / f"scale{profile.standin_scale:g}-size{profile.standin_size}"
            make_standin(
                folder, scale=profile.standin_scale, size=profile.standin_size, progress=progress
            )
            sets, cache = (RAFDB(folder, "train"), RAFDB(folder, "test")), folder / "cache"
        elif dataset == "rafdb":
            sets = RAFDB(data_root, "train"), RAFDB(data_root, "test")
            cache = (data_root or default_data_root()) / "cache"
        else:
            sets, cache = (FER2013(data_root, "train"), FER2013(data_root, "test")), None
        return [(ds, *decode_dataset(ds, cache_dir=cache, progress=progress)) for ds in sets]

    # under torchrun, rank 0 draws the stand-in and writes the cache; the others then read it
    decoded = _rank_zero_first(prepare, rank, world_size)
    loaders = []
    for (ds, images, labels), is_train in zip(decoded, (True, False), strict=True):
        loaders.append(
            DeviceLoader(
                images,
                labels,
                profile.batch_size if is_train else 256,
                train=is_train,
                crop=crop,
                mean=mean,
                std=std,
                seed=seed,
                fingerprint=ds.fingerprint,
                **shard,
            )
        )
    return loaders[0], loaders[1], list(decoded[0][0].classes)


def find_rafdb(root: str | Path | None = None) -> Path | None:
    """The RAF-DB root under ``root`` (default: the data root, ``$FERLIB_DATA`` or ``data/``),
    or None when there is none.

    Looks for the official ``basic/`` release (or the re-upload with ``DATASET/``) in
    ``<root>/RAF-DB``, ``<root>/rafdb`` and ``<root>`` itself; a folder that holds a
    synthetic stand-in (its ``standin.json``) is never taken for the real dataset.
    """
    base = Path(root) if root is not None else default_data_root()
    for folder in (base / "RAF-DB", base / "rafdb", base):
        if (folder / "standin.json").exists() or (folder / "basic" / "standin.json").exists():
            continue
        if (folder / "basic").is_dir() or (folder / "DATASET").is_dir():
            return folder
    return None


def save_test_outputs(
    path: str | Path, features: Tensor, predictions: Tensor, labels: Tensor
) -> Path:
    """Write a run's test outputs to ``path`` (.npz): features (N, D) as float16,
    predictions (N,) and labels (N,) as uint8. About 1 KB per test image at D = 512."""
    n = len(labels)
    if features.ndim != 2 or len(features) != n or predictions.shape != (n,):
        raise ValueError(
            "save_test_outputs: expected features (N, D), predictions (N,) and labels (N,), "
            f"got {tuple(features.shape)}, {tuple(predictions.shape)}, {tuple(labels.shape)}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        features=features.cpu().numpy().astype(np.float16),
        predictions=predictions.cpu().numpy().astype(np.uint8),
        labels=labels.cpu().numpy().astype(np.uint8),
    )
    return path


def load_test_outputs(path: str | Path) -> tuple[Tensor, Tensor, Tensor]:
    """``(features (N, D) float32, predictions (N,), labels (N,))`` saved by a run."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"load_test_outputs: {path} does not exist; a run of run_fer writes "
            "<out>/<profile>-<run>-seed<s>-test.npz beside its JSON"
        )
    with np.load(path) as z:
        return (
            torch.from_numpy(z["features"].astype(np.float32)),
            torch.from_numpy(z["predictions"].astype(np.int64)),
            torch.from_numpy(z["labels"].astype(np.int64)),
        )


def _rank_zero_first(fn: Callable[[], Any], rank: int, world_size: int) -> Any:
    """Run ``fn`` on rank 0 first and on the other ranks after it (files it writes, such as
    a stand-in or a cache, are then complete before anyone else reads them)."""
    if world_size == 1 or not is_distributed():
        return fn()
    if rank != 0:
        dist.barrier()
    result = fn()
    if rank == 0:
        dist.barrier()
    return result


def train_config(
    profile: FERProfile,
    loss: str,
    scaling: Scaling,
    seed: int,
    gamma: float | None = None,
    device: torch.device | None = None,
) -> TrainConfig:
    """The :class:`TrainConfig` of one run on ``device``.

    The channels-last memory layout is used on CUDA only: on the CPU it was no faster for
    ResNet-18 than the default layout (0.88x at 43-pixel crops, 0.98x at 90, measured side
    by side by ``benchmarks/bench_fer.py``; ``results/benchmarks/bench_fer_cpu*.txt``).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    center, dda = LOSSES[loss]
    return TrainConfig(
        epochs=profile.epochs,
        lr=profile.lr,
        lr_step=profile.lr_step,
        lr_decay=profile.lr_decay,
        grad_clip=profile.grad_clip,
        max_loss=profile.max_loss,
        eval_every=profile.eval_every,
        lam=profile.lam if center else 0.0,
        gamma=(profile.gamma if gamma is None else gamma) if dda else 0.0,
        alpha=profile.alpha,
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
    """Train one run and write its result; returns the result (see the module docstring).

    ``data`` passes loaders from :func:`load_data` so that several runs share one decode.
    A run that diverges is recorded as diverged, without accuracies.
    """
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    out = Path(out_dir) if out_dir is not None else Path("results") / dataset
    device = pick_device()  # under torchrun: this process's GPU
    config = train_config(prof, loss, scaling, seed, gamma, device)
    config.sync_bn = sync_bn
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
    seed_everything(seed)
    model = ResNet18(len(classes), weights="imagenet" if prof.pretrained else None)
    ckpt_dir = Path(checkpoints) if checkpoints is not None else out / "checkpoints"
    label = f"{dataset} ({STANDIN_LABEL})" if dataset == "standin" else dataset
    result: dict[str, Any] = {
        "run": name,
        "dataset": label,
        "loss": loss,
        "lam": config.lam,
        "gamma": config.gamma,
        "scaling": scaling,
        "seed": seed,
        "profile": asdict(prof),
        "classes": classes,
        "machine": machine_description(device),
    }
    tic = time.perf_counter()
    try:
        fit = train(
            model,
            train_loader,
            test_loader,
            config,
            checkpoint=ckpt_dir / f"{prof.name}-{name}-seed{seed}.pt",
            progress=progress,
            desc=f"{label} {name}",
        )
    except NonFiniteLossError as err:
        result |= {"status": "diverged", "error": str(err), "history": err.history}
    else:
        feats, preds, labels = predict(model, test_loader)
        k = len(classes)
        result |= {
            "status": "ok",
            "accuracy": round(accuracy(preds, labels), 2),
            "mean_class_accuracy": round(mean_class_accuracy(preds, labels, k), 2),
            "per_class_accuracy": [
                round(float(a), 2) for a in per_class_accuracy(preds, labels, k)
            ],
            "confusion_matrix": confusion_matrix(preds, labels, k).tolist(),
            "history": fit.history,
        }
    result["seconds"] = round(time.perf_counter() - tic, 1)
    result["world_size"] = world_size()
    if not is_main():  # rank 0 writes; every rank returns the same (gathered) result
        return result
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{prof.name}-{name}-seed{seed}"
    if result["status"] == "ok":
        save_test_outputs(out / f"{stem}-test.npz", feats, preds, labels)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    write_table(out)
    return result


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
        with open(out / "table.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
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
