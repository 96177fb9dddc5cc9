"""Mini-batches augmented on the training device: the data never waits on CPU workers.

Two loaders, both yielding ``(float32 (B, 3, crop, crop), int64 (B,))`` on the device and
following the protocol of :class:`~ferlib.data.loaders.TensorLoader` (``__iter__``,
``__len__``, ``set_epoch(e)``, ``fingerprint``), so that :func:`ferlib.training.train`
takes them as they are (its ``x.to(device, non_blocking=True)`` is then a no-op):

* :class:`DeviceLoader` for a dataset that fits in memory (RAF-DB: 368 MB as uint8, see
  :func:`ferlib.data.cache.decode_dataset`): the uint8 images are moved to the device
  once, and each batch is gathered, cropped, flipped and normalised there.
* :class:`DeviceAugmentLoader` (built by :func:`stream_loader`) for a dataset too large
  for memory (AffectNet, 280,000 images): a ``torch.utils.data.DataLoader`` decodes and
  resizes uint8 images on the CPU, and the augmentation runs on the device.

The augmentation is the paper's (:mod:`ferlib.data.augment`): at training time one of
five crops, flipped with probability 1/2 (:func:`~ferlib.data.augment.random_five_crop_flip`);
at test time the centre crop; then :func:`~ferlib.data.augment.normalize`. Grey images are
repeated to 3 channels (:func:`~ferlib.data.augment.to_rgb`).

Reproducibility: the order of epoch ``e`` depends only on ``(seed, e)`` (as with
``TensorLoader`` and ``DistributedSampler``), and the crops and flips on
``(seed, e, rank)``, drawn by a generator on the device when the device has one (so the
draws on a GPU differ from those on the CPU, but repeat on the same device).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision.transforms.v2 import functional as tvf

from ferlib.data.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    center_crop,
    normalize,
    random_five_crop_flip,
    to_rgb,
)
from ferlib.data.images import describe
from ferlib.data.loaders import fingerprint as data_fingerprint

__all__ = ["DeviceAugmentLoader", "DeviceLoader", "EpochShuffle", "ResizeCollate", "stream_loader"]

Stats = float | Sequence[float]


# ----------------------------------------------------------------------------- shared helpers


def _positive_int(value: object, name: str, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}: {name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_ranks(rank: object, world_size: object, where: str) -> None:
    size = _positive_int(world_size, "world_size", where)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < size:
        raise ValueError(
            f"{where}: rank must be an int in [0, world_size) = [0, {world_size}), got {rank!r}"
        )


def _check_stats(mean: Stats, std: Stats, where: str) -> None:
    """Fail now, not at the first batch, on statistics that do not fit 3 channels."""
    try:
        normalize(torch.zeros((1, 3, 1, 1), dtype=torch.uint8), mean, std)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: bad mean/std for RGB batches: {err}") from err


def _augment_seed(seed: int, epoch: int, rank: int) -> int:
    """A 63-bit seed for the crops and flips of ``(seed, epoch, rank)``, unrelated to the
    shuffling seed ``seed + epoch``."""
    digest = hashlib.sha256(f"ferlib-augment|{seed}|{epoch}|{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded generator on ``device`` when it has one (CUDA), else on the CPU."""
    try:
        generator = torch.Generator(device=device)
    except (RuntimeError, TypeError):
        generator = torch.Generator()
    return generator.manual_seed(seed)


def _augment(
    images: Tensor,
    *,
    train: bool,
    crop: int,
    mean: Stats,
    std: Stats,
    generator: torch.Generator | None,
) -> Tensor:
    """uint8 (B, C, H, W) -> float32 (B, 3, crop, crop): crop (random five-crop and flip at
    training time, centre at test time), grey to RGB, normalise."""
    if train:
        images = random_five_crop_flip(images, crop, generator)
    else:
        images = center_crop(images, crop)
    return normalize(to_rgb(images), mean, std)


def _check_epoch(epoch: object, where: str) -> int:
    return _positive_int(epoch, "epoch", where, minimum=0)


