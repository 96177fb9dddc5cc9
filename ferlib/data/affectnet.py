"""AffectNet (Mollahosseini et al., 2017) as a map-style dataset, either release.

AffectNet is granted on request to researchers; it may not be redistributed. Two layouts
are accepted under ``root`` (default ``default_data_root() / "AffectNet"``):

* the original CSV release: a folder ``Manually_Annotated_Images/<dir>/<file>.jpg`` and the
  lists ``training.csv`` (split ``"train"``) / ``validation.csv`` (split ``"val"``), with the
  columns ``subDirectory_filePath, face_x, face_y, face_width, face_height,
  facial_landmarks, expression, valence, arousal``, with or without a header line;
* the newer release: ``train_set/`` / ``val_set/``, each holding ``images/<n>.jpg`` and
  ``annotations/<n>_exp.npy`` (one expression code per image).

Each piece (the images folder, the CSV, the ``*_set`` folder) may lie up to
:data:`SEARCH_DEPTH` folder levels below ``root``, so the archives' own folders
(``Manually_Annotated/``, ``Manually_Annotated_file_lists/``) and one extra level
(``AffectNet/AffectNet/...``) are found; the search never enters an image folder. When both
releases are present the CSV release is used.

Expression codes: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger,
7 Contempt, 8 None, 9 Uncertain, 10 No-Face. Seven-class work keeps 0..6, eight-class work
0..7; the label of a kept image is its code.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ferlib.data.images import CorruptImageError, missing_dataset, read_image
from ferlib.data.root import default_data_root

__all__ = [
    "AFFECTNET_CLASSES",
    "AFFECTNET_CSV_COLUMNS",
    "AffectNet",
]

AFFECTNET_CLASSES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
"""Class names in code order; seven-class work uses the first seven."""

AFFECTNET_CSV_COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
"""Columns of ``training.csv`` / ``validation.csv``, in file order (used when no header)."""

SEARCH_DEPTH = 3
"""How many folder levels below ``root`` the layout's pieces are looked for."""

FINGERPRINT_STAT_LIMIT = 50_000
"""Up to this many images the fingerprint includes every file's size (one ``stat`` each)."""

_MAX_CODE = 10  # No-Face, the largest code AffectNet uses
_CSV_FILES = {"train": "training.csv", "val": "validation.csv"}
_NPY_DIRS = {"train": "train_set", "val": "val_set"}
_IMAGE_DIR = "Manually_Annotated_Images"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_NO_DESCENT = {_IMAGE_DIR, "images", "annotations"}  # folders of images: never searched
_MAX_FOLDERS = 5_000  # the search gives up after this many folders
_HOW = (
    "AffectNet is granted on request to researchers (http://mohammadmahoor.com/affectnet/) "
    "and may not be redistributed. Unpack either the original release "
    "(Manually_Annotated_Images/ with training.csv and validation.csv) or the newer one "
    "(train_set/ and val_set/, each with images/ and annotations/)."
)


