from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from ferlib.plots import (
    plot_accuracy_vs_gamma,
    plot_class_distribution,
    plot_confusion_matrix,
    plot_crops,
    plot_faces,
    plot_feature_panels,
    plot_features_2d,
    plot_history,
)


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _blobs(n: int = 300, k: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % k
    angle = labels.float() * 2 * torch.pi / k
    centers = torch.stack([angle.cos(), angle.sin()], dim=1) * 5
    return centers + torch.randn(n, 2, generator=gen) * 0.3, labels


def test_class_distribution() -> None:
    counts = torch.tensor([2000, 2000, 50, 2000])
    ax = plot_class_distribution(counts, class_names=["a", "b", "c", "d"], title="W", log=True)
    assert ax.get_title() == "W"
    assert ax.get_xlabel() == "Class" and "samples" in ax.get_ylabel()
    assert [p.get_height() for p in ax.patches] == [2000, 2000, 50, 2000]
    assert [t.get_text() for t in ax.texts] == ["2,000", "2,000", "50", "2,000"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "d"]
    assert ax.get_yscale() == "log"


def test_features_2d() -> None:
    features, labels = _blobs()
    centers = torch.randn(10, 2)
    ax = plot_features_2d(features, labels, centers, title="T", lim=(-7, 7, -6, 6))
    assert ax.get_title() == "T"
    assert ax.get_xlabel() and ax.get_ylabel()
    assert len(ax.collections) == 10 + 1  # one scatter per class + the centers
    assert [t.get_text() for t in ax.texts] == [str(k) for k in range(10)]
    assert ax.get_xlim() == (-7, 7) and ax.get_ylim() == (-6, 6)
    assert len(ax.get_legend().get_texts()) == 10


def test_features_2d_subsamples() -> None:
    features, labels = _blobs(n=1000, k=3)
    ax = plot_features_2d(features, labels, max_points=100)
    assert sum(len(c.get_offsets()) for c in ax.collections) == 100


def test_features_2d_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plot_features_2d(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))


def test_feature_panels_share_limits() -> None:
    f1, y1 = _blobs(seed=1)
    f2, y2 = _blobs(seed=2)
    f2 = f2 * 3
    f2[0] = torch.tensor([1e4, -1e4])  # one outlier must not squash every panel
    panels = {
        "softmax": (f1, y1, None),
        "center": (f2, y2, torch.zeros(10, 2)),
        "dda": (f1 * 0.5, y1, None),
        "extra": (f1, y1, None),
    }
    fig = plot_feature_panels(panels, ncols=3, title="Features")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == list(panels)
    assert len(fig.axes) == 6 and len(axes) == 4
    assert len({(ax.get_xlim(), ax.get_ylim()) for ax in axes}) == 1
    xmax = axes[0].get_xlim()[1]
    assert 15 < xmax < 100  # covers the 3x panel, ignores the outlier
    assert all(ax.get_legend() is None for ax in axes)
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 10
    assert fig.get_suptitle() == "Features"
    zoomed = plot_feature_panels(panels, ncols=3, share_limits=False)
    zoomed_axes = [ax for ax in zoomed.axes if ax.get_visible()]
    widths = [ax.get_xlim()[1] - ax.get_xlim()[0] for ax in zoomed_axes]
    assert widths[2] == pytest.approx(widths[0] / 2, rel=0.05)  # the half-scale panel
    assert widths[1] > 2 * widths[0]  # the 3x panel


