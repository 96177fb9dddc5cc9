"""RAF-DB (basic emotions) as a map-style dataset of aligned 100×100 faces.

RAF-DB is granted on request by its authors (a licence agreement). Two layouts are read;
``root`` may be the dataset folder, a folder above it (searched at most
``MAX_SEARCH_DEPTH`` levels down), or a nested download (``basic/basic/...``). ``__MACOSX/``
folders, hidden folders and AppleDouble ``._*`` files are ignored.

* ``"official"``, the authors' ``basic.zip`` (note the official misspelling "patition")::

      basic/EmoLabel/list_patition_label.txt   # "train_00001.jpg 5", one per line
      basic/Image/aligned/train_00001_aligned.jpg

  One label file holds both splits: names starting ``train_`` and ``test_``.

* ``"reupload"``, the common re-upload (e.g. on Kaggle)::

      DATASET/train/5/train_00001_aligned.jpg  # DATASET/{train,test}/{1..7}/
      train_labels.csv                         # header "image,label", labels 1..7

  The CSV may lie beside ``DATASET/`` or inside it; its image names may carry the
  ``_aligned`` suffix or not. The labels come from the CSV, and the folder of each image
  must agree. Without a CSV the labels are the folder numbers.

Labels 1..7 become targets 0..6 in the official order (:data:`RAFDB_CLASSES`): Surprise,
Fear, Disgust, Happiness, Sadness, Anger, Neutral. (``ImageFolder`` happens to give the
same order on the re-upload, since folder ``1`` sorts first.)
"""

from __future__ import annotations

import csv
import hashlib
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ferlib.data.images import CorruptImageError, missing_dataset, read_image
from ferlib.data.root import default_data_root

__all__ = ["RAFDB", "RAFDB_CLASSES", "RAFDB_COUNTS"]

RAFDB_CLASSES: tuple[str, ...] = (
    "Surprise",
    "Fear",
    "Disgust",
    "Happiness",
    "Sadness",
    "Anger",
    "Neutral",
)
# Official per-class counts, in the order of RAFDB_CLASSES (12,271 train / 3,068 test).
# Read-only: build a new dict to change it.
RAFDB_COUNTS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "train": (1290, 281, 717, 4772, 1982, 705, 2524),
        "test": (329, 74, 160, 1185, 478, 162, 680),
    }
)
LABEL_FILE = "EmoLabel/list_patition_label.txt"  # sic
MAX_SEARCH_DEPTH = 4  # folders below root searched for the dataset

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_HOW = (
    "RAF-DB is granted on request by its authors, after signing their licence agreement "
    "(see the RAF-DB page, www.whdeng.cn/RAF/model1.html). Unzip basic.zip, then "
    "basic/Image/aligned.zip inside it, so that basic/EmoLabel/list_patition_label.txt and "
    "basic/Image/aligned/*_aligned.jpg exist; or use the re-upload layout "
    "DATASET/{train,test}/{1..7}/*_aligned.jpg with train_labels.csv / test_labels.csv."
)


def _ignored(name: str) -> bool:
    """macOS and hidden junk: ``__MACOSX``, AppleDouble ``._*`` files, ``.git`` and the like."""
    return name == "__MACOSX" or name.startswith(".")


def _subfolders(folder: Path) -> list[Path]:
    """Sub-folders worth searching, sorted; none if ``folder`` cannot be listed."""
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return []
    return [c for c in children if not _ignored(c.name) and c.is_dir()]


def _find(root: Path) -> tuple[str, Path]:
    """The shallowest dataset folder below ``root``: ``(layout, folder)``.

    ``folder`` holds ``EmoLabel/`` (official) or ``{train,test}/`` (re-upload, the
    ``DATASET`` folder). Breadth first, at most ``MAX_SEARCH_DEPTH`` levels down.
    """
    level = [root] if root.is_dir() else []
    for _ in range(MAX_SEARCH_DEPTH + 1):
        found: list[tuple[str, Path]] = []
        for folder in level:
            if (folder / LABEL_FILE).is_file():
                found.append(("official", folder))
            elif any((folder / "DATASET" / s).is_dir() for s in ("train", "test")):
                found.append(("reupload", folder / "DATASET"))
            elif folder.name == "DATASET" and any((folder / s).is_dir() for s in ("train", "test")):
                found.append(("reupload", folder))
        if len(found) > 1:
            raise ValueError(
                f"RAF-DB: several copies found under {root}: "
                f"{', '.join(str(f) for _, f in found)}. Pass the one to use as root."
            )
        if found:
            return found[0]
        level = [child for folder in level for child in _subfolders(folder)]
    raise missing_dataset(
        "RAF-DB", root, f"{LABEL_FILE} (at most {MAX_SEARCH_DEPTH} folders down)", _HOW
    )


