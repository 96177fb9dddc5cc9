"""Reading image files, with errors that say which file and what to do.

The one place the FER datasets decode images: a missing dataset names the folder that was
searched and how to get the data; a corrupt or unreadable image names its file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

__all__ = [
    "CorruptImageError",
    "DatasetNotFoundError",
    "describe",
    "missing_dataset",
    "read_image",
]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not where it was looked for; the message says where and how to get it."""


class CorruptImageError(ValueError):
    """An image file cannot be decoded; ``path`` is the file."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


def missing_dataset(name: str, root: Path, expected: str, how: str) -> DatasetNotFoundError:
    """The error for a dataset that is not under ``root``.

    Args:
        name: the dataset, e.g. ``"RAF-DB"``.
        root: the folder that was searched.
        expected: what should be there, e.g. ``"basic/EmoLabel/list_patition_label.txt"``.
        how: how to get the data (licence, download page, the layout to unpack).
    """
    return DatasetNotFoundError(
        f"{name} not found under {root}: expected {expected}. {how} Pass the folder that "
        "contains it as root, or set FERLIB_DATA."
    )


def read_image(path: str | Path, mode: str = "RGB") -> Tensor:
    """Decode an image file to a uint8 tensor ``(C, H, W)`` (C = 3 for RGB, 1 for "L").

    Raises:
        CorruptImageError: the file is missing, truncated or not an image; the message
            names the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert(mode))
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise CorruptImageError(
            f"cannot read image {path}: {type(err).__name__}: {err}. Re-extract or re-download "
            "this file, or leave unreadable images out and count them: skip_corrupt=True "
            "(RAFDB, AffectNet) or --skip-corrupt (python -m ferlib fer).",
            path,
        ) from err
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def describe(value: object) -> str:
    """What an error message says a value was: ``"float32 tensor of shape (2, 3)"``, or its
    type's name for anything that is not a tensor."""
    if isinstance(value, Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__