# ----------------------------------------------------------------------------- in memory


class DeviceLoader:
    """Mini-batches of in-memory uint8 images, augmented on ``device``.

    The images and labels are moved to ``device`` once, at construction; images stay
    uint8 there (N x C x H x W bytes: 368 MB for RAF-DB's training set, 4x less than
    float32). Each batch is gathered by index on the device, cropped (training: a random
    one of the five crops, flipped with probability 1/2; test: the centre crop), turned to
    3 channels if grey, and normalised.

    Order: with ``shuffle`` the order of epoch ``e`` is
    ``torch.randperm(N, generator=torch.Generator().manual_seed(seed + e))``, as in
    :class:`~ferlib.data.loaders.TensorLoader`; call ``set_epoch(e)`` before each epoch (a
    run resumed at epoch ``e`` then sees the same order). Crops and flips are drawn from a
    generator (on the device when possible) seeded from ``(seed, e, rank)``.

    Distributed data parallel (``world_size > 1``): like
    ``torch.utils.data.DistributedSampler``, the epoch's order is padded by wrapping around
    to a multiple of ``world_size`` and rank ``r`` takes ``order[r::world_size]``: every
    rank gets ``ceil(N / world_size)`` samples and runs the same number of steps, and the
    ranks together cover every sample. Test loaders (``train=False``) are not padded:
    rank ``r`` takes ``order[r::world_size]``, so a gathered evaluation counts every
    sample exactly once.

    Args:
        images: uint8 (N, C, H, W), C = 1 (grey) or 3, on any device.
        labels: integer (N,).
        batch_size: samples per batch and rank.
        train: training augmentation (random crop and flip) or test (centre crop).
        crop: side of the square crops, <= H and W (90 for RAF-DB's 100 x 100).
        mean, std: per-channel statistics of :func:`~ferlib.data.augment.normalize`.
        shuffle: reshuffle every epoch; default ``train``.
        seed: base seed of the order and of the augmentation.
        drop_last: drop the last incomplete batch; default ``train``.
        device: where the data lives and the batches are made.
        rank, world_size: this process's shard for DistributedDataParallel.
        fingerprint: identity of the data for checkpoints; default
            :func:`ferlib.data.fingerprint` of ``images`` and ``labels``.

    Yields:
        ``(float32 (B, 3, crop, crop), int64 (B,))`` on ``device``.

    Raises:
        TypeError / ValueError: images not uint8 (N, C, H, W) with 1 or 3 channels, labels
            not integer (N,), a crop larger than the images, a rank outside
            ``[0, world_size)``, a bad batch size or mean/std, or ``drop_last`` with fewer
            samples per rank than ``batch_size`` (no batch at all).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        train: bool,
        crop: int,
        mean: Stats = IMAGENET_MEAN,
        std: Stats = IMAGENET_STD,
        shuffle: bool | None = None,
        seed: int = 0,
        drop_last: bool | None = None,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
        fingerprint: str | None = None,
    ) -> None:
        where = "DeviceLoader"
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            got = describe(images)
            raise TypeError(
                f"{where}: expected images as a uint8 tensor (N, C, H, W) (values 0-255, "
                f"before normalisation), got a {got}"
            )
        n, c, h, w = images.shape
        if c not in (1, 3):
            raise ValueError(
                f"{where}: expected 1 (grey) or 3 (RGB) channels, got {c} (images of shape "
                f"{tuple(images.shape)}; channels come second: (N, C, H, W))"
            )
        if (
            not isinstance(labels, Tensor)
            or labels.ndim != 1
            or labels.dtype.is_floating_point
            or labels.dtype.is_complex
            or labels.dtype == torch.bool
        ):
            got = (
                f"shape {tuple(labels.shape)} dtype {labels.dtype}"
                if isinstance(labels, Tensor)
                else type(labels).__name__
            )
            raise TypeError(f"{where}: expected labels as a 1-D integer tensor (N,), got {got}")
        if len(labels) != n:
            raise ValueError(
                f"{where}: images and labels must have the same length, got {n} images and "
                f"{len(labels)} labels"
            )
        if n == 0:
            raise ValueError(f"{where}: no images (N = 0)")
        _positive_int(batch_size, "batch_size", where)
        _positive_int(crop, "crop", where)
        if crop > h or crop > w:
            raise ValueError(
                f"{where}: crop {crop} is larger than the images ({h}x{w}, HxW); expected "
                f"crop <= {min(h, w)}"
            )
        _check_ranks(rank, world_size, where)
        _check_stats(mean, std, where)
        self.train = bool(train)
        self.shuffle = self.train if shuffle is None else bool(shuffle)
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.batch_size = batch_size
        self.crop = crop
        self.mean, self.std = mean, std
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.epoch = 0
        self._n = n
        if len(self) == 0:
            raise ValueError(
                f"{where}: drop_last=True with {self.num_samples} samples per rank and "
                f"batch_size {batch_size} gives no batch at all; lower the batch size or pass "
                "drop_last=False"
            )
        self._fingerprint = (
            fingerprint if fingerprint is not None else data_fingerprint(images, labels)
        )
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)

    @property
    def fingerprint(self) -> str:
        """Identity of the data for checkpoints (computed once, on the CPU tensors)."""
        return self._fingerprint

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch: ``ceil(N / world_size)`` when training (N on
        one process); at test time this rank's share without padding."""
        if not self.train:
            return len(range(self.rank, self._n, self.world_size))
        return math.ceil(self._n / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the order and augmentation of ``epoch`` (call before each epoch)."""
        self.epoch = _check_epoch(epoch, "DeviceLoader.set_epoch")

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def indices(self) -> Tensor:
        """This rank's sample indices for the current epoch, int64 (num_samples,) on the
        CPU, in batch order (before ``drop_last``)."""
        n = self._n
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if self.world_size == 1:
            return order
        if not self.train:  # evaluation: every sample exactly once over the ranks
            return order[self.rank :: self.world_size]
        total = self.num_samples * self.world_size
        padding = total - n  # wrap around, as DistributedSampler does
        if padding:
            order = torch.cat([order, order.repeat(math.ceil(padding / n))[:padding]])
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.indices().to(self.device)
        generator = (
            _generator(self.device, _augment_seed(self.seed, self.epoch, self.rank))
            if self.train
            else None
        )
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = _augment(
                self.images.index_select(0, idx),
                train=self.train,
                crop=self.crop,
                mean=self.mean,
                std=self.std,
                generator=generator,
            )
            yield x, self.labels.index_select(0, idx)

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return (
            f"DeviceLoader(images={n}x{c}x{h}x{w}, batch_size={self.batch_size}, "
            f"train={self.train}, crop={self.crop}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, device={str(self.device)!r}, "
            f"rank={self.rank}/{self.world_size})"
        )


# ----------------------------------------------------------------------------- streamed


class DeviceAugmentLoader:
    """Augment on ``device`` the uint8 batches of a ``torch.utils.data.DataLoader``.

    For datasets too large to hold in memory (AffectNet): the DataLoader's workers decode
    (and resize) images on the CPU and yield ``(uint8 (B, C, H, W), labels (B,))``; each
    batch is moved to ``device`` (``non_blocking=True``: asynchronous from pinned memory)
    and cropped, flipped and normalised there, as in :class:`DeviceLoader`. Build one with
    :func:`stream_loader`.

    ``set_epoch(e)`` forwards to the loader's sampler when it has ``set_epoch``
    (``DistributedSampler``, or :func:`stream_loader`'s seeded shuffle) and seeds the
    crops and flips from ``(seed, e, rank)``, ``rank`` being the sampler's (0 without one).

    Args:
        loader: yields ``(uint8 images (B, C, H, W), integer labels (B,))``, C = 1 or 3.
        train: training augmentation (random crop and flip) or test (centre crop).
        crop: side of the square crops, <= the images' H and W.
        mean, std: per-channel statistics of :func:`~ferlib.data.augment.normalize`.
        device: where the batches are augmented and yielded.
        seed: base seed of the augmentation.
        fingerprint: identity of the data for checkpoints; default the
            ``fingerprint`` of ``loader.dataset`` (None if it has none).

    Yields:
        ``(float32 (B, 3, crop, crop), int64 (B,))`` on ``device``.
    """

    def __init__(
        self,
        loader: DataLoader,
        *,
        train: bool,
        crop: int,
        mean: Stats = IMAGENET_MEAN,
        std: Stats = IMAGENET_STD,
        device: str | torch.device = "cpu",
        seed: int = 0,
        fingerprint: str | None = None,
    ) -> None:
        where = "DeviceAugmentLoader"
        _positive_int(crop, "crop", where)
        _check_stats(mean, std, where)
        self.loader = loader
        self.dataset = getattr(loader, "dataset", None)
        self.train = bool(train)
        self.crop = crop
        self.mean, self.std = mean, std
        self.device = torch.device(device)
        self.seed = seed
        self.epoch = 0
        self._fingerprint = fingerprint

    @property
    def rank(self) -> int:
        """The sampler's rank (0 without a distributed sampler)."""
        return int(getattr(getattr(self.loader, "sampler", None), "rank", 0))

    @property
    def fingerprint(self) -> str | None:
        """Identity of the data: the one given, else the dataset's ``fingerprint``."""
        if self._fingerprint is not None:
            return self._fingerprint
        value = getattr(self.dataset, "fingerprint", None)
        return None if value is None else str(value)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's augmentation, and its order when the sampler supports it."""
        self.epoch = _check_epoch(epoch, "DeviceAugmentLoader.set_epoch")
        for source in (
            getattr(self.loader, "sampler", None),
            getattr(self.loader, "batch_sampler", None),
        ):
            if hasattr(source, "set_epoch"):
                source.set_epoch(epoch)
                break

    def __len__(self) -> int:
        """Batches per epoch: the loader's."""
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        generator = (
            _generator(self.device, _augment_seed(self.seed, self.epoch, self.rank))
            if self.train
            else None
        )
        for batch in self.loader:
            if not isinstance(batch, Sequence) or len(batch) != 2:
                raise TypeError(
                    "DeviceAugmentLoader: expected the loader to yield (images, labels) "
                    f"pairs, got {type(batch).__name__}"
                )
            images, labels = batch
            if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
                got = describe(images)
                raise TypeError(
                    "DeviceAugmentLoader: expected uint8 image batches (B, C, H, W) from the "
                    f"loader (augmentation and normalisation happen here), got a {got}"
                )
            images = images.to(self.device, non_blocking=True)
            labels = torch.as_tensor(labels).to(self.device, torch.int64, non_blocking=True)
            x = _augment(
                images,
                train=self.train,
                crop=self.crop,
                mean=self.mean,
                std=self.std,
                generator=generator,
            )
            yield x, labels

    def __repr__(self) -> str:
        return (
            f"DeviceAugmentLoader(batches={len(self)}, train={self.train}, crop={self.crop}, "
            f"device={str(self.device)!r})"
        )


class EpochShuffle(Sampler[int]):
    """Indices ``0..n-1`` in the order ``torch.randperm(n, Generator().manual_seed(seed +
    epoch))``, the order :class:`~ferlib.data.loaders.TensorLoader` uses; ``set_epoch(e)``
    selects the epoch."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = _positive_int(n, "n", "EpochShuffle", minimum=0)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = _check_epoch(epoch, "EpochShuffle.set_epoch")

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


class ResizeCollate:
    """Collate ``(uint8 image (C, H, W), label)`` items into ``(uint8 (B, C, size, size),
    int64 (B,))``, resizing each image on the CPU (bilinear, antialiased) unless it already
    has that size. Grey images in a batch with RGB ones are repeated to 3 channels.
    A class rather than a closure so that DataLoader workers can pickle it."""

    def __init__(self, size: int) -> None:
        self.size = _positive_int(size, "resize", "ResizeCollate")

    def __call__(self, items: Sequence[tuple[Tensor, Any]]) -> tuple[Tensor, Tensor]:
        images = []
        for image, _ in items:
            if not isinstance(image, Tensor) or image.dtype != torch.uint8 or image.ndim != 3:
                got = describe(image)
                raise TypeError(
                    "stream_loader: expected each item's image as a uint8 tensor (C, H, W) "
                    f"(build the dataset without a transform), got a {got}"
                )
            if image.shape[-2:] != (self.size, self.size):
                image = tvf.resize(image, [self.size, self.size], antialias=True)
            images.append(image)
        if len({image.shape[0] for image in images}) > 1:
            images = [image.expand(3, -1, -1) if image.shape[0] == 1 else image for image in images]
        labels = torch.tensor([int(label) for _, label in items], dtype=torch.int64)
        return torch.stack(images), labels


def stream_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    crop: int,
    resize: int,
    device: str | torch.device,
    workers: int = 4,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
    drop_last: bool | None = None,
) -> DeviceAugmentLoader:
    """Stream a map-style dataset of uint8 images through CPU workers, augment on the device.

    The DataLoader decodes items in ``workers`` processes, resizes each image to
    ``resize x resize`` on the CPU (:class:`ResizeCollate`) and stacks them (pinned memory
    when ``device`` is CUDA, workers kept alive across epochs); the returned
    :class:`DeviceAugmentLoader` moves each batch to ``device`` and crops, flips and
    normalises it there. AffectNet: ``resize=256, crop=224``.

    Order: with ``world_size > 1`` a ``DistributedSampler(dataset, world_size, rank,
    shuffle=train, seed=seed)``; otherwise, for training, the seeded
    :class:`EpochShuffle` (order of epoch ``e`` from ``seed + e``), and for testing the
    dataset's order. ``set_epoch(e)`` on the returned loader reaches either sampler.

    Args:
        dataset: ``dataset[i]`` is ``(uint8 image (C, H, W), label)`` (no transform).
        batch_size: samples per batch and rank.
        train: training (shuffled, random crops and flips, last partial batch dropped)
            or test (in order, centre crops).
        crop: side of the square crops, <= ``resize``.
        resize: side every image is resized to before cropping.
        device: where the batches are augmented and yielded.
        workers: DataLoader worker processes (0: decode in the main process).
        seed: base seed of the order and the augmentation.
        rank, world_size: this process's shard for DistributedDataParallel.
        mean, std: per-channel statistics of :func:`~ferlib.data.augment.normalize`.
        drop_last: drop the last incomplete batch; default ``train``.

    Returns:
        A :class:`DeviceAugmentLoader` yielding ``(float32 (B, 3, crop, crop), int64 (B,))``
        on ``device``; its ``loader`` is the DataLoader.
    """
    where = "stream_loader"
    _positive_int(batch_size, "batch_size", where)
    _positive_int(crop, "crop", where)
    _positive_int(resize, "resize", where)
    if crop > resize:
        raise ValueError(
            f"{where}: crop {crop} is larger than the resized images ({resize}x{resize}); "
            f"expected crop <= resize"
        )
    _positive_int(workers, "workers", where, minimum=0)
    _check_ranks(rank, world_size, where)
    device = torch.device(device)
    sampler: Sampler[int] | None
    if world_size > 1:
        sampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=bool(train), seed=seed
        )
    elif train:
        sampler = EpochShuffle(len(dataset), seed)  # type: ignore[arg-type]
    else:
        sampler = None
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=ResizeCollate(resize),
        pin_memory=device.type == "cuda",
        drop_last=bool(train) if drop_last is None else bool(drop_last),
        persistent_workers=workers > 0,
    )
    return DeviceAugmentLoader(
        loader, train=train, crop=crop, mean=mean, std=std, device=device, seed=seed
    )
