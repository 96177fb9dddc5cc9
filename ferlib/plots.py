"""Figures for the course: class distributions, 2-D features, confusion matrices, curves.

Every function draws on `ax` (a new figure when None) and returns the Axes, or returns a
Figure for multi-panel plots. No backend is forced here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

__all__ = [
    "plot_accuracy_vs_gamma",
    "plot_class_distribution",
    "plot_confusion_matrix",
    "plot_crops",
    "plot_faces",
    "plot_feature_panels",
    "plot_features_2d",
    "plot_history",
    "plot_per_class_accuracy",
]

ArrayLike = Tensor | np.ndarray | Sequence[float]


def _np(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _axes(ax: Axes | None) -> Axes:
    return plt.subplots()[1] if ax is None else ax


def _palette(num_classes: int) -> list[tuple[float, float, float]]:
    """One distinct colour per class: tab10 up to 10 classes, husl beyond."""
    return sns.color_palette("tab10" if num_classes <= 10 else "husl", num_classes)


def _names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(k) for k in range(num_classes)]
    if len(class_names) < num_classes:
        raise ValueError(
            f"class_names: expected at least {num_classes} names, got {len(class_names)}"
        )
    return list(class_names)


def plot_class_distribution(
    counts: ArrayLike,
    class_names: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str = "Class distribution",
    log: bool = False,
) -> Axes:
    """Bar chart of samples per class (K,), each bar annotated with its count."""
    counts = _np(counts)
    if counts.ndim != 1:
        raise ValueError(f"plot_class_distribution: counts must be 1-D (K,), got {counts.shape}")
    names = _names(class_names, len(counts))
    ax = _axes(ax)
    bars = ax.bar(np.arange(len(counts)), counts, color=_palette(len(counts)), edgecolor="black")
    ax.set_xticks(np.arange(len(counts)), names[: len(counts)])
    ax.bar_label(bars, labels=[f"{int(c):,}" for c in counts], padding=2, fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("Class")
    ax.set_ylabel("Number of samples" + (" (log scale)" if log else ""))
    return ax


def plot_features_2d(
    features: ArrayLike,
    labels: ArrayLike,
    centers: ArrayLike | None = None,
    ax: Axes | None = None,
    title: str = "2-D deep features",
    class_names: Sequence[str] | None = None,
    lim: tuple[float, float, float, float] | None = None,
    max_points: int = 5000,
    legend: bool = True,
) -> Axes:
    """Scatter of 2-D features (N, 2) coloured by label (N,), one collection per class.

    `centers` (K, 2) are drawn as black-edged stars marked with their class number.
    `lim = (xmin, xmax, ymin, ymax)` fixes the axes (to share them across panels). At most
    `max_points` samples are drawn (a fixed random subset, the same on every call).
    """
    feats, labs = _np(features), _np(labels)
    if feats.ndim != 2 or feats.shape[1] != 2 or labs.shape != (len(feats),):
        raise ValueError(
            "plot_features_2d: expected features (N, 2) and labels (N,), "
            f"got {feats.shape} and {labs.shape}"
        )
    cents = None if centers is None else _np(centers)
    if cents is not None and (cents.ndim != 2 or cents.shape[1] != 2):
        raise ValueError(f"plot_features_2d: centers must be (K, 2), got {cents.shape}")
    num_classes = max(int(labs.max(initial=-1)) + 1, 0 if cents is None else len(cents))
    names, colors = _names(class_names, num_classes), _palette(num_classes)
    if len(feats) > max_points:
        keep = np.sort(np.random.default_rng(0).choice(len(feats), max_points, replace=False))
        feats, labs = feats[keep], labs[keep]

    ax = _axes(ax)
    for k in np.unique(labs):
        pts = feats[labs == k]
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.5, color=colors[k], label=names[k])
    if cents is not None:
        ax.scatter(
            cents[:, 0],
            cents[:, 1],
            s=150,
            marker="*",
            c=colors[: len(cents)],
            edgecolors="black",
            linewidths=1.0,
            zorder=3,
        )
        for k, (x, y) in enumerate(cents):
            ax.annotate(
                str(k),
                (x, y),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=9,
                fontweight="bold",
                zorder=4,
            )
    if lim is not None:
        ax.set_xlim(lim[0], lim[1])
        ax.set_ylim(lim[2], lim[3])
    if legend:
        ax.legend(markerscale=4, fontsize=8, loc="best")
    ax.set_title(title)
    ax.set_xlabel("feature 1")
    ax.set_ylabel("feature 2")
    return ax


def _shared_limits(
    points: list[np.ndarray], percentile: float, margin: float = 0.05
) -> tuple[float, float, float, float]:
    """(xmin, xmax, ymin, ymax) covering the central `percentile`% of all points, padded."""
    allpts = np.concatenate(points)
    lo = np.percentile(allpts, (100 - percentile) / 2, axis=0)
    hi = np.percentile(allpts, 100 - (100 - percentile) / 2, axis=0)
    pad = (hi - lo) * margin + 1e-6
    lo, hi = lo - pad, hi + pad
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def _panel_limits(
    data: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None]], percentile: float
) -> tuple[float, float, float, float]:
    """Axes limits covering the central `percentile`% of the features, plus all centers."""
    lo_x, hi_x, lo_y, hi_y = _shared_limits([f for f, _, _ in data], percentile)
    for _, _, c in data:
        if c is not None and len(c):
            lo_x, lo_y = min(lo_x, c[:, 0].min()), min(lo_y, c[:, 1].min())
            hi_x, hi_y = max(hi_x, c[:, 0].max()), max(hi_y, c[:, 1].max())
    return float(lo_x), float(hi_x), float(lo_y), float(hi_y)


def plot_feature_panels(
    panels: Mapping[str, tuple[ArrayLike, ArrayLike, ArrayLike | None]],
    ncols: int = 3,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    max_points: int = 5000,
    percentile: float = 99.0,
    panel_size: float = 4.0,
    share_limits: bool = True,
) -> Figure:
    """Several 2-D feature scatters with the SAME axes limits and one shared legend.

    `panels` maps a panel title to `(features (N, 2), labels (N,), centers (K, 2) | None)`.
    The shared limits cover the central `percentile`% of all features (so one outlier
    does not squash every panel) plus all centers. `share_limits=False` zooms each panel
    onto its own features instead: shapes become visible, sizes are no longer comparable.
    """
    if not panels:
        raise ValueError("plot_feature_panels: panels is empty, expected at least one panel")
    data = {
        name: (_np(f), _np(y), None if c is None else _np(c)) for name, (f, y, c) in panels.items()
    }
    shared = _panel_limits(list(data.values()), percentile)

    ncols = min(ncols, len(data))
    nrows = math.ceil(len(data) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows), squeeze=False
    )
    num_classes = 0
    for ax, (name, (f, y, c)) in zip(axes.flat, data.items(), strict=False):
        plot_features_2d(
            f,
            y,
            c,
            ax=ax,
            title=name,
            class_names=class_names,
            lim=shared if share_limits else _panel_limits([(f, y, c)], percentile),
            max_points=max_points,
            legend=False,
        )
        num_classes = max(num_classes, int(y.max(initial=-1)) + 1, 0 if c is None else len(c))
    for ax in axes.flat[len(data) :]:
        ax.set_visible(False)

    names, colors = _names(class_names, num_classes), _palette(num_classes)
    handles = [
        Line2D([], [], ls="", marker="o", color=colors[k], label=names[k])
        for k in range(num_classes)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(num_classes, 10), frameon=False)
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def plot_confusion_matrix(
    cm: ArrayLike,
    class_names: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str = "Confusion matrix",
    normalize: bool = True,
) -> Axes:
    """Annotated heatmap of a confusion matrix (K, K), rows = true, columns = predicted.

    With `normalize=True` each row is divided by its sum (rows of absent classes stay 0).
    """
    cm = _np(cm).astype(float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"plot_confusion_matrix: cm must be square (K, K), got {cm.shape}")
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    names = _names(class_names, len(cm))[: len(cm)]
    ax = _axes(ax)
    sns.heatmap(
        cm,
        annot=True,
        fmt=".2f" if normalize else ".0f",
        cmap="Blues",
        vmin=0,
        vmax=1 if normalize else None,
        square=True,
        cbar=True,
        xticklabels=names,
        yticklabels=names,
        ax=ax,
    )
    ax.set_title(title)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    return ax


def plot_accuracy_vs_gamma(
    gammas: ArrayLike,
    accuracies: ArrayLike,
    baselines: Mapping[str, float] | None = None,
    ax: Axes | None = None,
    title: str = "Accuracy vs γ",
    label: str = "DDA loss",
) -> Axes:
    """Accuracy (%) against γ as line + markers, baselines as horizontal dashed lines."""
    g, acc = _np(gammas), _np(accuracies)
    if g.shape != acc.shape or g.ndim != 1:
        raise ValueError(
            "plot_accuracy_vs_gamma: expected gammas and accuracies as 1-D arrays of equal "
            f"length, got shapes {g.shape} and {acc.shape}"
        )
    ax = _axes(ax)
    ax.plot(g, acc, marker="o", color="C0", label=label)
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, ls="--", color=f"C{i + 1}", label=f"{name} ({value:.2f})")
    ax.set_title(title)
    ax.set_xlabel("γ")
    ax.set_ylabel("Accuracy (%)")
    ax.legend()
    return ax


def plot_per_class_accuracy(
    runs: Mapping[str, ArrayLike],
    highlight: Sequence[int] = (),
    ax: Axes | None = None,
    title: str = "Per-class test accuracy",
    class_names: Sequence[str] | None = None,
) -> Axes:
    """Grouped bars: one group per class, one bar per run; ``highlight`` shades classes
    (e.g. the minority classes) so that the eye goes there first."""
    if not runs:
        raise ValueError("plot_per_class_accuracy: runs is empty, expected {name: (K,) accuracies}")
    values = {name: _np(v).astype(float) for name, v in runs.items()}
    num_classes = len(next(iter(values.values())))
    if any(v.shape != (num_classes,) for v in values.values()):
        raise ValueError(
            "plot_per_class_accuracy: every run needs one accuracy per class, got shapes "
            f"{[v.shape for v in values.values()]}"
        )
    ax = _axes(ax)
    width = 0.8 / len(values)
    x = np.arange(num_classes)
    for k in highlight:
        ax.axvspan(k - 0.45, k + 0.45, color="0.9", zorder=0)
    for i, (name, v) in enumerate(values.items()):
        ax.bar(x - 0.4 + width * (i + 0.5), v, width, label=name, color=f"C{i}")
    ax.set_xticks(x, _names(class_names, num_classes))
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.set_xlabel("Class")
    ax.set_ylabel("Accuracy (%)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return ax


def plot_history(
    history: Sequence[Mapping[str, float]],
    keys: Sequence[str] = ("train_loss",),
    ax: Axes | None = None,
    title: str = "Training history",
) -> Axes:
    """Training curves from per-epoch dicts, e.g. `[{"epoch": 1, "train_loss": 2.1}, ...]`.

    One line per key in `keys`; x is each entry's "epoch" if present, else its 1-based
    position. Plot quantities of similar scale together (losses on one Axes, accuracies
    such as "test_acc" on another).
    """
    available = sorted({k for h in history for k in h})
    missing = [k for k in keys if k not in available]
    if not keys or missing:
        raise ValueError(
            f"plot_history: keys {missing or list(keys)} not found in history; "
            f"available keys: {available}"
        )
    ax = _axes(ax)
    for key in keys:
        points = [(h.get("epoch", i + 1), h[key]) for i, h in enumerate(history) if key in h]
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", markersize=3, label=key)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(keys[0] if len(keys) == 1 else "value")
    ax.legend()
    return ax


def _image_np(image: Tensor | np.ndarray) -> np.ndarray:
    """One image (C, H, W) or (H, W), uint8 or float in [0, 1], as (H, W, 3) or (H, W)."""
    img = _np(image)
    if img.ndim == 3:
        img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
    return img if img.dtype == np.uint8 else np.clip(img, 0.0, 1.0)


def plot_faces(
    images: Tensor | np.ndarray,
    rows: Sequence[Sequence[int]],
    row_names: Sequence[str],
    captions: Mapping[int, str] | None = None,
    caption_colors: Mapping[int, str] | None = None,
    title: str = "Faces",
    size: float = 1.3,
) -> Figure:
    """A grid of images (N, C, H, W): row ``r`` shows ``images[i]`` for ``i in rows[r]``.

    Rows may differ in length (a class with few examples); empty cells, and cells whose
    index is negative (padding inside a row), stay blank.
    ``captions`` (index -> text, coloured by ``caption_colors``) label single images, e.g.
    the predicted class of a misclassified face.
    """
    if len(rows) != len(row_names):
        raise ValueError(
            f"plot_faces: expected one name per row, got {len(rows)} rows and "
            f"{len(row_names)} names"
        )
    if len(images) == 0 or not rows:
        raise ValueError("plot_faces: no images or no rows to show")
    cols = max(1, max(len(r) for r in rows))
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(size * cols + 1.2, size * len(rows) + 0.6), squeeze=False
    )
    captions, caption_colors = captions or {}, caption_colors or {}
    for r, (indices, name) in enumerate(zip(rows, row_names, strict=True)):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
            if c >= len(indices) or int(indices[c]) < 0:
                continue
            i = int(indices[c])
            ax.imshow(_image_np(images[i]), cmap="gray")
            if i in captions:
                ax.set_title(captions[i], fontsize=7, color=caption_colors.get(i, "black"))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_crops(
    image: Tensor | np.ndarray,
    crop: int,
    offsets: Sequence[Sequence[int]],
    names: Sequence[str],
    title: str = "Training crops",
) -> Figure:
    """The five training crops of one image (C, H, W) and their flips, then the test crop.

    Left: the image with each crop's box (``offsets`` (5, 2) of (top, left), named by
    ``names``); then one panel per crop, the crop above its mirror image; the first crop
    (the centre) is also the test-time crop.
    """
    img = _image_np(image)
    h, w = img.shape[:2]
    if len(offsets) != len(names):
        raise ValueError(
            f"plot_crops: expected one name per crop, got {len(offsets)} and {len(names)}"
        )
    n = len(offsets)
    fig, axes = plt.subplots(2, n + 1, figsize=(1.8 * (n + 1), 3.9), squeeze=False)
    big = axes[0, 0]
    big.imshow(img, cmap="gray")
    big.set_title(f"image {h}x{w}", fontsize=9)
    for k, ((top, left), name) in enumerate(zip(offsets, names, strict=True)):
        color = f"C{k}"
        big.add_patch(
            plt.Rectangle((left - 0.5, top - 0.5), crop, crop, fill=False, ec=color, lw=1.5)
        )
        patch = img[top : top + crop, left : left + crop]
        axes[0, k + 1].imshow(patch, cmap="gray")
        axes[0, k + 1].set_title(
            f"{name}" + (" (= test)" if k == 0 else ""), fontsize=9, color=color
        )
        axes[1, k + 1].imshow(patch[:, ::-1], cmap="gray")
        axes[1, k + 1].set_title("flipped", fontsize=8, color=color)
    axes[1, 0].axis("off")
    axes[1, 0].text(
        0.5, 0.5, f"{crop}x{crop} crops:\n{n} positions\nx 2 flips", ha="center", va="center"
    )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig
