"""FER2013 and FER+ labels on tiny CSV fixtures: splits, pixels, majority votes, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ferlib.data.fer2013 import FER2013, FER2013_CLASSES, FERPLUS_CLASSES, FERPLUS_VOTE_COLUMNS
from ferlib.data.images import DatasetNotFoundError

# (emotion, Usage) of each data row; row i's image is _pattern(i).
ROWS = [
    (3, "Training"),
    (0, "PublicTest"),
    (6, "Training"),
    (5, "PrivateTest"),
    (1, "Training"),
    (4, "PublicTest"),
]


def _pattern(i: int) -> np.ndarray:
    """A 48x48 uint8 image that differs per row and uses the full 0..255 range."""
    return ((np.arange(48 * 48) * (i + 1) + 7 * i) % 256).astype(np.uint8).reshape(48, 48)


def _write_fer(path: Path, rows=ROWS, header: str = "emotion,pixels,Usage") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [header]
    for i, (emotion, usage) in enumerate(rows):
        pixels = " ".join(str(v) for v in _pattern(i).ravel())
        lines.append(f"{emotion},{pixels},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


# FER+ votes per data row: neutral happiness surprise sadness anger disgust fear contempt
# unknown NF, with the image name (empty = unnamed).
FERPLUS = [
    ("fer0000000.png", [0, 8, 1, 0, 0, 0, 0, 0, 1, 0]),  # train: happiness -> 1
    ("fer0000001.png", [1, 0, 0, 0, 0, 0, 0, 0, 9, 0]),  # val: unknown majority
    ("fer0000002.png", [4, 0, 0, 4, 0, 0, 0, 2, 0, 0]),  # train: tie neutral/sadness
    ("fer0000003.png", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),  # test: not a face
    ("", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),  # train: unnamed
    ("fer0000005.png", [0, 0, 0, 0, 2, 0, 0, 7, 1, 0]),  # val: contempt -> 7
]


def _write_ferplus(path: Path, rows=FERPLUS) -> Path:
    lines = ["Usage,Image name," + ",".join(FERPLUS_VOTE_COLUMNS)]
    for (_, usage), (name, votes) in zip(ROWS, rows, strict=False):
        lines.append(f"{usage},{name}," + ",".join(map(str, votes)))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_split_mapping_and_fer2013_labels(tmp_path: Path) -> None:
    _write_fer(tmp_path / "fer2013.csv")
    train = FER2013(tmp_path, split="train")
    val = FER2013(tmp_path, split="val")
    test = FER2013(tmp_path, split="test")
    assert (train.rows, val.rows, test.rows) == ([0, 2, 4], [1, 5], [3])
    assert train.targets.tolist() == [3, 6, 1] and train.targets.dtype == torch.int64
    assert val.targets.tolist() == [0, 4] and test.targets.tolist() == [5]
    assert train.label_source == "fer2013" and train.classes == list(FER2013_CLASSES)
    assert train.classes[6] == "Neutral" and train.dropped == {} and train.votes is None


def test_pixels_decode_exactly(tmp_path: Path) -> None:
    _write_fer(tmp_path / "fer2013.csv")
    val = FER2013(tmp_path, split="val")
    assert val.images.shape == (2, 1, 48, 48) and val.images.dtype == torch.uint8
    for k, row in enumerate(val.rows):
        assert torch.equal(val.images[k, 0], torch.from_numpy(_pattern(row)))
    image, label = val[1]
    assert label == 4 and isinstance(label, int)
    assert image.shape == (1, 48, 48) and image.dtype == torch.uint8
    assert torch.equal(image[0], torch.from_numpy(_pattern(5)))
    image.zero_()  # a copy: the dataset keeps its pixels
    assert torch.equal(val.images[1, 0], torch.from_numpy(_pattern(5)))


def test_transform_is_applied(tmp_path: Path) -> None:
    _write_fer(tmp_path / "fer2013.csv")
    ds = FER2013(tmp_path, split="test", transform=lambda x: x.float().div(255).flip(-1))
    image, label = ds[0]
    assert label == 5 and image.dtype == torch.float32
    expected = torch.from_numpy(_pattern(3)).float().div(255).flip(-1)
    assert torch.equal(image[0], expected)


def test_ferplus_majority_labels_and_drops(tmp_path: Path) -> None:
    _write_fer(tmp_path / "fer2013.csv")
    _write_ferplus(tmp_path / "fer2013new.csv")
    train = FER2013(tmp_path, split="train", labels="ferplus")
    assert train.label_source == "ferplus" and train.classes == list(FERPLUS_CLASSES)
    assert train.rows == [0] and train.targets.tolist() == [1]  # happiness
    assert train.dropped == {"tied vote": 1, "unnamed": 1}
    assert torch.equal(train.images[0, 0], torch.from_numpy(_pattern(0)))
    assert train.votes is not None and train.votes.tolist() == [FERPLUS[0][1]]

    val = FER2013(tmp_path, split="val", labels="ferplus")
    assert val.rows == [5] and val.targets.tolist() == [7]  # contempt
    assert val.dropped == {"majority unknown": 1}
    assert torch.equal(val.images[0, 0], torch.from_numpy(_pattern(5)))

    test = FER2013(tmp_path, split="test", labels="ferplus")
    assert len(test) == 0 and test.images.shape == (0, 1, 48, 48)
    assert test.dropped == {"majority not a face": 1}


def test_a_ferplus_row_without_votes_is_dropped(tmp_path: Path) -> None:
    """No annotator voted: every column ties at 0, and the row has no label to keep (taking
    the first column would call it Neutral)."""
    _write_fer(tmp_path / "fer2013.csv")
    rows = list(FERPLUS)
    rows[2] = ("fer0000002.png", [0] * 10)  # a train row, named, without a single vote
    _write_ferplus(tmp_path / "fer2013new.csv", rows)
    train = FER2013(tmp_path, split="train", labels="ferplus")
    assert 2 not in train.rows and train.rows == [0]
    assert train.dropped == {"tied vote": 1, "unnamed": 1}
    assert train.votes is not None and train.votes.sum(1).min() > 0


def test_auto_labels_pick_ferplus_only_when_present(tmp_path: Path) -> None:
    _write_fer(tmp_path / "fer2013.csv")
    assert FER2013(tmp_path, split="val").label_source == "fer2013"
    _write_ferplus(tmp_path / "fer2013new.csv")
    auto = FER2013(tmp_path, split="val")
    assert auto.label_source == "ferplus" and auto.targets.tolist() == [7]
    own = FER2013(tmp_path, split="val", labels="fer2013")
    assert own.label_source == "fer2013" and own.targets.tolist() == [0, 4]
    assert auto.fingerprint != own.fingerprint


def test_nested_kaggle_folder_and_icml_columns(tmp_path: Path) -> None:
    _write_fer(tmp_path / "fer2013" / "fer2013.csv")  # as fer2013.tar.gz unpacks
    assert FER2013(tmp_path, split="train").targets.tolist() == [3, 6, 1]
    other = tmp_path / "icml"
    # icml_face_data.csv: same rows, other column order, spaces in the header
    other.mkdir()
    lines = ["emotion, Usage, pixels"]
    for i, (emotion, usage) in enumerate(ROWS):
        lines.append(f"{emotion},{usage}," + " ".join(map(str, _pattern(i).ravel())))
    (other / "icml_face_data.csv").write_text("\n".join(lines) + "\n")
    ds = FER2013(other, split="test")
    assert ds.targets.tolist() == [5] and torch.equal(
        ds.images[0, 0], torch.from_numpy(_pattern(3))
    )


def test_ferplus_in_a_ferplus_clone_folder(tmp_path: Path) -> None:
    _write_fer(tmp_path / "fer2013.csv")
    (tmp_path / "FERPlus").mkdir()
    _write_ferplus(tmp_path / "FERPlus" / "fer2013new.csv")
    assert FER2013(tmp_path, split="train").label_source == "ferplus"


def test_malformed_pixel_row_names_file_and_line(tmp_path: Path) -> None:
    path = _write_fer(tmp_path / "fer2013.csv")
    lines = path.read_text().splitlines()
    emotion, pixels, usage = lines[3].split(",")  # data row 2 (Training)
    lines[3] = ",".join([emotion, pixels.rsplit(" ", 1)[0], usage])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"fer2013\.csv, line 4: expected 2304 .*got 2303"):
        FER2013(tmp_path, split="train")
    assert len(FER2013(tmp_path, split="val")) == 2  # only the split's rows are decoded
    lines[3] = ",".join([emotion, pixels.replace("7", "x", 1), usage])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 4: .*not all of them integers"):
        FER2013(tmp_path, split="train")
    lines[3] = ",".join([emotion, pixels.rsplit(" ", 1)[0] + " 256", usage])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 4: pixel values must lie in 0\.\.255"):
        FER2013(tmp_path, split="train")


@pytest.mark.parametrize(
    ("emotion", "usage", "match"),
    [("7", "Training", "label 7 is outside 0..6"), ("3", "Train", "Usage 'Train'")],
)
def test_bad_label_or_usage_names_file_and_line(
    tmp_path: Path, emotion: str, usage: str, match: str
) -> None:
    path = _write_fer(tmp_path / "fer2013.csv")
    lines = path.read_text().splitlines()
    _, pixels, _ = lines[6].split(",")
    lines[6] = ",".join([emotion, pixels, usage])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"fer2013\.csv, line 7: {match}"):
        FER2013(tmp_path, split="val")  # checked whatever the split


def test_missing_files_name_path_and_sources(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        FER2013(tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "fer2013.csv" in message
    assert "Kaggle" in message and "Facial Expression Recognition Challenge" in message
    assert "FERPlus" in message
    _write_fer(tmp_path / "fer2013.csv")
    with pytest.raises(DatasetNotFoundError, match=r"fer2013new\.csv.*microsoft/FERPlus"):
        FER2013(tmp_path, labels="ferplus")


def test_default_root_is_data_root_fer2013(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERLIB_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(tmp_path / "FER2013"))):
        FER2013()
    _write_fer(tmp_path / "FER2013" / "fer2013.csv")
    assert FER2013(split="test").targets.tolist() == [5]


def test_ferplus_misaligned_files_are_refused(tmp_path: Path) -> None:
    _write_fer(tmp_path / "fer2013.csv")
    _write_ferplus(tmp_path / "fer2013new.csv", rows=FERPLUS[:-1])
    with pytest.raises(ValueError, match=r"has 5 rows but .*fer2013\.csv has 6"):
        FER2013(tmp_path, split="train")
    path = _write_ferplus(tmp_path / "fer2013new.csv")
    lines = path.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]  # Usage column now disagrees with fer2013.csv
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="disagrees with row 1"):
        FER2013(tmp_path, split="train")


def test_fingerprint_sees_pixels_and_labels(tmp_path: Path) -> None:
    path = _write_fer(tmp_path / "fer2013.csv")
    first = FER2013(tmp_path).fingerprint
    assert len(first) == 16 and FER2013(tmp_path).fingerprint == first
    text = path.read_text()
    path.write_text(text.replace("\n6,", "\n2,", 1))  # a label
    assert FER2013(tmp_path).fingerprint != first
    lines = text.splitlines()
    emotion, pixels, usage = lines[1].split(",")
    assert pixels.startswith("0 ")
    lines[1] = ",".join([emotion, "1" + pixels[1:], usage])
    path.write_text("\n".join(lines) + "\n")  # one pixel
    assert FER2013(tmp_path).fingerprint != first


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        FER2013(tmp_path, split="training")
    with pytest.raises(ValueError, match="labels"):
        FER2013(tmp_path, labels="fer+")
