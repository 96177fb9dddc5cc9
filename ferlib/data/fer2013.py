"""FER2013 (Goodfellow et al., 2013) with its own labels or the FER+ relabelling, in memory.

FER2013 is public: Kaggle's "Challenges in Representation Learning: Facial Expression
Recognition Challenge" ships ``fer2013.tar.gz`` (``fer2013/fer2013.csv``) and
``icml_face_data.csv`` (the same rows). Either file is found in ``root`` or one folder below
it (default ``default_data_root() / "FER2013"``). Each of its 35,887 rows holds a label
(``emotion``), a 48×48 grey image as 2,304 space-separated values (``pixels``) and a split
(``Usage``: ``Training`` → ``"train"``, ``PublicTest`` → ``"val"``, ``PrivateTest`` →
``"test"``).

FER+ (Barsoum et al., 2016; https://github.com/microsoft/FERPlus) relabels the same images
with ten annotators' votes in ``fer2013new.csv``, one row per row of ``fer2013.csv``, in the
same order.
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ferlib.data.images import missing_dataset
from ferlib.data.root import default_data_root

__all__ = ["FER2013", "FER2013_CLASSES", "FERPLUS_CLASSES", "FERPLUS_VOTE_COLUMNS"]

FER2013_CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
"""FER2013's classes, index = the ``emotion`` code."""

FERPLUS_VOTE_COLUMNS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
"""The vote columns of ``fer2013new.csv``, in file order (NF: not a face)."""

FERPLUS_CLASSES = (
    "Neutral",
    "Happiness",
    "Surprise",
    "Sadness",
    "Anger",
    "Disgust",
    "Fear",
    "Contempt",
)
"""FER+'s classes: its eight emotion columns in file order."""

SIDE = 48
"""Images are SIDE × SIDE grey pixels."""

_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
_FER_FILES = ("fer2013.csv", "icml_face_data.csv")
_FERPLUS_FILE = "fer2013new.csv"
_HOW_FER = (
    "FER2013 is public: download it from Kaggle's \"Challenges in Representation Learning: "
    'Facial Expression Recognition Challenge" '
    "(https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-"
    "recognition-challenge/data; needs a Kaggle login) and unpack fer2013.tar.gz there."
)
_HOW_FERPLUS = (
    "FER+ labels are public: take fer2013new.csv from Microsoft's FERPlus repository "
    "(https://github.com/microsoft/FERPlus) and put it beside fer2013.csv, or pass "
    "labels='fer2013' to use FER2013's own labels."
)