def test_confusion_matrix_plot() -> None:
    cm = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])
    ax = plot_confusion_matrix(cm, class_names=["x", "y", "z"], title="CM")
    assert ax.get_title() == "CM"
    assert ax.get_xlabel() == "Predicted" and ax.get_ylabel() == "True"
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 9 and texts[:3] == ["0.80", "0.20", "0.00"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    ax = plot_confusion_matrix(cm, normalize=False)
    assert [t.get_text() for t in ax.texts][:3] == ["8", "2", "0"]


def test_accuracy_vs_gamma() -> None:
    ax = plot_accuracy_vs_gamma(
        [1, 3, 5, 7], [97.17, 97.17, 97.15, 97.34], baselines={"softmax": 96.78, "center": 97.12}
    )
    assert ax.get_title() and ax.get_xlabel() == "γ" and "Accuracy" in ax.get_ylabel()
    assert len(ax.lines) == 3
    assert list(ax.lines[0].get_ydata()) == [97.17, 97.17, 97.15, 97.34]
    assert [line.get_linestyle() for line in ax.lines[1:]] == ["--", "--"]
    with pytest.raises(ValueError, match="equal"):
        plot_accuracy_vs_gamma([1, 3], [97.0])


def test_history() -> None:
    history = [{"epoch": e, "train_loss": 1 / e, "test_acc": 90 + e} for e in (1, 2, 3)]
    ax = plot_history(history, keys=["train_loss"])
    assert ax.get_title() and ax.get_xlabel() == "epoch" and ax.get_ylabel() == "train_loss"
    assert len(ax.lines) == 1 and list(ax.lines[0].get_xdata()) == [1, 2, 3]
    ax = plot_history(history, keys=["test_acc", "train_loss"])
    assert len(ax.lines) == 2 and ax.get_ylabel() == "value"
    assert len(plot_history(history).lines) == 1  # default: train_loss
    with pytest.raises(ValueError, match="available keys"):
        plot_history(history, keys=["val_loss"])


def test_plot_per_class_accuracy_groups_bars_and_shades_minority():
    from ferlib.plots import plot_per_class_accuracy

    runs = {"softmax": [90.0 + k for k in range(10)], "dda": [50.0 + k for k in range(10)]}
    ax = plot_per_class_accuracy(runs, highlight=[2, 5, 8], title="Per class")
    assert ax.get_title() == "Per class" and ax.get_ylabel() == "Accuracy (%)"
    for container, (name, values) in zip(ax.containers, runs.items(), strict=True):
        assert container.get_label() == name
        bars = list(container)
        assert [b.get_height() for b in bars] == values  # one bar per class, the right value
        centres = [b.get_x() + b.get_width() / 2 for b in bars]
        assert all(abs(c - k) < 0.4 for k, c in enumerate(centres))  # inside its class group
    bars = {id(b) for c in ax.containers for b in c}
    shaded = sorted(  # span centres in data units (a Rectangle or a Polygon, by version)
        round(float(p.get_path().transformed(p.get_patch_transform()).vertices[:, 0].mean()))
        for p in ax.patches
        if id(p) not in bars
    )
    assert shaded == [2, 5, 8]  # the highlighted classes, and only those
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["softmax", "dda"]
    with pytest.raises(ValueError, match="one accuracy per class"):
        plot_per_class_accuracy({"a": [1.0] * 10, "b": [1.0] * 9})
    plt.close(ax.figure)


def test_plot_faces_places_each_image_in_its_row_and_captions_it() -> None:
    images = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 3, 4, 4).clone()
    rows = [[0, 1, 2], [3], [4, -1, 0]]  # -1: a blank cell inside a row
    fig = plot_faces(images, rows, ["a", "b", "c"], {3: "→ a"}, {3: "red"}, title="T")
    axes = np.array(fig.axes).reshape(3, 3)
    assert fig._suptitle.get_text() == "T"
    for r, indices in enumerate(rows):
        assert axes[r, 0].get_ylabel() == "abc"[r]
        for c in range(3):
            shown = axes[r, c].get_images()
            if c < len(indices) and indices[c] >= 0:
                assert shown[0].get_array()[0, 0, 0] == indices[c]  # the right image
            else:
                assert not shown  # a short row leaves blank cells
    assert axes[1, 0].get_title() == "→ a" and axes[1, 0].title.get_color() == "red"
    with pytest.raises(ValueError, match="one name per row"):
        plot_faces(images, rows, ["a"])


def test_plot_crops_draws_each_box_and_its_crop() -> None:
    image = torch.arange(100, dtype=torch.float32).view(1, 10, 10) / 100
    offsets = [(1, 1), (0, 0), (0, 2), (2, 0), (2, 2)]
    fig = plot_crops(image, 8, offsets, ["center", "tl", "tr", "bl", "br"], title="crops")
    big = fig.axes[0]
    boxes = [(p.get_y() + 0.5, p.get_x() + 0.5, p.get_width()) for p in big.patches]
    assert boxes == [(t, left, 8) for t, left in offsets]
    crops = fig.axes[1:6]  # first row after the image: one crop per position
    for ax, (t, left) in zip(crops, offsets, strict=True):
        shown = ax.get_images()[0].get_array()
        np.testing.assert_allclose(shown, image[0, t : t + 8, left : left + 8])
    flipped = fig.axes[7].get_images()[0].get_array()  # second row: the centre crop, mirrored
    np.testing.assert_allclose(flipped, image[0, 1:9, 1:9].flip(-1))
    with pytest.raises(ValueError, match="one name per crop"):
        plot_crops(image, 8, offsets, ["x"])
