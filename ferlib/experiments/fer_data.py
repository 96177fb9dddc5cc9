"""The data of the facial-expression experiments: loaders for RAF-DB, AffectNet, FER2013 and
the synthetic stand-in at a profile's crop and batch size, where RAF-DB is, and the test
outputs (features, predictions, labels) a run saves beside its result.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from ferlib.runtime import is_distributed

if TYPE_CHECKING:
    from ferlib.experiments.fer import FERProfile

__all__ = [
    "CROPS",
    "DATASETS",
    "find_rafdb",
    "load_data",
    "load_test_outputs",
    "save_test_outputs",
]

DATASETS: tuple[str, ...] = ("rafdb", "affectnet", "fer2013", "standin")

#: The paper's crops: (image side, crop side).
CROPS: dict[str, tuple[int, int]] = {
    "rafdb": (100, 90),
    "standin": (100, 90),
    "affectnet": (256, 224),
    "fer2013": (48, 44),
}


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
