"""AffectNet on tiny fixtures in both releases' layouts: codes, boxes, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ferlib.data.affectnet import AFFECTNET_CSV_COLUMNS, AffectNet
from ferlib.data.images import CorruptImageError, DatasetNotFoundError

LANDMARKS = ";".join(["1.0"] * 136)

# (file, x, y, width, height, code): three kept for 7 classes, Contempt, codes 8 and 10,
# and two invalid boxes.
ROWS = [
    ("101/a.jpg", 2, 1, 10, 8, 0),
    ("101/b.jpg", 0, 0, 12, 12, 7),
    ("102/c.jpg", 0, 0, 12, 12, 8),
    ("102/d.jpg", 0, 0, 12, 12, 10),
    ("102/e.jpg", 0, 0, -3, 12, 3),
    ("103/f.jpg", -5, 0, 12, 12, 1),
    ("103/g.jpg", 1, 1, 10, 10, 6),
    ("103/h.jpg", 0, 0, 16, 12, 3),
]
COLORS = {"a": (200, 30, 30), "g": (30, 200, 30), "h": (30, 30, 200), "b": (90, 90, 90)}


def _jpeg(path: Path, color: tuple[int, int, int] = (128, 128, 128), size=(20, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG", quality=95)


def _csv_release(
    root: Path,
    rows=ROWS,
    header: bool = True,
    csv_name: str = "training.csv",
    csv_dir: str = "",
    image_parent: str = "",
) -> Path:
    images = root / image_parent / "Manually_Annotated_Images"
    for name, *_ in rows:
        _jpeg(images / name, COLORS.get(Path(name).stem, (128, 128, 128)))
    lines = [",".join(AFFECTNET_CSV_COLUMNS)] if header else []
    for name, x, y, w, h, code in rows:
        lines.append(f"{name},{x},{y},{w},{h},{LANDMARKS},{code},0.1,-0.2")
    path = root / csv_dir / csv_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return images


def _names(dataset: AffectNet) -> list[str]:
    return [p.name for p in dataset.files]


@pytest.mark.parametrize("header", [True, False])
def test_csv_release_seven_classes_drops_and_counts(tmp_path: Path, header: bool) -> None:
    images = _csv_release(tmp_path, header=header)
    ds = AffectNet(tmp_path, split="train", num_classes=7)
    assert ds.release == "csv" and ds.split == "train" and len(ds) == 3
    assert _names(ds) == ["a.jpg", "g.jpg", "h.jpg"]
    assert ds.targets == [0, 6, 3]
    assert ds.files[0] == images / "101" / "a.jpg"
    assert ds.dropped == {"code >= 7": 3, "invalid face box": 2}
    assert ds.classes == ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger"]
    assert ds.boxes is not None
    assert ds.boxes.tolist() == [[2, 1, 10, 8], [1, 1, 10, 10], [0, 0, 16, 12]]


def test_csv_release_eight_classes_keeps_contempt(tmp_path: Path) -> None:
    _csv_release(tmp_path)
    ds = AffectNet(tmp_path, num_classes=8)
    assert _names(ds) == ["a.jpg", "b.jpg", "g.jpg", "h.jpg"]
    assert ds.targets == [0, 7, 6, 3]
    assert ds.dropped == {"code >= 8": 2, "invalid face box": 2}
    assert ds.classes[7] == "Contempt" and len(ds.classes) == 8


def test_headerless_validation_csv(tmp_path: Path) -> None:
    rows = [("7/x.jpg", 0, 0, 10, 10, 5), ("7/y.jpg", 0, 0, 10, 10, 9), ("8/z.jpg", 3, 3, 5, 5, 4)]
    _csv_release(tmp_path, rows=rows, header=False, csv_name="validation.csv")
    ds = AffectNet(tmp_path, split="val")
    assert _names(ds) == ["x.jpg", "z.jpg"] and ds.targets == [5, 4]
    assert ds.dropped == {"code >= 7": 1}
    with pytest.raises(DatasetNotFoundError, match=r"training\.csv"):
        AffectNet(tmp_path, split="train")  # only the validation list is there


def test_archive_folders_nested_one_extra_level(tmp_path: Path) -> None:
    # The official archives unpack to Manually_Annotated/Manually_Annotated_Images and
    # Manually_Annotated_file_lists/training.csv; here inside one more folder.
    _csv_release(
        tmp_path,
        csv_dir="AffectNet/Manually_Annotated_file_lists",
        image_parent="AffectNet/Manually_Annotated",
    )
    ds = AffectNet(tmp_path)
    assert ds.targets == [0, 6, 3]
    assert ds.files[1] == (
        tmp_path / "AffectNet/Manually_Annotated/Manually_Annotated_Images/103/g.jpg"
    )


def test_getitem_returns_whole_image_label_and_transform(tmp_path: Path) -> None:
    _csv_release(tmp_path)
    ds = AffectNet(tmp_path)
    i = _names(ds).index("g.jpg")
    image, label = ds[i]
    assert label == 6 and isinstance(label, int)
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 20)  # the whole image
    assert image.float().mean(dim=(1, 2)).tolist() == pytest.approx([30, 200, 30], abs=4)
    ds.transform = lambda x: x.float() / 255
    scaled, _ = ds[i]
    assert scaled.dtype == torch.float32 and scaled.max() <= 1.0


def test_crop_face_crops_the_box(tmp_path: Path) -> None:
    _csv_release(tmp_path)
    ds = AffectNet(tmp_path, crop_face=True)
    image, label = ds[0]  # a.jpg, box x=2 y=1 w=10 h=8
    assert label == 0 and image.shape == (3, 8, 10)


def test_npy_release_codes_as_strings_and_ints(tmp_path: Path) -> None:
    split = tmp_path / "train_set"
    codes = {
        0: np.array("3"),  # 0-d string array
        2: np.int64(1),  # numpy scalar
        10: np.array([7]),  # one-element array: Contempt
        11: np.array("10"),  # No-Face
        12: np.array(6.0),
    }
    for n in [*codes, 13]:
        _jpeg(split / "images" / f"{n}.jpg")
    (split / "annotations").mkdir()
    for n, value in codes.items():
        np.save(split / "annotations" / f"{n}_exp.npy", value)
        np.save(split / "annotations" / f"{n}_val.npy", np.array("0.5"))
    # 13.jpg has no annotation
    ds = AffectNet(tmp_path)
    assert ds.release == "npy" and ds.boxes is None
    assert _names(ds) == ["0.jpg", "2.jpg", "12.jpg"]  # numeric order
    assert ds.targets == [3, 1, 6]
    assert ds.dropped == {"code >= 7": 2, "missing annotation": 1}
    ds8 = AffectNet(tmp_path, num_classes=8)
    assert dict(zip(_names(ds8), ds8.targets, strict=True)) == {
        "0.jpg": 3,
        "2.jpg": 1,
        "10.jpg": 7,
        "12.jpg": 6,
    }
    image, label = ds8[_names(ds8).index("10.jpg")]
    assert label == 7 and image.shape == (3, 16, 20)
    with pytest.raises(DatasetNotFoundError, match="val_set"):
        AffectNet(tmp_path, split="val")


def test_npy_bad_code_names_the_file(tmp_path: Path) -> None:
    split = tmp_path / "AffectNet" / "val_set"  # one extra folder level
    _jpeg(split / "images" / "5.jpg")
    (split / "annotations").mkdir()
    np.save(split / "annotations" / "5_exp.npy", np.array("happy"))
    with pytest.raises(ValueError, match=r"5_exp\.npy.*'happy'"):
        AffectNet(tmp_path, split="val")


def test_missing_root_names_path_and_how(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as info:
        AffectNet(missing)
    message = str(info.value)
    assert str(missing) in message and "granted on request" in message
    assert "Manually_Annotated_Images" in message and "train_set" in message


def test_default_root_is_data_root_affectnet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERLIB_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(tmp_path / "AffectNet"))):
        AffectNet()
    _csv_release(tmp_path / "AffectNet")
    assert AffectNet().targets == [0, 6, 3]


def test_csv_without_images_folder_says_what_was_found(tmp_path: Path) -> None:
    (tmp_path / "training.csv").write_text("101/a.jpg,0,0,5,5,,1,0,0\n")
    with pytest.raises(DatasetNotFoundError, match="no Manually_Annotated_Images"):
        AffectNet(tmp_path)


@pytest.mark.parametrize(("code", "match"), [("11", "outside"), ("happy", "not an integer")])
def test_bad_code_names_file_and_line(tmp_path: Path, code: str, match: str) -> None:
    _csv_release(tmp_path)
    path = tmp_path / "training.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(f",{LANDMARKS},8,", f",{LANDMARKS},{code},")  # c.jpg
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"training\.csv, line 4: .*{match}"):
        AffectNet(tmp_path)


def test_short_row_names_file_and_line(tmp_path: Path) -> None:
    _csv_release(tmp_path)
    path = tmp_path / "training.csv"
    path.write_text(path.read_text() + "104/z.jpg,1,2\n")
    with pytest.raises(ValueError, match=r"training\.csv, line 10: .*got 3 fields"):
        AffectNet(tmp_path)


def test_corrupt_image_named_or_skipped(tmp_path: Path) -> None:
    images = _csv_release(tmp_path)
    bad = images / "103" / "g.jpg"
    bad.write_bytes(b"not a jpeg at all")
    ds = AffectNet(tmp_path)  # nothing decoded at construction
    assert _names(ds) == ["a.jpg", "g.jpg", "h.jpg"]
    with pytest.raises(CorruptImageError) as info:
        ds[1]
    assert info.value.path == bad and str(bad) in str(info.value)
    assert ds[2][1] == 3  # the others still load

    kept = AffectNet(tmp_path, skip_corrupt=True)
    assert kept.skipped == 1 and kept.skipped_files == [bad]
    assert _names(kept) == ["a.jpg", "h.jpg"] and kept.targets == [0, 3]
    assert kept.boxes is not None and kept.boxes.tolist() == [[2, 1, 10, 8], [0, 0, 16, 12]]
    assert kept.dropped == {"code >= 7": 3, "invalid face box": 2}
    assert [kept[i][1] for i in range(len(kept))] == [0, 3]


def test_fingerprint_stable_and_sensitive(tmp_path: Path) -> None:
    _csv_release(tmp_path)
    first = AffectNet(tmp_path).fingerprint
    assert len(first) == 16 and int(first, 16) >= 0
    assert AffectNet(tmp_path).fingerprint == first
    assert AffectNet(tmp_path, num_classes=8).fingerprint != first
    path = tmp_path / "training.csv"
    path.write_text(path.read_text().replace(f",{LANDMARKS},6,", f",{LANDMARKS},5,"))
    relabelled = AffectNet(tmp_path)
    assert relabelled.targets == [0, 5, 3] and relabelled.fingerprint != first
    path.write_text(path.read_text().replace(f",{LANDMARKS},5,", f",{LANDMARKS},6,"))
    assert AffectNet(tmp_path).fingerprint == first
    _jpeg(tmp_path / "Manually_Annotated_Images" / "103" / "h.jpg", size=(40, 30))
    assert AffectNet(tmp_path).fingerprint != first  # a file of another size


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        AffectNet(tmp_path, split="test")
    with pytest.raises(ValueError, match="num_classes"):
        AffectNet(tmp_path, num_classes=10)