class FER2013(Dataset):
    """One split of FER2013, decoded once into memory: ``images`` uint8 ``(N, 1, 48, 48)``.

    Labels come from ``fer2013.csv`` (``labels="fer2013"``: 7 classes, :data:`FER2013_CLASSES`)
    or from FER+ (``labels="ferplus"``: 8 classes, :data:`FERPLUS_CLASSES`);
    ``labels="auto"`` uses FER+ when ``fer2013new.csv`` is found, FER2013's labels otherwise.
    ``fer2013new.csv`` is looked for beside ``fer2013.csv``, then in ``root``, then in
    ``root``'s immediate subfolders (e.g. a clone of the FERPlus repository).

    FER+ majority rule: an image's label is the column with the most votes among all ten
    (the eight emotions, ``unknown`` and ``NF``). Its row is dropped, and counted in
    ``dropped`` under the first reason that applies, when its image name is empty
    (``"unnamed"``), when two or more columns share the top vote, including rows without
    votes (``"tied vote"``), or when the top column is ``unknown`` (``"majority unknown"``) or
    ``NF`` (``"majority not a face"``). FER+'s own scripts instead remove single votes first;
    this rule keeps every vote and refuses ties.

    Only the rows of ``split`` are decoded: a malformed pixel row in another split is not
    noticed. Every row's FER2013 label and ``Usage`` are checked.

    Args:
        root: folder holding ``fer2013.csv`` (or ``icml_face_data.csv``), directly or one
            folder down; or that file itself. ``None`` means ``default_data_root() / "FER2013"``.
        split: ``"train"`` (Training), ``"val"`` (PublicTest) or ``"test"`` (PrivateTest).
        transform: applied to the uint8 image tensor ``(1, 48, 48)``.
        labels: ``"auto"``, ``"fer2013"`` or ``"ferplus"``.

    Attributes:
        images: uint8 ``(N, 1, 48, 48)``.
        targets: int64 ``(N,)``, labels in ``[0, len(classes))``.
        rows: ``list[int]``, each sample's data row in the CSV (0 = the row after the header).
        votes: int64 ``(N, 10)`` FER+ votes of the kept rows (columns
            :data:`FERPLUS_VOTE_COLUMNS`), or ``None`` with FER2013's labels.
        classes: class names, index = label.
        label_source: ``"fer2013"`` or ``"ferplus"``.
        dropped: ``dict[str, int]``, rows of this split left out, by reason (FER+ only).
        split: the split.
        csv_file, ferplus_file: the files read (``ferplus_file`` is ``None`` without FER+).

    Raises:
        DatasetNotFoundError: ``fer2013.csv`` (or, with ``labels="ferplus"``,
            ``fer2013new.csv``) is missing; the message names where it was looked for.
        ValueError: a malformed row (a label outside 0..6, a pixel row without 2,304 values
            in 0..255, an unknown Usage, a bad vote); the message names the file and line.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        transform: Callable[[Tensor], Any] | None = None,
        labels: str = "auto",
    ) -> None:
        if split not in _USAGE.values():
            raise ValueError(f"FER2013: split must be 'train', 'val' or 'test', got {split!r}")
        if labels not in ("auto", "fer2013", "ferplus"):
            raise ValueError(
                f"FER2013: labels must be 'auto', 'fer2013' or 'ferplus', got {labels!r}"
            )
        self.root = Path(root) if root is not None else default_data_root() / "FER2013"
        self.split = split
        self.transform = transform
        self._fingerprint: str | None = None

        self.csv_file = _find_fer2013(self.root)
        ferplus = _find_ferplus(self.root, self.csv_file) if labels != "fer2013" else None
        if labels == "ferplus" and ferplus is None:
            raise missing_dataset(
                "FER+ labels",
                self.csv_file.parent,
                f"{_FERPLUS_FILE} beside {self.csv_file.name} (also looked in {self.root} "
                "and its subfolders)",
                _HOW_FERPLUS,
            )
        self.ferplus_file = ferplus
        self.label_source = "ferplus" if ferplus is not None else "fer2013"

        fer_labels, usages, pixel_rows = _read_fer2013(self.csv_file, split)
        rows = [i for i, usage in enumerate(usages) if usage == split]
        dropped: Counter[str] = Counter()
        if ferplus is not None:
            self.classes = list(FERPLUS_CLASSES)
            kept, votes, targets = _ferplus_labels(ferplus, self.csv_file, usages, split, dropped)
            keep = set(kept)
            rows_kept = [r for r in rows if r in keep]
            pixel_rows = [p for r, p in zip(rows, pixel_rows, strict=True) if r in keep]
            rows = rows_kept
            self.votes: Tensor | None = torch.tensor(votes, dtype=torch.int64).reshape(-1, 10)
        else:
            self.classes = list(FER2013_CLASSES)
            targets = [fer_labels[r] for r in rows]
            self.votes = None
        self.rows = rows
        self.dropped = dict(dropped)
        self.targets = torch.tensor(targets, dtype=torch.int64)
        self.images = _decode(self.csv_file, pixel_rows)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """``(image, label)``: a uint8 ``(1, 48, 48)`` copy, or ``transform(image)``."""
        image = self.images[index].clone()
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    @property
    def fingerprint(self) -> str:
        """Identity of the set, 16 hex digits: a SHA-256 of every pixel, every label, the
        label source and the split (about 0.1 s for the training set), cached."""
        if self._fingerprint is None:
            digest = hashlib.sha256(f"fer2013|{self.label_source}|{self.split};".encode())
            digest.update(self.targets.numpy().astype("<i8").tobytes())
            digest.update(self.images.contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def __repr__(self) -> str:
        return (
            f"FER2013(split={self.split!r}, labels={self.label_source!r}, images={len(self)}, "
            f"dropped={self.dropped}, csv_file={str(self.csv_file)!r})"
        )


# ----------------------------------------------------------------------------- finding the files


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(
            p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))
        )
    except OSError:
        return []


def _find_fer2013(root: Path) -> Path:
    if root.is_file():
        return root
    for folder in [root, *_subfolders(root)]:
        for name in _FER_FILES:
            if (folder / name).is_file():
                return folder / name
    gone = "" if root.is_dir() else ", but the folder does not exist"
    raise missing_dataset(
        "FER2013",
        root,
        f"fer2013.csv (or icml_face_data.csv) in it or one folder below it{gone}",
        f"{_HOW_FER} FER+ labels (optional) are fer2013new.csv from Microsoft's FERPlus "
        "repository (https://github.com/microsoft/FERPlus), put beside fer2013.csv.",
    )


def _find_ferplus(root: Path, csv_file: Path) -> Path | None:
    folders = [csv_file.parent]
    if root.is_dir():
        folders += [root, *_subfolders(root)]
    for folder in folders:
        if (folder / _FERPLUS_FILE).is_file():
            return folder / _FERPLUS_FILE
    return None


# ----------------------------------------------------------------------------- parsing


def _columns(header: list[str], wanted: tuple[str, ...], path: Path) -> dict[str, int]:
    """Column index by name (case and spaces ignored); a missing column names the file."""
    by_name = {name.strip().lower(): i for i, name in enumerate(header)}
    missing = [w for w in wanted if w.lower() not in by_name]
    if missing:
        raise ValueError(
            f"{path}, line 1: the header {header!r} lacks the column(s) {', '.join(missing)}"
        )
    return {w: by_name[w.lower()] for w in wanted}


def _split_line(line: str) -> list[str]:
    """Fields of one CSV line: a plain split (3x faster than :mod:`csv` on 8 kB rows),
    :mod:`csv` only for a line with quotes."""
    line = line.rstrip("\r\n")
    return next(csv.reader([line])) if '"' in line else line.split(",")


def _read_fer2013(path: Path, split: str) -> tuple[list[int], list[str], list[tuple[int, str]]]:
    """Every data row's label and split, and ``(line, pixels)`` of the rows in ``split``."""
    labels: list[int] = []
    usages: list[str] = []
    pixel_rows: list[tuple[int, str]] = []
    with open(path, encoding="utf-8-sig") as handle:
        header = _split_line(handle.readline())
        if header == [""]:
            raise ValueError(f"{path} is empty; expected the header emotion,pixels,Usage")
        col = _columns(header, ("emotion", "pixels", "Usage"), path)
        i_emotion, i_pixels, i_usage = col["emotion"], col["pixels"], col["Usage"]
        need = max(col.values())
        for number, line in enumerate(handle, start=2):
            row = _split_line(line)
            if row == [""]:
                continue
            if len(row) <= need:
                raise ValueError(
                    f"{path}, line {number}: expected {len(header)} fields, got {len(row)}"
                )
            try:
                label = int(row[i_emotion])
            except ValueError:
                raise ValueError(
                    f"{path}, line {number}: label {row[i_emotion]!r} is not an integer"
                ) from None
            if not 0 <= label < len(FER2013_CLASSES):
                raise ValueError(
                    f"{path}, line {number}: label {label} is outside 0..{len(FER2013_CLASSES) - 1}"
                )
            usage = _USAGE.get(row[i_usage].strip())
            if usage is None:
                raise ValueError(
                    f"{path}, line {number}: Usage {row[i_usage]!r} is not one of "
                    f"{', '.join(_USAGE)}"
                )
            labels.append(label)
            usages.append(usage)
            if usage == split:
                pixel_rows.append((number, row[i_pixels]))
    return labels, usages, pixel_rows


