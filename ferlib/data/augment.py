"""Augmentation of uint8 image batches on the training device (CPU or CUDA).

The paper's recipe (Farzaneh & Qi, CVPRW 2020): at training time each image is cropped at
one of five fixed positions (the centre and the four corners) and flipped horizontally
with probability 1/2; at test time the centre crop is used. RAF-DB: crops of 90 from
100x100 images; AffectNet: 224 from 256x256.

Everything here works on whole batches ``(B, C, H, W)`` already on the device, with index
tensors instead of a Python loop over the batch, so a GPU does the work, not data-loader
workers. Images stay ``uint8`` through cropping and flipping; :func:`normalize` turns them
into standardised float32 at the end.

Crop positions are indexed as in :data:`CROP_POSITIONS`: 0 centre, 1 top-left, 2 top-right,
3 bottom-left, 4 bottom-right (torchvision's ``FiveCrop`` puts the centre last).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "CROP_POSITIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RAFDB_MEAN",
    "RAFDB_STD",
    "center_crop",
    "crop_offsets",
    "five_crop_flip",
    "normalize",
    "random_five_crop_flip",
    "sample_five_crop_flip",
    "to_rgb",
]

CROP_POSITIONS = ("center", "top_left", "top_right", "bottom_left", "bottom_right")

# Per-channel (R, G, B) statistics of pixel values scaled to [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet statistics, used by most FER code
IMAGENET_STD = (0.229, 0.224, 0.225)
# RAF-DB statistics used by the DDA authors' follow-up code (see
# shared/reference/datasets.md, "Normalisation seen in FER code").
RAFDB_MEAN = (0.5752, 0.4495, 0.4012)
RAFDB_STD = (0.2086, 0.1911, 0.1827)


def _check_int(value: object, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {name} must be an int >= 1, got {value!r}")
    return value


def _check_images(images: object, where: str) -> tuple[int, int, int, int]:
    """Check a uint8 batch (B, C, H, W); return its shape."""
    if not isinstance(images, Tensor):
        raise TypeError(
            f"{where}: expected a uint8 tensor (B, C, H, W), got {type(images).__name__}"
        )
    if images.ndim != 4:
        raise ValueError(
            f"{where}: expected a batch of shape (B, C, H, W) (ndim 4), got shape "
            f"{tuple(images.shape)} (ndim {images.ndim}); add a batch dimension with "
            "images[None] or stack single images"
        )
    if images.dtype != torch.uint8:
        raise TypeError(
            f"{where}: expected uint8 images (values 0-255, before normalize), got {images.dtype}"
        )
    b, c, h, w = images.shape
    return b, c, h, w


def _offsets(height: int, width: int, size: int, where: str) -> list[tuple[int, int]]:
    """(top, left) of the five crops, in CROP_POSITIONS order, after checking the sizes."""
    _check_int(height, "height", where)
    _check_int(width, "width", where)
    _check_int(size, "size", where)
    if size > height or size > width:
        raise ValueError(
            f"{where}: crop size {size} is larger than the images ({height}x{width}, HxW); "
            f"expected size <= {min(height, width)}"
        )
    bottom, right = height - size, width - size
    return [(bottom // 2, right // 2), (0, 0), (0, right), (bottom, 0), (bottom, right)]


def crop_offsets(
    height: int, width: int, size: int, device: torch.device | str | None = None
) -> Tensor:
    """Top-left corners of the five crops of ``size x size`` in a ``height x width`` image.

    Returns:
        int64 tensor (5, 2) of (top, left), rows in :data:`CROP_POSITIONS` order: centre
        ``((H - size) // 2, (W - size) // 2)``, then top-left ``(0, 0)``, top-right
        ``(0, W - size)``, bottom-left ``(H - size, 0)``, bottom-right ``(H - size, W - size)``.
        For RAF-DB (100 -> 90): centre (5, 5), corners offset by 0 or 10.

    Raises:
        ValueError: a size that is not a positive int, or a crop larger than the image.
    """
    offsets = _offsets(height, width, size, "crop_offsets")
    return torch.tensor(offsets, dtype=torch.int64, device=device)


def sample_five_crop_flip(
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw, for each of ``batch_size`` images, a crop position and whether to flip it.

    Positions are uniform over the five of :data:`CROP_POSITIONS`, flips have probability
    1/2, all independent. The draws use ``generator`` (on its own device; the global RNG of
    ``device`` when None) and are then moved to ``device`` (default: the generator's).

    Returns:
        ``(positions, flips)``: int64 (B,) in 0..4 and bool (B,).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(
            f"sample_five_crop_flip: batch_size must be an int >= 0, got {batch_size!r}"
        )
    draw_on = generator.device if generator is not None else torch.device(device or "cpu")
    positions = torch.randint(0, 5, (batch_size,), generator=generator, device=draw_on)
    flips = torch.randint(0, 2, (batch_size,), generator=generator, device=draw_on).bool()
    if device is not None:
        positions, flips = positions.to(device), flips.to(device)
    return positions, flips


def _crop_flip(images: Tensor, size: int, positions: Tensor, flips: Tensor) -> Tensor:
    """Gather the crops; inputs already checked. One indexing op, no loop over the batch."""
    b, c, h, w = images.shape
    device = images.device
    offsets = torch.tensor(_offsets(h, w, size, "five_crop_flip"), device=device)[positions]
    steps = torch.arange(size, device=device)
    rows = offsets[:, :1] + steps  # (B, S) image rows of each crop
    cols = offsets[:, 1:] + steps  # (B, S) image columns, left to right
    cols = torch.where(flips[:, None], cols.flip(1), cols)  # right to left where flipped
    batch = torch.arange(b, device=device)[:, None, None, None]
    channels = torch.arange(c, device=device)[None, :, None, None]
    return images[batch, channels, rows[:, None, :, None], cols[:, None, None, :]]


def five_crop_flip(images: Tensor, size: int, positions: Tensor, flips: Tensor) -> Tensor:
    """Crop each image at a given position of :data:`CROP_POSITIONS` and flip it if asked.

    Args:
        images: uint8 (B, C, H, W), on any device.
        size: side of the square crops, <= min(H, W).
        positions: integer (B,) in 0..4 (0 centre, 1 top-left, 2 top-right, 3 bottom-left,
            4 bottom-right).
        flips: bool (B,); True mirrors the crop horizontally (left <-> right).

    Returns:
        uint8 (B, C, size, size), a new tensor on the images' device.
    """
    where = "five_crop_flip"
    b, _, h, w = _check_images(images, where)
    _offsets(h, w, size, where)
    if not isinstance(positions, Tensor) or positions.shape != (b,):
        got = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions)
        raise ValueError(f"{where}: expected positions of shape ({b},) for {b} images, got {got}")
    if positions.dtype == torch.bool or positions.is_floating_point() or positions.is_complex():
        raise TypeError(f"{where}: expected integer positions, got {positions.dtype}")
    if b and (positions.min() < 0 or positions.max() > 4):
        raise ValueError(
            f"{where}: positions must be in 0..4 (indices of {CROP_POSITIONS}), got values "
            f"in {positions.min().item()}..{positions.max().item()}"
        )
    if not isinstance(flips, Tensor) or flips.shape != (b,) or flips.dtype != torch.bool:
        got = (flips.dtype, tuple(flips.shape)) if isinstance(flips, Tensor) else type(flips)
        raise ValueError(f"{where}: expected flips as a bool tensor of shape ({b},), got {got}")
    device = images.device
    return _crop_flip(images, size, positions.to(device, torch.int64), flips.to(device))


def random_five_crop_flip(
    images: Tensor, size: int, generator: torch.Generator | None = None
) -> Tensor:
    """Training augmentation: a random one of the five crops, flipped with probability 1/2.

    Same as ``five_crop_flip(images, size, *sample_five_crop_flip(B, generator,
    images.device))``: with a generator seeded alike, :func:`sample_five_crop_flip` returns
    the positions and flips used here.

    Args:
        images: uint8 (B, C, H, W) on the training device.
        size: side of the square crops (90 for RAF-DB 100x100, 224 for AffectNet 256x256).
        generator: source of randomness (CPU or on the images' device); None uses the
            global RNG.

    Returns:
        uint8 (B, C, size, size) on the images' device.

    Raises:
        TypeError / ValueError: images not uint8 or not 4-D, a crop larger than the images.
    """
    where = "random_five_crop_flip"
    b, _, h, w = _check_images(images, where)
    _offsets(h, w, size, where)
    positions, flips = sample_five_crop_flip(b, generator, images.device)
    return _crop_flip(images, size, positions, flips)


def center_crop(images: Tensor, size: int) -> Tensor:
    """Test-time crop: the centre ``size x size`` of each image, top-left at
    ``((H - size) // 2, (W - size) // 2)``.

    Args:
        images: uint8 (B, C, H, W).
        size: side of the crop, <= min(H, W).

    Returns:
        uint8 (B, C, size, size), a view of ``images`` (no copy).
    """
    _, _, h, w = _check_images(images, "center_crop")
    top, left = _offsets(h, w, size, "center_crop")[0]
    return images[:, :, top : top + size, left : left + size]


def to_rgb(images: Tensor) -> Tensor:
    """Repeat single-channel (grey, e.g. FER2013) images to 3 channels; 3 channels unchanged.

    Use before :func:`normalize` with 3-channel statistics and before a 3-channel network.
    Any dtype; (B, 1, H, W) -> (B, 3, H, W) as a view (``expand``, no copy).
    """
    if not isinstance(images, Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"to_rgb: expected a batch of shape (B, C, H, W), got {got}")
    if images.shape[1] == 3:
        return images
    if images.shape[1] != 1:
        raise ValueError(
            f"to_rgb: expected 1 (grey) or 3 (RGB) channels, got {images.shape[1]} "
            f"(shape {tuple(images.shape)})"
        )
    return images.expand(-1, 3, -1, -1)


def _channel_stats(values: float | Sequence[float], channels: int, name: str) -> list[float]:
    stats = (
        [float(values)] * channels
        if isinstance(values, int | float)
        else [float(v) for v in values]
    )
    if len(stats) != channels:
        hint = "; repeat grey images to RGB with to_rgb first" if channels == 1 else ""
        raise ValueError(
            f"normalize: expected one {name} per channel ({channels}) or a single number, got "
            f"{len(stats)} values {tuple(stats)}{hint}"
        )
    return stats


def normalize(
    images: Tensor,
    mean: float | Sequence[float] = IMAGENET_MEAN,
    std: float | Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """Scale uint8 images to [0, 1] and standardise each channel: ``(x / 255 - mean) / std``.

    Args:
        images: uint8 (B, C, H, W).
        mean, std: per-channel statistics of [0, 1] pixel values (C numbers, or one number
            for all channels): :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD` (default, for
            ImageNet-initialised networks) or :data:`RAFDB_MEAN` / :data:`RAFDB_STD`. Grey
            (1-channel) images take one number each, or go through :func:`to_rgb` first.

    Returns:
        float32 (B, C, H, W) on the images' device.
    """
    _, c, _, _ = _check_images(images, "normalize")
    mean_list = _channel_stats(mean, c, "mean")
    std_list = _channel_stats(std, c, "std")
    if any(not s > 0 for s in std_list):
        raise ValueError(f"normalize: std must be > 0 for every channel, got {tuple(std_list)}")
    shape = (1, c, 1, 1)
    mean_t = torch.tensor(mean_list, dtype=torch.float32, device=images.device).view(shape)
    std_t = torch.tensor(std_list, dtype=torch.float32, device=images.device).view(shape)
    return images.to(torch.float32).div_(255.0).sub_(mean_t).div_(std_t)
