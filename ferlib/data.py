"""Datasets and in-memory loaders.

Sections: data root, MNIST, W-MNIST (the paper's imbalanced toy set), in-memory
mini-batches and small helpers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import torch
from torch import Tensor
from torchvision.datasets import MNIST

__all__ = [
    "MNIST_FILES",
    "MNIST_MEAN",
    "MNIST_STD",
    "WMNIST_COUNTS",
    "WMNIST_SEED",
    "TensorLoader",
    "class_counts",
    "default_data_root",
    "fingerprint",
    "load_mnist",
    "load_wmnist",
    "wmnist_indices",
]

# ----------------------------------------------------------------------------- data root


def default_data_root() -> Path:
    """Folder holding the datasets.

    `$FERLIB_DATA` if set; else the repository's `data/` folder when ferlib is imported
    from a source checkout (the folder above the package holds `pyproject.toml`); else
    `./data`.
    """
    env = os.environ.get("FERLIB_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file():
        return repo / "data"
    return Path("data")


# ----------------------------------------------------------------------------- MNIST

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def load_mnist(
    root: str | Path | None = None, train: bool = True, download: bool = True
) -> tuple[Tensor, Tensor]:
    """Load the MNIST training (60,000) or test (10,000) set as in-memory tensors.

    Files are read (and downloaded if needed) by `torchvision.datasets.MNIST`, i.e. from
    `<root>/MNIST/raw/`. Returns `images` float32 (N, 1, 28, 28), scaled to [0, 1] then
    normalised with mean 0.1307 / std 0.3081, and `labels` int64 (N,).
    """
    root = Path(root) if root is not None else default_data_root()
    raw = root / "MNIST" / "raw"
    hint = (
        f"MNIST not found: expected the files {', '.join(MNIST_FILES)} (uncompressed) in "
        f"{raw}/. Fix: call load_mnist(root=..., download=True) with internet access, "
        "or copy the four files there, or pass the folder that contains MNIST/raw/ as root "
        "(or set FERLIB_DATA)."
    )
    if not download and not all((raw / name).is_file() for name in MNIST_FILES):
        raise FileNotFoundError(hint)
    try:
        dataset = MNIST(str(root), train=train, download=download)
    except (RuntimeError, OSError) as err:  # torchvision's "not found" / failed download
        raise FileNotFoundError(f"{hint} (torchvision said: {err})") from err
    images = dataset.data.unsqueeze(1).float().div_(255.0)  # (N, 1, 28, 28) in [0, 1]
    images = images.sub_(MNIST_MEAN).div_(MNIST_STD)
    return images, dataset.targets.long()


# ----------------------------------------------------------------------------- W-MNIST

# W-MNIST: per-digit sample counts drawn from the MNIST training set. Digits 2, 5 and 8
# are the minority classes, cut to a quarter of the others (150 vs 600 images: 4,650 in
# all). Measured on this course's CPU profile: deep enough that the minority digits are
# recognised clearly worse than the others (and collapse under center loss), shallow
# enough that they stay learnable; with 100 vs 1,000 every loss left them at 0%. The
# paper's own counts (its Fig. 2a) are not recoverable from its text.
# Single source of truth: change here, not in callers. Read-only (a MappingProxyType), so
# that code which aliases it and edits the alias cannot silently change what every later
# `load_wmnist()` returns: build a new dict instead, `{**WMNIST_COUNTS, 2: 20}`.
WMNIST_COUNTS: Mapping[int, int] = MappingProxyType(
    {0: 600, 1: 600, 2: 150, 3: 600, 4: 600, 5: 150, 6: 600, 7: 600, 8: 150, 9: 600}
)
WMNIST_SEED: int = 2020


def wmnist_indices(
    train_labels: Tensor, counts: Mapping[int, int] = WMNIST_COUNTS, seed: int = WMNIST_SEED
) -> Tensor:
    """Sorted indices (M,) into the MNIST training set that make up W-MNIST.

    For each digit `d`, `counts[d]` indices are drawn without replacement by
    `torch.randperm` with a CPU `torch.Generator` seeded with `seed + d`, so the result is
    identical on every machine.

    Args:
        train_labels: (N,) integer labels of the MNIST training set.
        counts: digit -> number of samples to keep.
        seed: base seed.
    """
    if train_labels.ndim != 1 or train_labels.dtype.is_floating_point:
        raise ValueError(
            "wmnist_indices: train_labels must be a 1-D integer tensor, got "
            f"shape {tuple(train_labels.shape)} dtype {train_labels.dtype}"
        )
    chosen = []
    for digit, count in sorted(counts.items()):
        pool = torch.nonzero(train_labels == digit).squeeze(1)
        if len(pool) == 0:
            raise ValueError(f"wmnist_indices: digit {digit} does not occur in train_labels")
        if not 0 <= count <= len(pool):
            raise ValueError(
                f"wmnist_indices: asked for {count} samples of digit {digit}, "
                f"expected 0..{len(pool)} (the number available)"
            )
        generator = torch.Generator().manual_seed(seed + digit)
        chosen.append(pool[torch.randperm(len(pool), generator=generator)[:count]])
    return torch.cat(chosen).sort().values


def load_wmnist(
    root: str | Path | None = None,
    counts: Mapping[int, int] = WMNIST_COUNTS,
    seed: int = WMNIST_SEED,
    download: bool = True,
) -> tuple[Tensor, Tensor]:
    """W-MNIST training set: images (M, 1, 28, 28) float32 normalised, labels (M,) int64.

    Test on the full, balanced MNIST test set (`load_mnist(train=False)`).
    """
    images, labels = load_mnist(root, train=True, download=download)
    idx = wmnist_indices(labels, counts, seed)
    return images[idx], labels[idx]


# ----------------------------------------------------------------------------- fingerprints


def fingerprint(images: Tensor, labels: Tensor, samples: int = 64) -> str:
    """A short, cheap identity of an in-memory dataset: 16 hex digits.

    Hashes the shapes and dtypes, every label, and the bytes of ``samples`` images spread
    evenly over the set (always the first and the last). Another subset, another order,
    other counts or other preprocessing change it; it costs a few milliseconds even for
    60,000 images. Training checkpoints record it, so that a run never resumes on other
    data (:func:`ferlib.training.train`).
    """
    digest = hashlib.sha256()
    for t in (images, labels):
        digest.update(f"{tuple(t.shape)}|{t.dtype};".encode())
    digest.update(labels.detach().cpu().contiguous().numpy().tobytes())
    n = len(images)
    if n:
        idx = torch.linspace(0, n - 1, min(samples, n)).round().long().unique()
        digest.update(images[idx].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- in-memory batches


class TensorLoader:
    """Mini-batches `(x, y)` over in-memory tensors: a light DataLoader replacement.

    With `shuffle=True` the order of epoch `e` is
    `torch.randperm(n, generator=torch.Generator().manual_seed(seed + e))`. Call
    `set_epoch(e)` before iterating each epoch (like `DistributedSampler`); without it
    every pass repeats the epoch-0 order. Because the order depends only on `(seed, e)`,
    a run resumed at epoch `e` reproduces the order exactly without saving RNG state.

    Args:
        images: (N, ...) inputs.
        labels: (N,) integer labels.
        batch_size: samples per batch (the last batch may be smaller unless `drop_last`).
        shuffle: reshuffle each epoch; otherwise the stored order.
        seed: base seed of the shuffling.
        drop_last: drop the last incomplete batch.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(
                "TensorLoader: labels must be a 1-D integer tensor, got "
                f"shape {tuple(labels.shape)} dtype {labels.dtype}"
            )
        if len(images) != len(labels):
            raise ValueError(
                f"TensorLoader: images and labels must have the same length, "
                f"got {len(images)} images and {len(labels)} labels"
            )
        if batch_size < 1:
            raise ValueError(f"TensorLoader: batch_size must be >= 1, got {batch_size}")
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def fingerprint(self) -> str:
        """:func:`fingerprint` of the images and labels: what a checkpoint records."""
        return fingerprint(self.images, self.labels)

    @property
    def num_samples(self) -> int:
        """Number of samples N in the dataset."""
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffling order of `epoch`."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.images[idx], self.labels[idx]


# ----------------------------------------------------------------------------- helpers


def class_counts(labels: Tensor, num_classes: int) -> Tensor:
    """Number of samples per class, (K,) int64, from integer labels (N,) in [0, K)."""
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(
            f"class_counts: labels must be a 1-D integer tensor, got shape "
            f"{tuple(labels.shape)} dtype {labels.dtype}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"class_counts: labels must lie in [0, {num_classes}), "
            f"got range [{int(labels.min())}, {int(labels.max())}]"
        )
    return torch.bincount(labels, minlength=num_classes)
