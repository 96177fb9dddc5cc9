"""Classification metrics: accuracy, per-class accuracy, confusion matrices; t-SNE maps;
and the noise of these numbers: McNemar's exact test and bootstrap intervals.

Inputs are predicted and true class indices (N,) as torch tensors, numpy arrays or lists.

Two runs scored on the same test images are compared image by image (paired): the images
both get right or both get wrong say nothing about which run is better, so a paired test
is much sharper than two separate intervals. :func:`mcnemar_test` asks whether the two runs'
accuracies differ; :func:`paired_bootstrap` gives an interval for the difference in
accuracy and in average per-class accuracy (the paper's metric on imbalanced test sets);
:func:`mean_class_accuracy_interval` gives the noise of one run's average per-class
accuracy. The distributions and the resampling are scipy.stats'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from torch import Tensor

__all__ = [
    "Interval",
    "McNemar",
    "accuracy",
    "class_means",
    "confusion_matrix",
    "cosine_mean_predict",
    "mcnemar_test",
    "mean_class_accuracy",
    "mean_class_accuracy_interval",
    "nearest_mean_predict",
    "nearest_mean_rules",
    "paired_bootstrap",
    "per_class_accuracy",
    "tsne_2d",
]

ArrayLike = Tensor | np.ndarray | list[int]


def _as_pair(preds: ArrayLike, labels: ArrayLike, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Convert to two 1-D integer numpy arrays of the same non-zero length."""
    p = preds.detach().cpu().numpy() if isinstance(preds, Tensor) else np.asarray(preds)
    y = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if p.ndim != 1 or y.ndim != 1 or p.shape != y.shape or len(y) == 0:
        raise ValueError(
            f"{where}: expected preds and labels as 1-D class indices of the same non-zero "
            f"length (N,), got shapes {p.shape} and {y.shape}"
        )
    if not (np.issubdtype(p.dtype, np.integer) and np.issubdtype(y.dtype, np.integer)):
        raise ValueError(
            f"{where}: expected integer class indices, got dtypes {p.dtype} and {y.dtype}"
        )
    return p, y


def _check_range(values: np.ndarray, num_classes: int, name: str, where: str) -> None:
    if values.min() < 0 or values.max() >= num_classes:
        raise ValueError(
            f"{where}: {name} must lie in [0, {num_classes}), "
            f"got range [{values.min()}, {values.max()}]"
        )


def accuracy(preds: ArrayLike, labels: ArrayLike) -> float:
    """Percentage of samples with `preds == labels`."""
    p, y = _as_pair(preds, labels, "accuracy")
    return float((p == y).mean() * 100.0)


def confusion_matrix(
    preds: ArrayLike,
    labels: ArrayLike,
    num_classes: int,
    normalize: Literal["true"] | None = None,
) -> np.ndarray:
    """Confusion matrix (K, K): row = true class, column = predicted class.

    `normalize=None` gives counts (int64); `normalize="true"` divides each row by the
    number of samples of that class (rows of absent classes are all zero).
    """
    where = "confusion_matrix"
    p, y = _as_pair(preds, labels, where)
    if normalize not in (None, "true"):
        raise ValueError(f"{where}: normalize must be None or 'true', got {normalize!r}")
    _check_range(p, num_classes, "preds", where)
    _check_range(y, num_classes, "labels", where)
    return _sk_confusion_matrix(y, p, labels=list(range(num_classes)), normalize=normalize)