def _read_label_file(path: Path, split: str) -> list[tuple[str, int]]:
    """``(image name, label 1..7)`` of the split's lines, in file order."""
    entries, seen = [], set()
    with path.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.split()
            where = f"{path}, line {number}: {line.strip()!r}"
            if len(parts) != 2 or not parts[1].isdigit():
                raise ValueError(f"RAF-DB: malformed line in {where}; expected 'name label'")
            name, label = parts[0], int(parts[1])
            if not 1 <= label <= 7:
                raise ValueError(f"RAF-DB: label {label} out of range 1..7 in {where}")
            if not name.startswith(("train_", "test_")):
                raise ValueError(f"RAF-DB: name must start with train_ or test_ in {where}")
            if name in seen:
                raise ValueError(f"RAF-DB: duplicate image name in {where}")
            seen.add(name)
            if name.startswith(f"{split}_"):
                entries.append((name, label))
    return entries


def _read_labels_csv(path: Path) -> list[tuple[str, int, int]]:
    """``(image name, label 1..7, line number)`` of a re-upload CSV (header ``image,label``)."""
    rows = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        if "image" not in header or "label" not in header:
            raise ValueError(f"RAF-DB: {path}, line 1: expected the header 'image,label'")
        i, j = header.index("image"), header.index("label")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path}, line {reader.line_num}: {','.join(row)!r}"
            if len(row) != len(header) or not row[j].strip().isdigit():
                raise ValueError(f"RAF-DB: malformed line in {where}; expected 'image,label'")
            label = int(row[j])
            if not 1 <= label <= 7:
                raise ValueError(f"RAF-DB: label {label} out of range 1..7 in {where}")
            rows.append((row[i].strip(), label, reader.line_num))
    return rows


def _aligned_name(name: str) -> str:
    """``train_00001.jpg`` -> ``train_00001_aligned.jpg`` (unchanged if already aligned)."""
    stem, suffix = os.path.splitext(name)
    return name if stem.endswith("_aligned") else f"{stem}_aligned{suffix}"


def _case_hint(wanted: Iterable[str], present: Iterable[str]) -> str:
    """A sentence naming a file of ``present`` that differs from one of ``wanted`` only in
    upper/lower case (a download unpacked on a case-insensitive disk, renamed by hand), or
    ``""`` when there is none."""
    folded = {name.casefold(): name for name in present}
    twins = {folded[name.casefold()]: name for name in wanted if name.casefold() in folded}
    if not twins:
        return ""
    other, name = next(iter(twins.items()))
    which = (
        f"{other} exists"
        if len(twins) == 1
        else f"{len(twins)} of them exist in another upper/lower case, e.g. {other}"
    )
    return (
        f" {which}, which differs from {name} only in upper/lower case: file names are "
        "case-sensitive here, so rename the files to the names listed."
    )


def _unreadable(path: Path) -> bool:
    """Whether PIL fails to decode ``path`` (header, verify, then a full decode)."""
    try:
        with Image.open(path) as image:
            image.verify()  # checks what the format allows (PNG checksums)...
        with Image.open(path) as image:
            image.load()  # ...and decoding catches truncated JPEGs: ≤ 0.6 ms per 100×100 face
    except Exception:  # PIL raises many types for broken files
        return True
    return False