def _decode(path: Path, pixel_rows: list[tuple[int, str]]) -> Tensor:
    """uint8 ``(N, 1, 48, 48)`` from ``(line, "v v v ...")`` rows of 2,304 values each."""
    out = np.empty((len(pixel_rows), SIDE * SIDE), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # older numpy only warns on junk
        for i, (line, text) in enumerate(pixel_rows):
            try:
                values = np.fromstring(text, dtype=np.int32, sep=" ")  # ~50 µs a row
            except (ValueError, DeprecationWarning):
                values = None
            if values is None or values.size != SIDE * SIDE:
                raise ValueError(
                    f"{path}, line {line}: expected {SIDE * SIDE} space-separated integer "
                    f"pixel values (a {SIDE}x{SIDE} image), got {len(text.split())} values"
                    + (", not all of them integers" if values is None else "")
                )
            if values.min() < 0 or values.max() > 255:
                raise ValueError(
                    f"{path}, line {line}: pixel values must lie in 0..255, got "
                    f"[{values.min()}, {values.max()}]"
                )
            out[i] = values
    return torch.from_numpy(out).reshape(-1, 1, SIDE, SIDE)


def _ferplus_labels(
    path: Path, fer_path: Path, usages: list[str], split: str, dropped: Counter[str]
) -> tuple[list[int], list[list[int]], list[int]]:
    """Rows of ``split`` kept by the majority rule, their votes and their labels."""
    kept: list[int] = []
    votes: list[list[int]] = []
    targets: list[int] = []
    unknown, not_face = len(FERPLUS_CLASSES), len(FERPLUS_CLASSES) + 1
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty; expected the FER+ header")
        col = _columns(header, ("Usage", "Image name", *FERPLUS_VOTE_COLUMNS), path)
        need = max(col.values())
        index = -1
        for row in reader:
            if not row:
                continue
            index += 1
            where = f"{path}, line {reader.line_num}"
            if index >= len(usages):
                break  # reported below, with the counts
            if usages[index] != split:
                continue
            if len(row) <= need:
                raise ValueError(f"{where}: expected {len(header)} fields, got {len(row)}")
            usage = row[col["Usage"]].strip()
            if usage and _USAGE.get(usage) != split:
                raise ValueError(
                    f"{where}: Usage {usage!r} disagrees with row {index + 1} of {fer_path} "
                    f"({split}); the two files must list the same images in the same order"
                )
            try:
                row_votes = [int(float(row[col[c]])) for c in FERPLUS_VOTE_COLUMNS]
            except ValueError:
                raise ValueError(f"{where}: the votes are not all numbers") from None
            if min(row_votes) < 0:
                raise ValueError(f"{where}: a vote count is negative")
            top = max(row_votes)
            best = row_votes.index(top)
            if not row[col["Image name"]].strip():
                dropped["unnamed"] += 1
            elif row_votes.count(top) > 1:
                dropped["tied vote"] += 1
            elif best == unknown:
                dropped["majority unknown"] += 1
            elif best == not_face:
                dropped["majority not a face"] += 1
            else:
                kept.append(index)
                votes.append(row_votes)
                targets.append(best)
        rows = index + 1 + sum(1 for row in reader if row)
    if rows != len(usages):
        raise ValueError(
            f"{path} has {rows} rows but {fer_path} has {len(usages)}: FER+ labels must list "
            "the same images in the same order (take both files unmodified)"
        )
    return kept, votes, targets