def per_class_accuracy(preds: ArrayLike, labels: ArrayLike, num_classes: int) -> Tensor:
    """Recall of each class in percent, (K,) float64; NaN for classes absent from `labels`."""
    cm = confusion_matrix(preds, labels, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(support > 0, np.diag(cm) / support * 100.0, np.nan)
    return torch.from_numpy(acc)


def mean_class_accuracy(preds: ArrayLike, labels: ArrayLike, num_classes: int) -> float:
    """Average per-class accuracy in percent (mean of the row-normalised confusion
    diagonal), ignoring classes absent from `labels`."""
    return float(np.nanmean(per_class_accuracy(preds, labels, num_classes).numpy()))


def class_means(features: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Mean feature of each class, (K, D) from features (N, D) and labels (N,).

    Raises a ValueError naming the classes that have no sample (their mean is undefined).
    """
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(
            f"class_means: expected features (N, D) and labels (N,), "
            f"got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    counts = torch.bincount(labels, minlength=num_classes)
    if len(counts) > num_classes or (counts == 0).any():
        missing = (counts[:num_classes] == 0).nonzero().flatten().tolist()
        raise ValueError(
            f"class_means: every label must lie in [0, {num_classes}) and every class needs a "
            f"sample; classes without samples: {missing}, max label {int(labels.max())}"
        )
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype)
    sums.index_add_(0, labels, features)
    return sums / counts[:, None].to(features.dtype)


def nearest_mean_predict(features: Tensor, means: Tensor) -> Tensor:
    """Index of the nearest class mean (Euclidean) for each feature: (N,) from (N, D), (K, D).

    Scores how well the features alone separate the classes, whatever the classifier
    layer learned: a cluster the bias-free linear classifier cannot carve out (for example
    one that lies on the same ray as another, nearer the origin) is still found here.
    """
    return torch.cdist(features.double(), means.double()).argmin(dim=1)


def cosine_mean_predict(
    features: Tensor, train_features: Tensor, train_labels: Tensor, num_classes: int
) -> Tensor:
    """The nearest class mean by angle: (N,) class indices from test features (N, D) and
    training features (M, D) with their labels (M,).

    Every feature is scaled to unit length, the class means are taken over the unit training
    features, and each test feature goes to the mean with the largest cosine similarity. A
    rule fair to the softmax loss, whose features spread along rays (notebook 01): the
    Euclidean rule of :func:`nearest_mean_predict` favours losses built on Euclidean centers.
    """
    unit = torch.nn.functional.normalize(train_features.double(), dim=1)
    means = torch.nn.functional.normalize(class_means(unit, train_labels, num_classes), dim=1)
    return (torch.nn.functional.normalize(features.double(), dim=1) @ means.T).argmax(dim=1)


def nearest_mean_rules(
    features: Tensor, train_features: Tensor, train_labels: Tensor, num_classes: int
) -> dict[str, Tensor]:
    """Both nearest-class-mean readings of test features (N, D), with the means of the
    training features (M, D) and labels (M,): ``ncm`` (Euclidean, :func:`nearest_mean_predict`)
    and ``cosine_ncm`` (by angle, :func:`cosine_mean_predict`) predictions (N,), and the
    ``class_means`` (K, D) the Euclidean rule used."""
    means = class_means(train_features, train_labels, num_classes)
    return {
        "ncm": nearest_mean_predict(features, means),
        "cosine_ncm": cosine_mean_predict(features, train_features, train_labels, num_classes),
        "class_means": means,
    }


def tsne_2d(features: Tensor, seed: int = 0, pca_dim: int = 50, max_iter: int = 1000) -> np.ndarray:
    """A 2-D t-SNE map (N, 2) of features (N, D) with scikit-learn, for plots only.

    The features are first reduced to ``pca_dim`` dimensions by PCA (the usual practice:
    it removes noise and makes t-SNE several times faster), then embedded with perplexity
    ``min(30, (N - 1) / 3)`` for ``max_iter`` iterations (500 is enough for a quick look).
    Distances between clusters in a t-SNE map mean little; what
    it shows is which classes form tight, separate groups.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = _np_features(features)
    n = len(x)
    if n < 5:
        raise ValueError(f"tsne_2d: need at least 5 samples, got {n} (features {x.shape})")
    dim = min(pca_dim, n, x.shape[1])
    if dim < x.shape[1]:
        x = PCA(n_components=dim, random_state=seed).fit_transform(x)
    tsne = TSNE(
        n_components=2,
        perplexity=min(30.0, (n - 1) / 3),
        init="pca",
        max_iter=max_iter,
        random_state=seed,
    )
    return tsne.fit_transform(x)


def _np_features(features: Tensor | np.ndarray) -> np.ndarray:
    x = features.detach().cpu().numpy() if isinstance(features, Tensor) else np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"tsne_2d: expected features (N, D), got shape {x.shape}")
    return x.astype(np.float32)


# ----------------------------------------------------------------------------- noise


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of two runs on the same test images.

    ``only_a``: images run A gets right and run B wrong; ``only_b``: the reverse. Under the
    null hypothesis (equal accuracy) each of these ``only_a + only_b`` discordant images is
    A's with probability 1/2; ``p_value`` is the two-sided exact binomial p-value.
    """

    only_a: int
    only_b: int
    p_value: float


@dataclass(frozen=True)
class Interval:
    """A number in percent (or points, for a difference) and its bootstrap interval."""

    value: float
    low: float
    high: float
    confidence: float

    def __str__(self) -> str:
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}]"


def mcnemar_test(preds_a: ArrayLike, preds_b: ArrayLike, labels: ArrayLike) -> McNemar:
    """McNemar's exact test: do runs A and B, scored on the same images, differ in accuracy?

    ``scipy.stats.binomtest(only_a, only_a + only_b, 0.5)``; p = 1 when no image is
    discordant."""
    a, y = _as_pair(preds_a, labels, "mcnemar_test")
    b, _ = _as_pair(preds_b, labels, "mcnemar_test")
    right_a, right_b = a == y, b == y
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
    n = only_a + only_b
    p = 1.0 if n == 0 else float(stats.binomtest(only_a, n, 0.5).pvalue)
    return McNemar(only_a, only_b, p)


def _mean_class(num_classes: int):
    """Vectorised average per-class accuracy (%) of 0/1 hits along the last axis; classes
    absent from a (resampled) test set are left out, as in :func:`mean_class_accuracy`."""
    classes = np.arange(num_classes)

    def statistic(hits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        member = labels[..., None] == classes  # (..., N, K)
        right = (hits[..., None].astype(bool) & member).sum(axis=-2)
        support = member.sum(axis=-2)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.where(support > 0, 100.0 * right / support, np.nan)
        return np.nanmean(per_class, axis=-1)

    return statistic


def _bootstrap(data: tuple, statistic, n_resamples: int, confidence: float, seed: int):
    """scipy.stats.bootstrap over test images (paired: one resample of indices for all
    arrays), percentile interval."""
    res = stats.bootstrap(
        data,
        lambda *arrays, axis: statistic(*(np.moveaxis(x, axis, -1) for x in arrays)),
        n_resamples=n_resamples,
        paired=True,
        vectorized=True,
        batch=50,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return res.confidence_interval


def paired_bootstrap(
    preds_a: ArrayLike,
    preds_b: ArrayLike,
    labels: ArrayLike,
    num_classes: int,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """The difference A − B, in points, in accuracy (``"acc"``) and in average per-class
    accuracy (``"mean_class_acc"``), with a paired bootstrap interval: the test images are
    resampled with replacement and both runs are scored on the same resample."""
    a, y = _as_pair(preds_a, labels, "paired_bootstrap")
    b, _ = _as_pair(preds_b, labels, "paired_bootstrap")
    _check_range(y, num_classes, "labels", "paired_bootstrap")
    hits_a, hits_b = (a == y).astype(np.int8), (b == y).astype(np.int8)
    mean_class = _mean_class(num_classes)

    def acc(ha, hb, _y):
        return 100.0 * (ha.mean(axis=-1) - hb.mean(axis=-1))

    def mca(ha, hb, yy):
        return mean_class(ha, yy) - mean_class(hb, yy)

    out = {}
    for key, statistic in (("acc", acc), ("mean_class_acc", mca)):
        value = float(statistic(hits_a, hits_b, y))
        low, high = _bootstrap((hits_a, hits_b, y), statistic, n_resamples, confidence, seed)
        out[key] = Interval(value, float(low), float(high), confidence)
    return out


def mean_class_accuracy_interval(
    preds: ArrayLike,
    labels: ArrayLike,
    num_classes: int,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """One run's average per-class accuracy (%) with a bootstrap interval over test images:
    how far another draw of the test set could move it."""
    p, y = _as_pair(preds, labels, "mean_class_accuracy_interval")
    _check_range(y, num_classes, "labels", "mean_class_accuracy_interval")
    hits = (p == y).astype(np.int8)
    statistic = _mean_class(num_classes)
    low, high = _bootstrap((hits, y), statistic, n_resamples, confidence, seed)
    return Interval(float(statistic(hits, y)), float(low), float(high), confidence)
