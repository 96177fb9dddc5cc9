"""In-memory mini-batches and the identity of a dataset (its fingerprint)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["StreamLoader", "TensorLoader", "class_counts", "fingerprint"]


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


class StreamLoader:
    """Mini-batches of a stream of shuffled passes over in-memory tensors, cut into
    "epochs" of a fixed number of steps, so that runs on sets of different sizes take the
    same number of SGD steps under the same epoch-based learning-rate schedule.

    Pass ``p`` over the set has the order ``torch.randperm(n, generator=seed + p)`` and
    ``ceil(n / batch_size)`` batches (the last one smaller), exactly as
    :class:`TensorLoader`'s epoch ``p``; epoch ``e`` of this loader yields
    batches ``e * steps_per_epoch`` ... ``(e + 1) * steps_per_epoch - 1`` of the stream.
    With ``steps_per_epoch == len(TensorLoader(...))`` it is that loader, batch for batch.

    Args:
        images: (N, ...) inputs.
        labels: (N,) integer labels.
        batch_size: samples per batch.
        steps_per_epoch: batches per epoch, >= 1.
        seed: base seed of the shuffling.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        steps_per_epoch: int,
        seed: int = 0,
    ) -> None:
        self.inner = TensorLoader(images, labels, batch_size, shuffle=True, seed=seed)
        if steps_per_epoch < 1:
            raise ValueError(f"StreamLoader: steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0

    @property
    def fingerprint(self) -> str:
        """The data's fingerprint and the epoch length: what a checkpoint records."""
        return f"{self.inner.fingerprint}:stream{self.steps_per_epoch}"

    @property
    def num_samples(self) -> int:
        """Number of samples N in the dataset."""
        return self.inner.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Select the ``steps_per_epoch`` batches of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self):
        per_pass = len(self.inner)
        start = self.epoch * self.steps_per_epoch
        done = 0
        while done < self.steps_per_epoch:
            pass_no, offset = divmod(start + done, per_pass)
            self.inner.set_epoch(pass_no)
            for i, batch in enumerate(self.inner):
                if i < offset:
                    continue
                yield batch
                done += 1
                if done == self.steps_per_epoch:
                    return