class AffectNet(Dataset):
    """AffectNet's training or validation set; the validation set is the usual test set.

    Only the annotations are read at construction: no image is decoded (or even opened)
    unless ``skip_corrupt=True``; ``dataset[i]`` decodes ``files[i]``. The 280,000-row
    ``training.csv`` takes a few seconds; the newer release's one ``*_exp.npy`` per image
    takes about 20 s for 280,000 files on a local disk (longer on a network drive).

    Rows are dropped, and counted in ``dropped`` by reason, when their expression code is
    ``>= num_classes`` (key ``"code >= 7"`` or ``"code >= 8"``), when their face box is invalid
    (``"invalid face box"``: width or height ``<= 0``, or x or y negative; CSV release only),
    or when an image has no ``*_exp.npy`` (``"missing annotation"``; newer release only). A
    row is counted under the first reason that applies, in that order.

    Args:
        root: folder holding one of the layouts above; ``None`` means
            ``default_data_root() / "AffectNet"``.
        split: ``"train"`` or ``"val"``.
        num_classes: 7 (codes 0..6) or 8 (codes 0..7, adds Contempt).
        transform: applied to the uint8 image tensor ``(3, H, W)``.
        skip_corrupt: decode every image at construction (slow: all of them) and leave out
            those that cannot be read, listing them in ``skipped_files``; otherwise a
            corrupt image raises :class:`~ferlib.data.images.CorruptImageError` when read.
        crop_face: crop the face box (clamped to the image) before ``transform``; CSV release
            only (the newer release's images are already face crops).

    Attributes:
        classes: class names, index = label.
        targets: ``list[int]``, the label of each image.
        files: ``list[Path]``, the image of each sample.
        boxes: ``(N, 4)`` int64 face boxes ``(x, y, width, height)`` in pixels (CSV release),
            or ``None`` (newer release: the images are face crops).
        dropped: ``dict[str, int]``, annotation rows left out, by reason.
        skipped: number of corrupt images left out (``skip_corrupt=True``).
        skipped_files: those images.
        release: ``"csv"`` (original) or ``"npy"`` (newer).
        split: ``"train"`` or ``"val"``.
        annotations: the CSV or the folder of ``*_exp.npy`` files that was read.
        image_root: the folder the image names in :attr:`fingerprint` are relative to.

    Raises:
        DatasetNotFoundError: no layout under ``root``; the message names the folder.
        ValueError: a malformed annotation (a bad field, a code outside 0..10); the message
            names the file and, for the CSV, the line.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        num_classes: int = 7,
        transform: Callable[[Tensor], Any] | None = None,
        skip_corrupt: bool = False,
        crop_face: bool = False,
    ) -> None:
        if split not in _CSV_FILES:
            raise ValueError(f"AffectNet: split must be 'train' or 'val', got {split!r}")
        if num_classes not in (7, 8):
            raise ValueError(f"AffectNet: num_classes must be 7 or 8, got {num_classes!r}")
        self.root = Path(root) if root is not None else default_data_root() / "AffectNet"
        self.split = split
        self.num_classes = num_classes
        self.transform = transform
        self.crop_face = crop_face
        self.classes: list[str] = list(AFFECTNET_CLASSES[:num_classes])
        self.dropped: dict[str, int] = {}
        self.skipped_files: list[Path] = []
        self.boxes: Tensor | None = None
        self._fingerprint: str | None = None

        release, annotations, image_root = _locate(self.root, split)
        self.release = release
        self.annotations = annotations
        self.image_root = image_root
        dropped: Counter[str] = Counter()
        if release == "csv":
            self.files, self.targets, boxes = _read_csv(
                annotations, image_root, num_classes, dropped
            )
            self.boxes = torch.tensor(boxes, dtype=torch.int64).reshape(-1, 4)
        else:
            self.files, self.targets = _read_npy(annotations, image_root, num_classes, dropped)
        self.dropped = dict(dropped)
        if crop_face and self.boxes is None:
            raise ValueError(
                f"AffectNet: crop_face=True needs face boxes, which only the CSV release has; "
                f"the {release} release under {self.root} holds face crops already"
            )
        if skip_corrupt:
            self._skip_corrupt()

    @property
    def skipped(self) -> int:
        """Number of corrupt images left out at construction (``skip_corrupt=True``)."""
        return len(self.skipped_files)

    def _skip_corrupt(self) -> None:
        keep = []
        for i, path in enumerate(self.files):
            try:
                read_image(path)
            except CorruptImageError:
                self.skipped_files.append(path)
            else:
                keep.append(i)
        if self.skipped_files:
            self.files = [self.files[i] for i in keep]
            self.targets = [self.targets[i] for i in keep]
            if self.boxes is not None:
                self.boxes = self.boxes[torch.tensor(keep, dtype=torch.int64)].reshape(-1, 4)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """``(image, label)``: uint8 ``(3, H, W)`` (the whole image, or the face with
        ``crop_face``), or ``transform(image)``; the label an int in ``[0, num_classes)``."""
        image = read_image(self.files[index], "RGB")
        if self.crop_face and self.boxes is not None:
            x, y, w, h = self.boxes[index].tolist()
            image = image[:, y : y + h, x : x + w]
            if image.numel() == 0:
                raise ValueError(
                    f"AffectNet: the face box {(x, y, w, h)} of {self.files[index]} lies "
                    "outside the image"
                )
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]

    @property
    def fingerprint(self) -> str:
        """A short identity of the set (16 hex digits), computed once and cached.

        Hashes the release, the class count and the sorted ``(file name relative to
        image_root, label)`` pairs; up to :data:`FINGERPRINT_STAT_LIMIT` images it also
        hashes each file's size, which costs one ``stat`` per file (a fraction of a second
        for a few thousand local files, minutes for 280,000 on a network drive). Larger sets
        (AffectNet's training set) are fingerprinted from names and labels only, so a
        replaced image of the same name goes unnoticed there.
        """
        if self._fingerprint is None:
            with_sizes = len(self.files) <= FINGERPRINT_STAT_LIMIT
            entries = []
            for path, label in zip(self.files, self.targets, strict=True):
                name = path.relative_to(self.image_root).as_posix()
                size = _size(path) if with_sizes else -1
                entries.append(f"{name}\t{label}\t{size}")
            digest = hashlib.sha256(
                f"affectnet|{self.release}|{self.num_classes}|{with_sizes}\n".encode()
            )
            digest.update("\n".join(sorted(entries)).encode())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def __repr__(self) -> str:
        return (
            f"AffectNet(split={self.split!r}, release={self.release!r}, "
            f"num_classes={self.num_classes}, images={len(self)}, dropped={self.dropped}, "
            f"skipped={self.skipped}, root={str(self.root)!r})"
        )


# ----------------------------------------------------------------------------- finding the layout


def _folders(root: Path) -> Iterator[Path]:
    """Folders under ``root`` breadth first, ``root`` included, at most SEARCH_DEPTH levels
    down; skips hidden and ``__MACOSX`` folders and never enters a folder of images."""
    queue: deque[tuple[Path, int]] = deque([(root, 0)])
    seen = 0
    while queue and seen < _MAX_FOLDERS:
        folder, depth = queue.popleft()
        seen += 1
        yield folder
        if depth == SEARCH_DEPTH or folder.name in _NO_DESCENT:
            continue
        try:
            children = sorted(
                Path(entry.path)
                for entry in os.scandir(folder)
                if entry.is_dir() and not entry.name.startswith((".", "__MACOSX"))
            )
        except OSError:
            continue
        queue.extend((child, depth + 1) for child in children)


def _locate(root: Path, split: str) -> tuple[str, Path, Path]:
    """``(release, annotations, image folder)`` for ``split`` under ``root``."""
    if not root.is_dir():
        raise missing_dataset(
            "AffectNet", root, f"{_expected(split)}, but the folder does not exist", _HOW
        )
    csv_file = image_dir = npy_dir = None
    for folder in _folders(root):
        if csv_file is None and (folder / _CSV_FILES[split]).is_file():
            csv_file = folder / _CSV_FILES[split]
        if image_dir is None and folder.name == _IMAGE_DIR:
            image_dir = folder
        if (
            npy_dir is None
            and folder.name == _NPY_DIRS[split]
            and (folder / "images").is_dir()
            and (folder / "annotations").is_dir()
        ):
            npy_dir = folder
    if csv_file is not None and image_dir is not None:
        return "csv", csv_file, image_dir
    if npy_dir is not None:
        return "npy", npy_dir / "annotations", npy_dir / "images"
    found = ""
    if csv_file is not None:
        found = f"; found {csv_file} but no {_IMAGE_DIR}/ folder"
    elif image_dir is not None:
        found = f"; found {image_dir} but no {_CSV_FILES[split]}"
    raise missing_dataset(
        "AffectNet",
        root,
        f"{_expected(split)}, up to {SEARCH_DEPTH} folder levels down{found}",
        _HOW,
    )


def _expected(split: str) -> str:
    return (
        f"{_IMAGE_DIR}/ with {_CSV_FILES[split]} (original release), or "
        f"{_NPY_DIRS[split]}/images/ with {_NPY_DIRS[split]}/annotations/*_exp.npy (newer "
        "release)"
    )


# ----------------------------------------------------------------------------- reading annotations


def _parse_code(text: str, where: str) -> int:
    """An expression code 0..10 from text such as ``"3"`` or ``"3.0"``."""
    text = text.strip()
    try:
        code = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value.is_integer():
            raise ValueError(f"{where}: expression code {text!r} is not an integer") from None
        code = int(value)
    if not 0 <= code <= _MAX_CODE:
        raise ValueError(f"{where}: expression code {code} is outside AffectNet's 0..{_MAX_CODE}")
    return code


def _read_csv(
    path: Path, image_dir: Path, num_classes: int, dropped: Counter[str]
) -> tuple[list[Path], list[int], list[tuple[int, int, int, int]]]:
    """Files, labels and face boxes of the kept rows of ``training.csv`` / ``validation.csv``;
    the first line is a header when its first field is ``subDirectory_filePath``."""
    files: list[Path] = []
    targets: list[int] = []
    boxes: list[tuple[int, int, int, int]] = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        columns = {name: i for i, name in enumerate(AFFECTNET_CSV_COLUMNS)}
        first = True
        for row in reader:
            if not row or all(not field.strip() for field in row):
                continue
            where = f"{path}, line {reader.line_num}"
            if first:
                first = False
                if row[0].strip().lower() == AFFECTNET_CSV_COLUMNS[0].lower():
                    columns = _header_columns(row, where)
                    continue
            need = max(columns[c] for c in AFFECTNET_CSV_COLUMNS if c in columns)
            if len(row) <= need:
                raise ValueError(
                    f"{where}: expected the {len(AFFECTNET_CSV_COLUMNS)} AffectNet columns "
                    f"({', '.join(AFFECTNET_CSV_COLUMNS)}), got {len(row)} fields"
                )
            code = _parse_code(row[columns["expression"]], where)
            try:
                x, y, w, h = (
                    float(row[columns[c]])
                    for c in ("face_x", "face_y", "face_width", "face_height")
                )
            except ValueError:
                raise ValueError(f"{where}: the face box fields are not numbers") from None
            if code >= num_classes:
                dropped[f"code >= {num_classes}"] += 1
                continue
            if not (w > 0 and h > 0 and x >= 0 and y >= 0):  # also rejects NaN
                dropped["invalid face box"] += 1
                continue
            name = row[columns["subDirectory_filePath"]].strip().replace("\\", "/")
            name = name.removeprefix(f"{_IMAGE_DIR}/")
            files.append(image_dir / name)
            targets.append(code)
            boxes.append((int(x), int(y), int(w), int(h)))
    return files, targets, boxes


def _header_columns(row: list[str], where: str) -> dict[str, int]:
    by_name = {name.strip().lower(): i for i, name in enumerate(row)}
    required = (*AFFECTNET_CSV_COLUMNS[:5], "expression")
    missing = [c for c in required if c.lower() not in by_name]
    if missing:
        raise ValueError(f"{where}: the header lacks the column(s) {', '.join(missing)}")
    return {c: by_name[c.lower()] for c in AFFECTNET_CSV_COLUMNS if c.lower() in by_name}


def _read_npy(
    annotations: Path, image_dir: Path, num_classes: int, dropped: Counter[str]
) -> tuple[list[Path], list[int]]:
    """Files and labels of the newer release: one ``<n>_exp.npy`` per image ``<n>.jpg``
    (a scalar or one-element array, number or string); images sorted by number."""
    names = [
        entry.name
        for entry in os.scandir(image_dir)
        if entry.name.lower().endswith(_IMAGE_SUFFIXES) and not entry.name.startswith(".")
    ]
    names.sort(key=_numeric_order)
    files: list[Path] = []
    targets: list[int] = []
    for name in names:
        stem = name.rsplit(".", 1)[0]
        npy = annotations / f"{stem}_exp.npy"
        try:
            value = np.load(npy, allow_pickle=False)
        except FileNotFoundError:
            dropped["missing annotation"] += 1
            continue
        except (OSError, ValueError) as err:
            raise ValueError(
                f"{npy}: cannot read the expression code ({type(err).__name__}: {err}); "
                "expected a .npy file holding one number or numeric string"
            ) from err
        if value.size != 1:
            raise ValueError(f"{npy}: expected one expression code, got shape {value.shape}")
        item = value.reshape(-1)[0]
        text = item.decode() if isinstance(item, bytes) else str(item)
        code = _parse_code(text, str(npy))
        if code >= num_classes:
            dropped[f"code >= {num_classes}"] += 1
            continue
        files.append(image_dir / name)
        targets.append(code)
    return files, targets


def _numeric_order(name: str) -> tuple[int, int, str]:
    """Sort key: ``2.jpg`` before ``10.jpg``; names that are not numbers after those."""
    stem = name.rsplit(".", 1)[0]
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1  # a missing file still fingerprints (and fails clearly when read)
