"""The data of the facial-expression experiments: loaders for RAF-DB, AffectNet, FER2013 and
the synthetic stand-in at a profile's crop and batch size, where RAF-DB and the stand-in
are, and the test outputs (features, predictions, labels) a run saves beside its result.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Sequence
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
from ferlib.data.cache import cache_file, decode_dataset
from ferlib.data.device import DeviceLoader, stream_loader
from ferlib.data.synthetic import make_standin
from ferlib.runtime import is_distributed

if TYPE_CHECKING:
    from ferlib.experiments.fer import FERProfile

__all__ = [
    "CROPS",
    "DATASETS",
    "TooFewImagesError",
    "find_rafdb",
    "load_data",
    "load_test_outputs",
    "save_test_outputs",
    "standin_folder",
    "user_cache_dir",
]

DATASETS: tuple[str, ...] = ("rafdb", "affectnet", "fer2013", "standin")

#: The paper's crops: (image side, crop side).
CROPS: dict[str, tuple[int, int]] = {
    "rafdb": (100, 90),
    "standin": (100, 90),
    "affectnet": (256, 224),
    "fer2013": (48, 44),
}


class TooFewImagesError(ValueError):
    """The training set holds fewer images per process than one batch: training drops the
    last incomplete batch, so an epoch would have no step at all.

    ``dataset``, ``images`` (the training set's size), ``per_rank`` (what each process
    sees), ``batch_size`` and ``profile`` (its name) say which.
    """

    def __init__(
        self, dataset: str, images: int, per_rank: int, batch_size: int, profile: str
    ) -> None:
        shard = f" ({per_rank} per process)" if per_rank != images else ""
        super().__init__(
            f"the {dataset} training set has {images} images{shard}, fewer than one batch of "
            f"the {profile!r} profile ({batch_size} images): training drops the last "
            "incomplete batch, so an epoch would have no step. Use the whole dataset, or a "
            "profile with a smaller batch"
        )
        self.dataset, self.images, self.per_rank = dataset, images, per_rank
        self.batch_size, self.profile = batch_size, profile


def standin_folder(scale: float, size: int, root: str | Path | None = None) -> Path:
    """The folder :func:`load_data` reads (and draws, when it is missing) for a stand-in
    at ``scale`` and ``size``: ``<root>/scale<scale>-size<size>``, ``root`` being
    ``<data root>/standin`` by default (``$FERLIB_DATA/standin`` or ``data/standin``).

    ``python -m ferlib standin`` writes there by default, so that ``python -m ferlib fer
    --dataset standin`` with a profile of that scale and size reuses what it drew.
    """
    base = Path(root) if root is not None else default_data_root() / "standin"
    return base / f"scale{scale:g}-size{size}"


def user_cache_dir() -> Path:
    """Where decoded datasets are cached when their own folder cannot be written:
    ``$XDG_CACHE_HOME/ferlib``, else ``~/.cache/ferlib``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "ferlib"


def _can_write(folder: Path) -> bool:
    """Whether a file can be written in ``folder`` (created if needed)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError:
        return False
    return True


def _cache_dir(preferred: Path, datasets: Sequence[Any], announce: bool) -> Path | None:
    """``preferred`` when it already holds the caches of ``datasets`` or can be written;
    else :func:`user_cache_dir`, with a line saying so; else no cache (None)."""
    if all(cache_file(ds, preferred).is_file() for ds in datasets) or _can_write(preferred):
        return preferred
    fallback = user_cache_dir()
    usable = _can_write(fallback)
    if announce:
        where = f"the decoded images are cached in {fallback}" if usable else "no cache is kept"
        print(f"cannot write in {preferred} (a read-only data folder): {where}")
    return fallback if usable else None


def _check_batch(dataset: str, images: int, profile: FERProfile, world_size: int) -> None:
    """Raise :class:`TooFewImagesError` when no process would get one training batch."""
    per_rank = math.ceil(images / world_size)
    if per_rank < profile.batch_size:
        raise TooFewImagesError(dataset, images, per_rank, profile.batch_size, profile.name)


def _fer2013_line(data: FER2013) -> str:
    """Which labels FER2013 was read with, and how to choose the others."""
    if data.label_source == "ferplus":
        return (
            f"FER2013 with the 8 FER+ classes (majority votes of {data.ferplus_file}); "
            "fer2013_labels='fer2013' (--fer2013-labels fer2013) gives FER2013's own 7"
        )
    return (
        f"FER2013 with its own 7 classes ({data.csv_file}); the 8 FER+ classes need "
        "fer2013new.csv beside it (fer2013_labels='ferplus', --fer2013-labels ferplus)"
    )


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
    skip_corrupt: bool = False,
    fer2013_labels: str = "auto",
) -> tuple[Any, Any, list[str]]:
    """Training and test loaders on ``device`` and the class names of ``dataset``.

    RAF-DB, FER2013 and the stand-in are decoded once into a uint8 tensor cached under
    ``<data root>/cache`` (the stand-in's: in its own folder, :func:`standin_folder`; a
    read-only data folder: :func:`user_cache_dir`, with a line saying so) and augmented on
    the device; AffectNet streams from disk through a DataLoader with workers. Under
    DistributedDataParallel each rank reads its own shard.

    ``skip_corrupt``: leave unreadable RAF-DB and AffectNet images out (counted in a
    warning) instead of failing on the first. ``fer2013_labels``: ``"auto"`` (FER+'s 8
    classes when ``fer2013new.csv`` is there, else FER2013's 7), ``"fer2013"`` or
    ``"ferplus"``; a line says which was used.

    Raises:
        TooFewImagesError: the training set holds fewer images per process than one batch.
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
        train_set = AffectNet(data_root, "train", skip_corrupt=skip_corrupt)
        test_set = AffectNet(data_root, "val", skip_corrupt=skip_corrupt)
        _check_batch(dataset, len(train_set), profile, world_size)
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
        cache: Path | None
        if dataset == "standin":
            folder = standin_folder(profile.standin_scale, profile.standin_size, data_root)
            make_standin(
                folder, scale=profile.standin_scale, size=profile.standin_size, progress=progress
            )
            sets: tuple[Any, Any] = (
                RAFDB(folder, "train", skip_corrupt=skip_corrupt),
                RAFDB(folder, "test", skip_corrupt=skip_corrupt),
            )
            cache = folder / "cache"
        elif dataset == "rafdb":
            sets = (
                RAFDB(data_root, "train", skip_corrupt=skip_corrupt),
                RAFDB(data_root, "test", skip_corrupt=skip_corrupt),
            )
            cache = (data_root or default_data_root()) / "cache"
        else:
            sets = tuple(FER2013(data_root, s, labels=fer2013_labels) for s in ("train", "test"))
            cache = None
            if rank == 0:
                print(_fer2013_line(sets[0]))
        _check_batch(dataset, len(sets[0]), profile, world_size)
        if cache is not None:
            cache = _cache_dir(cache, sets, announce=rank == 0)
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
    path: str | Path,
    features: Tensor,
    predictions: Tensor,
    labels: Tensor,
    extra: dict[str, Tensor] | None = None,
) -> Path:
    """Write a run's test outputs to ``path`` (.npz): features (N, D) as float16,
    predictions (N,) and labels (N,) as uint8. About 1 KB per test image at D = 512.

    ``extra``: more arrays by name: other rules' predictions (N,) as uint8 (``ncm``,
    ``cosine_ncm``), anything else (the ``class_means`` (K, D)) as float32.
    """
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
        **{
            name: a.cpu().numpy().astype(np.uint8 if a.shape == (n,) else np.float32)
            for name, a in (extra or {}).items()
        },
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
