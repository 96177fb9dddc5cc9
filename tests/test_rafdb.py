"""RAF-DB: both layouts, robust discovery, clear errors, official counts and fingerprint.

Every fixture is a tiny RAF-DB written into ``tmp_path`` with PIL (12×10 JPEGs); each image
is a flat grey whose level identifies its file, so a test can check that ``dataset[i]``
returns the right image with the right label.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from ferlib.data.images import CorruptImageError, DatasetNotFoundError
from ferlib.data.rafdb import LABEL_FILE, RAFDB, RAFDB_CLASSES, RAFDB_COUNTS

# name in the label file -> official label 1..7 (every class in train, some in test)
TRAIN = {
    "train_00001.jpg": 5,
    "train_00002.jpg": 1,
    "train_00003.jpg": 4,
    "train_00004.jpg": 7,
    "train_00005.jpg": 2,
    "train_00006.jpg": 3,
    "train_00007.jpg": 6,
    "train_00008.jpg": 4,
}
TEST = {"test_0001.jpg": 7, "test_0002.jpg": 1, "test_0003.jpg": 4}
ENTRIES = {**TRAIN, **TEST}
LEVEL = {name: 10 + 15 * i for i, name in enumerate(ENTRIES)}  # grey level of each image
WIDTH, HEIGHT = 12, 10


def aligned(name: str) -> str:
    return name.replace(".jpg", "_aligned.jpg")


def write_jpeg(path: Path, level: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (WIDTH, HEIGHT), (level, level, level)).save(path, quality=95)


def write_labels(base: Path, entries: dict[str, int], final_newline: bool = True) -> Path:
    path = base / LABEL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(f"{name} {label}" for name, label in entries.items())
    path.write_text(text + ("\n" if final_newline else ""))
    return path


def make_official(base: Path, entries: dict[str, int] = ENTRIES, **kwargs: bool) -> Path:
    """``base`` becomes a ``basic/`` folder: label file and aligned images."""
    for name in entries:
        write_jpeg(base / "Image" / "aligned" / aligned(name), LEVEL.get(name, 128))
    write_labels(base, entries, **kwargs)
    return base


def make_reupload(base: Path, csv_in: str = "beside", csv_names: str = "aligned") -> Path:
    """``base/DATASET/{train,test}/{1..7}/`` and the two CSVs; returns ``base``."""
    dataset = base / "DATASET"
    for split, entries in (("train", TRAIN), ("test", TEST)):
        for name, label in entries.items():
            write_jpeg(dataset / split / str(label) / aligned(name), LEVEL[name])
        if csv_in == "none":
            continue
        rows = [f"{aligned(n) if csv_names == 'aligned' else n},{k}" for n, k in entries.items()]
        folder = base if csv_in == "beside" else dataset
        (folder / f"{split}_labels.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    return base


def labels_by_file(dataset: RAFDB) -> dict[str, int]:
    return {f.name: t for f, t in zip(dataset.files, dataset.targets, strict=True)}


def expected(entries: dict[str, int]) -> dict[str, int]:
    return {aligned(name): label - 1 for name, label in entries.items()}


# ----------------------------------------------------------------------------- official layout


def test_classes_and_official_counts_constants() -> None:
    assert list(RAFDB_CLASSES) == [
        "Surprise",
        "Fear",
        "Disgust",
        "Happiness",
        "Sadness",
        "Anger",
        "Neutral",
    ]
    assert sum(RAFDB_COUNTS["train"]) == 12_271 and sum(RAFDB_COUNTS["test"]) == 3_068
    assert RAFDB_COUNTS["train"][1] == 281  # Fear, a minority class


def test_official_layout_labels_splits_and_images(tmp_path: Path) -> None:
    basic = make_official(tmp_path / "basic")
    train = RAFDB(tmp_path, split="train")
    test = RAFDB(tmp_path, split="test")
    assert train.layout == "official" and train.data_dir == basic
    assert train.classes == list(RAFDB_CLASSES)
    # label k in the file is class k - 1: train_00001 is 5 (Sadness), train_00002 is 1
    assert labels_by_file(train) == expected(TRAIN)
    assert train.classes[labels_by_file(train)["train_00001_aligned.jpg"]] == "Sadness"
    assert labels_by_file(test) == expected(TEST)
    assert all(f.name.startswith("train_") for f in train.files)
    assert all(f.name.startswith("test_") for f in test.files)
    assert sorted(set(train.targets)) == list(range(7))
    for i, path in enumerate(train.files):
        image, label = train[i]
        assert image.shape == (3, HEIGHT, WIDTH) and image.dtype == torch.uint8
        assert isinstance(label, int) and label == train.targets[i]
        name = path.name.replace("_aligned", "")
        assert abs(image.float().mean().item() - LEVEL[name]) < 3  # the right file


def test_label_file_without_final_newline(tmp_path: Path) -> None:
    make_official(tmp_path / "basic", final_newline=False)
    test = RAFDB(tmp_path, split="test")
    assert labels_by_file(test)["test_0003_aligned.jpg"] == 3  # the last line, label 4


@pytest.mark.parametrize("level", ["basic", "parent", "grandparent"])
def test_root_at_three_levels(tmp_path: Path, level: str) -> None:
    basic = make_official(tmp_path / "data" / "RAF-DB" / "basic")
    root = {"basic": basic, "parent": basic.parent, "grandparent": basic.parent.parent}[level]
    dataset = RAFDB(root)
    assert dataset.data_dir == basic
    assert labels_by_file(dataset) == expected(TRAIN)


def test_default_root_is_data_root_raf_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_official(tmp_path / "RAF-DB" / "basic")
    monkeypatch.setenv("FERLIB_DATA", str(tmp_path))
    dataset = RAFDB(split="test")
    assert dataset.root == tmp_path / "RAF-DB"
    assert labels_by_file(dataset) == expected(TEST)


def test_nested_download_with_macos_junk(tmp_path: Path) -> None:
    inner = make_official(tmp_path / "basic" / "basic")
    # AppleDouble junk, shallower than the real label file: it must never be read
    junk = tmp_path / "__MACOSX" / "EmoLabel" / "list_patition_label.txt"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"\x00\x05\x16\x07 Mac OS X resource fork")
    (tmp_path / "._basic").write_bytes(b"\x00\x05\x16\x07")
    (inner / "EmoLabel" / "._list_patition_label.txt").write_bytes(b"\x00\x05\x16\x07")
    (inner / "Image" / "aligned" / "._train_00001_aligned.jpg").write_bytes(b"\x00\x05")
    dataset = RAFDB(tmp_path)
    assert dataset.data_dir == inner
    assert labels_by_file(dataset) == expected(TRAIN)
    assert not any(f.name.startswith("._") for f in dataset.files)
    assert dataset[0][0].shape == (3, HEIGHT, WIDTH)


def test_two_copies_at_the_same_depth_are_refused(tmp_path: Path) -> None:
    make_official(tmp_path / "basic")
    make_official(tmp_path / "basic_copy")
    with pytest.raises(ValueError, match="several copies") as info:
        RAFDB(tmp_path)
    assert str(tmp_path / "basic") in str(info.value)
    assert str(tmp_path / "basic_copy") in str(info.value)
    assert labels_by_file(RAFDB(tmp_path / "basic_copy")) == expected(TRAIN)


def test_invalid_split(tmp_path: Path) -> None:
    make_official(tmp_path / "basic")
    with pytest.raises(ValueError, match="'validation'"):
        RAFDB(tmp_path, split="validation")


def test_transform_is_applied(tmp_path: Path) -> None:
    make_official(tmp_path / "basic")
    dataset = RAFDB(tmp_path, split="test", transform=lambda x: x.float().div(255).flip(0))
    image, label = dataset[1]  # test_0002, label 1 -> 0
    assert image.dtype == torch.float32 and image.shape == (3, HEIGHT, WIDTH)
    assert image.max().item() <= 1.0
    assert abs(image.mean().item() * 255 - LEVEL["test_0002.jpg"]) < 3
    assert label == 0


# ----------------------------------------------------------------------------- re-upload layout


@pytest.mark.parametrize(
    ("csv_in", "csv_names", "at_dataset"),
    [
        ("beside", "aligned", False),
        ("beside", "aligned", True),  # root is DATASET/ itself, the CSV one level up
        ("inside", "plain", False),  # CSV inside DATASET/, names without _aligned
    ],
)
def test_reupload_layout(tmp_path: Path, csv_in: str, csv_names: str, at_dataset: bool) -> None:
    base = make_reupload(tmp_path / "RAF-DB", csv_in=csv_in, csv_names=csv_names)
    root = base / "DATASET" if at_dataset else tmp_path
    train = RAFDB(root, split="train")
    test = RAFDB(root, split="test")
    assert train.layout == "reupload" and train.data_dir == base / "DATASET"
    assert train.label_file is not None and train.label_file.name == "train_labels.csv"
    assert labels_by_file(train) == expected(TRAIN)
    assert labels_by_file(test) == expected(TEST)
    image, label = test[0]  # test_0001, label 7 -> 6 (Neutral), in folder 7
    assert image.shape == (3, HEIGHT, WIDTH) and image.dtype == torch.uint8
    assert label == 6 and test.files[0].parent.name == "7"
    assert abs(image.float().mean().item() - LEVEL["test_0001.jpg"]) < 3


def test_reupload_without_csv_uses_folder_numbers(tmp_path: Path) -> None:
    make_reupload(tmp_path, csv_in="none")
    dataset = RAFDB(tmp_path, split="train")
    assert dataset.label_file is None
    assert labels_by_file(dataset) == expected(TRAIN)


def test_reupload_image_missing_from_csv_is_ignored_with_warning(tmp_path: Path) -> None:
    make_reupload(tmp_path)
    write_jpeg(tmp_path / "DATASET" / "test" / "2" / "test_0099_aligned.jpg", 50)
    with pytest.warns(UserWarning, match="ignoring 1 image.*test_0099_aligned"):
        dataset = RAFDB(tmp_path, split="test")
    assert labels_by_file(dataset) == expected(TEST)


def test_reupload_folder_disagreeing_with_csv(tmp_path: Path) -> None:
    make_reupload(tmp_path)
    csv = tmp_path / "train_labels.csv"
    csv.write_text(
        csv.read_text().replace("train_00002_aligned.jpg,1", "train_00002_aligned.jpg,3")
    )
    with pytest.raises(ValueError) as info:
        RAFDB(tmp_path, split="train")
    message = str(info.value)
    assert "train_00002_aligned.jpg" in message and "folder 1" in message
    assert str(csv) in message and "line 3" in message


def test_reupload_csv_label_out_of_range(tmp_path: Path) -> None:
    make_reupload(tmp_path)
    csv = tmp_path / "test_labels.csv"
    csv.write_text(csv.read_text().replace("test_0002_aligned.jpg,1", "test_0002_aligned.jpg,0"))
    with pytest.raises(ValueError, match=r"label 0 out of range 1\.\.7") as info:
        RAFDB(tmp_path, split="test")
    assert str(csv) in str(info.value) and "line 3" in str(info.value)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("exists", [False, True])
def test_missing_root_names_path_and_how_to_get_it(tmp_path: Path, exists: bool) -> None:
    root = tmp_path / "nowhere" / "RAF-DB"
    if exists:
        (root / "something_else").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as info:
        RAFDB(root)
    message = str(info.value)
    assert str(root) in message
    assert "list_patition_label.txt" in message
    assert "licence" in message and "request" in message
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize(
    ("bad_line", "match"),
    [
        ("train_00003.jpg 8", r"label 8 out of range 1\.\.7"),
        ("train_00003.jpg 0", r"label 0 out of range 1\.\.7"),
        ("train_00003.jpg", "malformed"),
        ("train_00003.jpg four", "malformed"),
        ("val_00003.jpg 4", "train_ or test_"),
    ],
)
def test_bad_label_line_names_file_and_line(tmp_path: Path, bad_line: str, match: str) -> None:
    basic = make_official(tmp_path / "basic")
    label_file = basic / LABEL_FILE
    lines = label_file.read_text().splitlines()
    assert lines[2] == "train_00003.jpg 4"
    lines[2] = bad_line
    label_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=match) as info:
        RAFDB(tmp_path, split="test")  # the whole file is checked, whichever split
    assert str(label_file) in str(info.value) and "line 3" in str(info.value)


def test_missing_image_names_the_file(tmp_path: Path) -> None:
    basic = make_official(tmp_path / "basic")
    gone = basic / "Image" / "aligned" / "train_00004_aligned.jpg"
    gone.unlink()
    with pytest.raises(FileNotFoundError, match=r"train_00004_aligned\.jpg"):
        RAFDB(tmp_path)
    # built from the label file alone, the missing image fails when read
    lazy = RAFDB(tmp_path, check_files=False)
    index = lazy.files.index(gone)
    with pytest.raises(FileNotFoundError, match=r"train_00004_aligned\.jpg"):
        lazy[index]
    assert lazy[0][1] == 4  # the others still load (train_00001, label 5)


def test_unzipped_aligned_folder_missing(tmp_path: Path) -> None:
    basic = make_official(tmp_path / "basic")
    shutil.rmtree(basic / "Image" / "aligned")
    (basic / "Image" / "aligned.zip").write_bytes(b"PK")
    with pytest.raises(DatasetNotFoundError, match=r"unzip Image/aligned\.zip"):
        RAFDB(tmp_path)


def test_corrupt_image_error_or_skip(tmp_path: Path) -> None:
    basic = make_official(tmp_path / "basic")
    folder = basic / "Image" / "aligned"
    garbage = folder / "train_00002_aligned.jpg"
    garbage.write_bytes(b"this is not a jpeg")
    truncated = folder / "train_00006_aligned.jpg"
    noise = torch.randint(0, 256, (64, 64, 3), dtype=torch.uint8, generator=torch.Generator())
    Image.fromarray(noise.numpy()).save(truncated)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # header intact, scan data cut
    with Image.open(truncated) as image:
        image.verify()  # passes: only decoding finds the truncation

    dataset = RAFDB(tmp_path)  # cheap by default: corrupt files fail when read
    with pytest.raises(CorruptImageError, match=r"train_00002_aligned\.jpg") as info:
        dataset[dataset.files.index(garbage)]
    assert info.value.path == garbage
    with pytest.raises(CorruptImageError, match=r"train_00006_aligned\.jpg"):
        dataset[dataset.files.index(truncated)]

    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        skipping = RAFDB(tmp_path, skip_corrupt=True)
    assert skipping.skipped == [garbage, truncated]
    assert len(skipping) == len(TRAIN) - 2
    kept = {k: v for k, v in expected(TRAIN).items() if k not in (garbage.name, truncated.name)}
    assert labels_by_file(skipping) == kept
    for i in range(len(skipping)):
        assert skipping[i][0].shape == (3, HEIGHT, WIDTH)


# ----------------------------------------------------------------------------- fingerprint


def test_fingerprint_identifies_the_data_not_the_folder(tmp_path: Path) -> None:
    make_official(tmp_path / "a" / "basic")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    first = RAFDB(tmp_path / "a").fingerprint
    assert len(first) == 16 and int(first, 16) >= 0
    assert RAFDB(tmp_path / "b").fingerprint == first  # equal copy, other folder
    assert RAFDB(tmp_path / "a", split="test").fingerprint != first

    basic = tmp_path / "b" / "basic"
    label_file = basic / LABEL_FILE
    label_file.write_text(label_file.read_text().replace("train_00003.jpg 4", "train_00003.jpg 5"))
    relabelled = RAFDB(tmp_path / "b").fingerprint
    assert relabelled != first

    label_file.write_text(label_file.read_text().replace("train_00003.jpg 5", "train_00003.jpg 4"))
    assert RAFDB(tmp_path / "b").fingerprint == first  # back to equal

    image = basic / "Image" / "aligned" / "train_00001_aligned.jpg"
    size = image.stat().st_size
    with image.open("ab") as f:
        f.write(b"\0" * 10)  # e.g. a re-encoded or partly re-downloaded file
    assert image.stat().st_size == size + 10
    resized = RAFDB(tmp_path / "b").fingerprint
    assert resized != first

    write_jpeg(basic / "Image" / "aligned" / "train_00009_aligned.jpg", 77)
    with label_file.open("a") as f:
        f.write("train_00009.jpg 2\n")
    added = RAFDB(tmp_path / "b").fingerprint
    assert len({first, relabelled, resized, added}) == 4


def test_fingerprint_same_images_in_either_layout(tmp_path: Path) -> None:
    basic = make_official(tmp_path / "official" / "basic")
    for name, label in TRAIN.items():
        target = tmp_path / "reupload" / "DATASET" / "train" / str(label) / aligned(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(basic / "Image" / "aligned" / aligned(name), target)
    official = RAFDB(tmp_path / "official")
    reupload = RAFDB(tmp_path / "reupload")
    assert reupload.layout == "reupload"
    assert official.fingerprint == reupload.fingerprint


# ----------------------------------------------------------------------------- official counts


def full_label_file(base: Path, counts: dict[str, list[int]]) -> None:
    """A label file with ``counts[split][k]`` lines of label ``k + 1``, and no images."""
    entries = {}
    for split, digits in (("train", 5), ("test", 4)):
        number = 0
        for k, count in enumerate(counts[split]):
            for _ in range(count):
                number += 1
                entries[f"{split}_{number:0{digits}d}.jpg"] = k + 1
    write_labels(base, entries)


def test_official_counts_match_without_warning(tmp_path: Path) -> None:
    full_label_file(tmp_path / "basic", {s: list(c) for s, c in RAFDB_COUNTS.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train = RAFDB(tmp_path, check_files=False)  # the label file alone, no images
        test = RAFDB(tmp_path, split="test", check_files=False)
    assert len(train) == 12_271 and len(test) == 3_068
    assert train.count_differences() == {} and test.count_differences() == {}
    with pytest.raises(FileNotFoundError):
        RAFDB(tmp_path)  # checking files needs the images


def test_official_counts_differ_warns_per_class(tmp_path: Path) -> None:
    counts = {s: list(c) for s, c in RAFDB_COUNTS.items()}
    counts["train"][1] -= 1  # one Fear image labelled Disgust: same total
    counts["train"][2] += 1
    full_label_file(tmp_path / "basic", counts)
    with pytest.warns(UserWarning) as record:
        train = RAFDB(tmp_path, check_files=False)
    message = str(record[0].message)
    assert "Fear expected 281, found 280" in message
    assert "Disgust expected 717, found 718" in message
    assert "Happiness" not in message
    assert train.count_differences() == {"Fear": (281, 280), "Disgust": (717, 718)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert RAFDB(tmp_path, split="test", check_files=False).count_differences() == {}


def test_subset_is_not_warned_but_counted(tmp_path: Path) -> None:
    make_official(tmp_path / "basic")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        test = RAFDB(tmp_path, split="test")
    differences = test.count_differences()
    assert differences["Neutral"] == (680, 1) and differences["Fear"] == (74, 0)
    assert len(differences) == 7