class RAFDB(Dataset):
    """RAF-DB basic emotions: ``dataset[i]`` is ``(image, label)``.

    ``image`` is a uint8 tensor ``(3, H, W)`` (``(3, 100, 100)`` for the aligned faces), or
    ``transform(image)``; ``label`` is an int in 0..6 (:data:`RAFDB_CLASSES`).

    Args:
        root: the dataset, a folder above it or the ``basic/`` folder itself (see the
            module docstring); ``None`` means ``default_data_root() / "RAF-DB"``.
        split: ``"train"`` or ``"test"``.
        transform: applied to the uint8 image tensor.
        skip_corrupt: decode every image now (a few seconds for RAF-DB) and drop the
            unreadable ones (listed in ``skipped``, with a warning); otherwise a corrupt
            image raises :class:`CorruptImageError` when it is read.
        check_files: check now that every listed image exists (one directory listing).
            ``False`` builds the index from the label file alone (official layout), e.g. to
            inspect a label file's counts; a missing image then fails when it is read.

    Attributes:
        classes: the 7 class names; ``targets``: one label 0..6 per sample; ``files``: the
        image paths; ``split``; ``layout``: ``"official"`` or ``"reupload"``; ``skipped``:
        files dropped as corrupt; ``data_dir``: the folder found; ``label_file``: the label
        file or CSV read (``None`` for a re-upload without CSV).

    Raises:
        DatasetNotFoundError: no RAF-DB under ``root``.
        ValueError: a malformed or out-of-range label line (names file and line), or a
            re-upload image whose folder disagrees with its CSV label.
        FileNotFoundError: a listed image is missing.

    When the split has the official number of entries (12,271 / 3,068), per-class counts
    that differ from :data:`RAFDB_COUNTS` are warned about; see :meth:`count_differences`.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        transform: Callable[[Tensor], Any] | None = None,
        skip_corrupt: bool = False,
        *,
        check_files: bool = True,
    ) -> None:
        if split not in RAFDB_COUNTS:
            raise ValueError(f"RAFDB: split must be 'train' or 'test', got {split!r}")
        if skip_corrupt and not check_files:
            raise ValueError("RAFDB: skip_corrupt=True reads every image; keep check_files=True")
        self.root = Path(root) if root is not None else default_data_root() / "RAF-DB"
        self.split = split
        self.transform = transform
        self.classes = list(RAFDB_CLASSES)
        self.layout, self.data_dir = _find(self.root)
        self.label_file: Path | None = None
        if self.layout == "official":
            self.label_file = self.data_dir / LABEL_FILE
            self.files, labels = self._official(check_files)
        else:
            self.files, labels = self._reupload()
        self.targets = [label - 1 for label in labels]
        listed = len(self.files)
        self.skipped: list[Path] = []
        if skip_corrupt:
            self._skip_corrupt()
        if listed == sum(RAFDB_COUNTS[split]) and (differences := self.count_differences()):
            warnings.warn(
                f"RAF-DB {split}: per-class counts differ from the official ones: "
                + "; ".join(f"{c} expected {e}, found {n}" for c, (e, n) in differences.items())
                + f". Check {self.label_file or self.data_dir}.",
                stacklevel=2,
            )

    def _official(self, check_files: bool) -> tuple[list[Path], list[int]]:
        assert self.label_file is not None
        entries = _read_label_file(self.label_file, self.split)
        if not entries:
            raise ValueError(f"RAF-DB: no {self.split}_ lines in {self.label_file}")
        aligned = self.data_dir / "Image" / "aligned"
        files = [aligned / _aligned_name(name) for name, _ in entries]
        if check_files:
            if not aligned.is_dir():
                zipped = aligned.with_suffix(".zip").is_file()
                hint = " (unzip Image/aligned.zip there)" if zipped else ""
                raise missing_dataset(
                    "RAF-DB", self.data_dir, f"Image/aligned/*_aligned.jpg{hint}", _HOW
                )
            present = set(os.listdir(aligned))
            missing = [f for f in files if f.name not in present]
            if missing:
                case = _case_hint([f.name for f in missing], present)
                raise FileNotFoundError(
                    f"RAF-DB: {len(missing)} image(s) listed in {self.label_file} are missing, "
                    f"e.g. {missing[0]}." + (case or " Re-extract Image/aligned.zip.")
                )
        return files, [label for _, label in entries]

    def _reupload(self) -> tuple[list[Path], list[int]]:
        split_dir = self.data_dir / self.split
        if not split_dir.is_dir():
            raise missing_dataset("RAF-DB", self.data_dir, f"{self.split}/{{1..7}}/", _HOW)
        folder_of: dict[str, tuple[Path, int]] = {}  # image name -> (path, folder label)
        for label in range(1, 8):
            folder = split_dir / str(label)
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                if _ignored(path.name) or path.suffix.lower() not in _IMAGE_SUFFIXES:
                    continue
                if path.name in folder_of:
                    raise ValueError(
                        f"RAF-DB: {path.name} is in two folders: {folder_of[path.name][0]} "
                        f"and {path}"
                    )
                folder_of[path.name] = (path, label)
        csvs = [d / f"{self.split}_labels.csv" for d in (self.data_dir, self.data_dir.parent)]
        self.label_file = next((c for c in csvs if c.is_file()), None)
        if self.label_file is None:  # no CSV: the folder numbers are the labels
            if not folder_of:
                raise missing_dataset(
                    "RAF-DB", split_dir, "images in folders 1..7 or a labels CSV", _HOW
                )
            return [p for p, _ in folder_of.values()], [k for _, k in folder_of.values()]
        files, labels = [], []
        for name, label, line in _read_labels_csv(self.label_file):
            key = name if name in folder_of else _aligned_name(name)
            if key not in folder_of:
                case = _case_hint([name, _aligned_name(name)], folder_of)
                raise FileNotFoundError(
                    f"RAF-DB: image {name} listed in {self.label_file}, line {line}, is "
                    f"missing from {split_dir}/{{1..7}}/." + case
                )
            path, folder_label = folder_of.pop(key)
            if folder_label != label:
                raise ValueError(
                    f"RAF-DB: {path} is in folder {folder_label} but {self.label_file}, line "
                    f"{line}, labels it {label}"
                )
            files.append(path)
            labels.append(label)
        if folder_of:
            warnings.warn(
                f"RAF-DB {self.split}: ignoring {len(folder_of)} image(s) not listed in "
                f"{self.label_file}, e.g. {next(iter(folder_of.values()))[0]}",
                stacklevel=3,
            )
        return files, labels

    def _skip_corrupt(self) -> None:
        keep = [i for i, f in enumerate(self.files) if not _unreadable(f)]
        if len(keep) < len(self.files):
            kept = set(keep)
            self.skipped = [f for i, f in enumerate(self.files) if i not in kept]
            self.files = [self.files[i] for i in keep]
            self.targets = [self.targets[i] for i in keep]
            warnings.warn(
                f"RAF-DB {self.split}: skipped {len(self.skipped)} unreadable image(s), e.g. "
                f"{self.skipped[0]} (listed in .skipped)",
                stacklevel=3,
            )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path = self.files[index]
        try:
            image = read_image(path)  # (3, H, W) uint8
        except CorruptImageError as err:
            if not path.exists():
                raise FileNotFoundError(f"RAF-DB: image {path} is missing") from err
            raise
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]

    def count_differences(self) -> dict[str, tuple[int, int]]:
        """Classes whose count differs from the official one: ``{name: (expected, found)}``.

        Empty when every class matches :data:`RAFDB_COUNTS` for this split.
        """
        found = Counter(self.targets)
        return {
            name: (expected, found[k])
            for k, (name, expected) in enumerate(
                zip(RAFDB_CLASSES, RAFDB_COUNTS[self.split], strict=True)
            )
            if found[k] != expected
        }

    @property
    def fingerprint(self) -> str:
        """16 hex digits identifying the data: split, file names, labels and file sizes.

        Hashes the sorted ``(file name, label, size in bytes)`` of every sample, so adding,
        removing or relabelling an image, or a file changing size, changes it, while the
        folder the data lives in (and its layout) does not. Stats every file on each call
        (tens of milliseconds for RAF-DB), so it describes the files as they are now.
        """
        digest = hashlib.sha256(f"rafdb-v1|{self.split};".encode())
        for name, label, size in sorted(
            (f.name, t, f.stat().st_size) for f, t in zip(self.files, self.targets, strict=True)
        ):
            digest.update(f"{name}|{label}|{size};".encode())
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return (
            f"RAFDB(split={self.split!r}, layout={self.layout!r}, samples={len(self)}, "
            f"data_dir={str(self.data_dir)!r})"
        )
