"""The synthetic RAF-DB stand-in: RAF-DB's layout and imbalance, determinism, reuse, the CLI,
and that its faces are learnable but not trivially (minority classes harder)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from ferlib.cli import main
from ferlib.data.loaders import TensorLoader
from ferlib.data.rafdb import RAFDB_CLASSES, RAFDB_COUNTS
from ferlib.data.synthetic import StandinExistsError, make_standin, standin_counts
from ferlib.training import TrainConfig, seed_everything, train

LABELS = Path("basic/EmoLabel/list_patition_label.txt")
ALIGNED = Path("basic/Image/aligned")
SMALL = {"scale": 0.02, "size": 32, "progress": False}


def _read_labels(root: Path) -> list[tuple[str, int]]:
    text = (root / LABELS).read_text()
    return [(name, int(code)) for name, code in (line.split(" ") for line in text.split("\n"))]


def _pixels(root: Path) -> dict[str, np.ndarray]:
    """Every aligned image of a stand-in, decoded with PIL: name -> (H, W, 3) uint8."""
    out = {}
    for path in sorted((root / ALIGNED).iterdir()):
        with Image.open(path) as image:
            out[path.name] = np.asarray(image.convert("RGB"))
    return out


def _load_split(root: Path, split: str) -> tuple[Tensor, Tensor]:
    """Images (N, 3, H, W) float, normalised, and labels (N,) 0..6, read with PIL."""
    items = [(n, k) for n, k in _read_labels(root) if n.startswith(split + "_")]
    arrays = []
    for name, _ in items:
        with Image.open(root / ALIGNED / (name[:-4] + "_aligned.jpg")) as image:
            arrays.append(np.asarray(image.convert("RGB")))
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255)
    x = (x - 0.5) / 0.25
    y = torch.tensor([k - 1 for _, k in items])
    return x.contiguous(), y


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return make_standin(tmp_path_factory.mktemp("standin") / "raf", **SMALL)


# ----------------------------------------------------------------------------- layout


def test_layout_and_names_are_rafdb(small):
    label_file = small / "basic" / "EmoLabel" / "list_patition_label.txt"  # sic
    assert label_file.is_file()
    raw = label_file.read_bytes()
    assert not raw.endswith(b"\n"), "RAF-DB's label file has no final newline"
    assert b"\r" not in raw
    items = _read_labels(small)
    train = [n for n, _ in items if n.startswith("train_")]
    test = [n for n, _ in items if n.startswith("test_")]
    assert len(train) + len(test) == len(items)
    assert train == [f"train_{i:05d}.jpg" for i in range(1, len(train) + 1)]
    assert test == [f"test_{i:04d}.jpg" for i in range(1, len(test) + 1)]
    assert all(re.fullmatch(r"train_\d{5}\.jpg|test_\d{4}\.jpg", n) for n, _ in items)
    assert {k for _, k in items} == set(range(1, 8))

    files = sorted(p.name for p in (small / ALIGNED).iterdir())
    assert files == sorted(n[:-4] + "_aligned.jpg" for n, _ in items)
    with Image.open(small / ALIGNED / "train_00001_aligned.jpg") as image:
        assert image.format == "JPEG"
        assert image.mode == "RGB"
        assert image.size == (32, 32)


def test_default_size_is_rafdb_100(tmp_path):
    root = make_standin(tmp_path / "raf", scale=0.001, progress=False)
    with Image.open(root / ALIGNED / "test_0001_aligned.jpg") as image:
        assert (image.size, image.mode) == ((100, 100), "RGB")
    # at scale 0.001 most classes fall to the floor of 3 images per split
    counts = standin_counts(0.001)
    assert counts["Fear"] == counts["Disgust"] == [3, 3]
    assert counts["Happiness"] == [5, 3]  # 4.772 and 1.185
    assert len(_read_labels(root)) == sum(sum(c) for c in counts.values())


def test_counts_follow_rafdb(small):
    assert RAFDB_CLASSES == (
        "Surprise",
        "Fear",
        "Disgust",
        "Happiness",
        "Sadness",
        "Anger",
        "Neutral",
    )
    full = standin_counts(1.0)
    assert list(full) == list(RAFDB_CLASSES)
    assert full == {
        c: [RAFDB_COUNTS["train"][i], RAFDB_COUNTS["test"][i]] for i, c in enumerate(RAFDB_CLASSES)
    }
    assert sum(c[0] for c in full.values()) == 12271
    assert sum(c[1] for c in full.values()) == 3068

    counts = standin_counts(0.02)
    for s in (0, 1):
        per_class = [counts[c][s] for c in RAFDB_CLASSES]
        assert max(per_class) == counts["Happiness"][s]
        assert sorted(per_class).count(counts["Happiness"][s]) == 1
        assert min(per_class) == counts["Fear"][s]
        assert min(per_class) >= 3
    assert counts["Happiness"] == [95, 24]  # 4772 * 0.02 = 95.4, 1185 * 0.02 = 23.7
    assert standin_counts(0.5)["Fear"] == [141, 37]  # 140.5 and 37.0, rounded half up

    # the files hold exactly these counts
    items = _read_labels(small)
    for split, s in (("train", 0), ("test", 1)):
        codes = [k for n, k in items if n.startswith(split)]
        assert [codes.count(k) for k in range(1, 8)] == [counts[c][s] for c in RAFDB_CLASSES]


@pytest.mark.parametrize("scale", [0, -1.0, float("nan"), float("inf")])
def test_bad_scale_is_refused(scale, tmp_path):
    with pytest.raises(ValueError, match="scale"):
        standin_counts(scale)
    with pytest.raises(ValueError, match="scale"):
        make_standin(tmp_path, scale=scale, progress=False)
    assert not (tmp_path / "basic").exists()


def test_bad_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="size"):
        make_standin(tmp_path, scale=0.01, size=8, progress=False)


def test_readme_says_synthetic(small):
    text = (small / "README.txt").read_text()
    assert "SYNTHETIC STAND-IN" in text
    assert "NOT RAF-DB" in text
    assert "NOT RAF-DB NUMBERS" in text
    assert "seed=0" in text and "scale=0.02" in text
    manifest = json.loads((small / "standin.json").read_text())
    assert manifest["complete"] is True
    assert (manifest["scale"], manifest["seed"], manifest["size"]) == (0.02, 0, 32)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_and_pixels(small, tmp_path):
    again = make_standin(tmp_path / "again", **SMALL)
    assert (again / LABELS).read_bytes() == (small / LABELS).read_bytes()
    a, b = _pixels(small), _pixels(again)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_another_seed_differs(small, tmp_path):
    other = make_standin(tmp_path / "other", **{**SMALL, "seed": 1})
    assert (other / LABELS).read_bytes() != (small / LABELS).read_bytes()
    a, b = _pixels(small), _pixels(other)
    assert a.keys() == b.keys()  # same counts, same names
    differ = [not np.array_equal(a[n], b[n]) for n in a]
    assert all(differ)


def test_images_vary_within_a_class(small):
    """Not one template per class: faces of the same class differ in pose, colour, etc."""
    items = [(n, k) for n, k in _read_labels(small) if n.startswith("train_") and k == 4]
    pixels = _pixels(small)
    images = np.stack([pixels[n[:-4] + "_aligned.jpg"] for n, _ in items]).astype(float)
    assert images.std(axis=0).mean() > 20  # per-pixel std over the class, in 0..255 units


# ----------------------------------------------------------------------------- reuse and safety


def test_existing_standin_is_reused(small):
    files = [*sorted((small / ALIGNED).iterdir()), small / LABELS, small / "README.txt"]
    files.append(small / "standin.json")
    before = {p: p.stat().st_mtime_ns for p in files}
    assert make_standin(small, **SMALL) == small
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_other_parameters_replace_the_standin(tmp_path):
    root = make_standin(tmp_path / "raf", scale=0.02, size=16, progress=False)
    first = _pixels(root)
    make_standin(root, scale=0.01, size=16, progress=False)
    items = _read_labels(root)
    assert len(items) == sum(sum(c) for c in standin_counts(0.01).values())
    assert len(list((root / ALIGNED).iterdir())) == len(items)  # no stale images left
    assert json.loads((root / "standin.json").read_text())["scale"] == 0.01
    assert len(first) > len(items)


def test_unfinished_standin_is_redrawn(tmp_path):
    root = make_standin(tmp_path / "raf", **SMALL)
    victim = root / ALIGNED / "test_0001_aligned.jpg"
    victim.unlink()
    make_standin(root, **SMALL)
    assert victim.is_file()


def test_real_rafdb_is_never_overwritten(tmp_path):
    (tmp_path / LABELS).parent.mkdir(parents=True)
    (tmp_path / LABELS).write_text("train_00001.jpg 5")
    with pytest.raises(StandinExistsError, match="real RAF-DB"):
        make_standin(tmp_path, **SMALL)
    assert (tmp_path / LABELS).read_text() == "train_00001.jpg 5"


# ----------------------------------------------------------------------------- command line


def test_cli_standin(tmp_path, capsys):
    out = tmp_path / "standin"
    code = main(["standin", "--out", str(out), "--scale", "0.02", "--size", "24", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "synthetic stand-in" in printed
    assert str(out) in printed
    assert "Happiness" in printed and "95 / 24" in printed
    assert (out / LABELS).is_file()
    with Image.open(out / ALIGNED / "train_00001_aligned.jpg") as image:
        assert image.size == (24, 24)


def test_cli_standin_refuses_bad_scale(tmp_path, capsys):
    assert main(["standin", "--out", str(tmp_path), "--scale", "0", "--no-progress"]) == 2
    assert "scale" in capsys.readouterr().err


# ----------------------------------------------------------------------------- learnability


class SmallCNN(nn.Module):
    """A strided stem, three conv blocks and a 32-d feature layer:
    ``(features (B, 32), logits (B, 7))`` from images (B, 3, H, W)."""

    num_classes = 7
    feat_dim = 32

    def __init__(self) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, k: int = 3, stride: int = 1, pool: bool = True):
            layers = [
                nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))

        self.body = nn.Sequential(
            block(3, 16, k=5, stride=2, pool=False),
            block(16, 32),
            block(32, 48),
            block(48, 64, pool=False),
            nn.AdaptiveAvgPool2d(1),
        )
        self.embed = nn.Linear(64, self.feat_dim)
        self.head = nn.Linear(self.feat_dim, self.num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.embed(self.body(x).flatten(1))
        return features, self.head(torch.relu(features))


@pytest.mark.slow
def test_standin_is_learnable_but_not_trivial(tmp_path_factory):
    root = make_standin(
        tmp_path_factory.mktemp("learn") / "raf", scale=0.3, seed=0, size=48, progress=False
    )
    x_train, y_train = _load_split(root, "train")
    x_test, y_test = _load_split(root, "test")
    seed_everything(0)
    model = SmallCNN()
    config = TrainConfig(
        epochs=16, lr=0.05, lr_step=11, lr_decay=0.1, seed=0, device="cpu", amp=False
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = train(
            model,
            TensorLoader(x_train, y_train, 64, shuffle=True, seed=0),
            TensorLoader(x_test, y_test, 256),
            config,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    last = result.history[-1]
    acc, per_class = last["test_acc"], last["test_per_class_acc"]
    majority = 100.0 * (y_test == y_test.bincount().argmax()).float().mean().item()
    happiness = per_class[RAFDB_CLASSES.index("Happiness")]
    minority = per_class[RAFDB_CLASSES.index("Fear")] + per_class[RAFDB_CLASSES.index("Disgust")]
    minority /= 2
    report = f"acc {acc:.1f}, majority {majority:.1f}, per class {per_class}"
    assert acc > 100 / 7 + 30, report
    assert acc > majority + 20, report
    print(report)
    assert acc < 95.0, report  # clearly below 100%: the classes overlap by design
    assert minority < happiness - 20, report
