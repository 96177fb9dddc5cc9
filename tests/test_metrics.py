import math

import numpy as np
import pytest
import torch

from ferlib.metrics import (
    accuracy,
    class_means,
    confusion_matrix,
    mean_class_accuracy,
    nearest_mean_predict,
    per_class_accuracy,
    tsne_2d,
)

# Class 0: 2 of 3 right; class 1: 1 of 1 right; class 2: 0 of 2 right; class 3 absent.
LABELS = torch.tensor([0, 0, 0, 1, 2, 2])
PREDS = torch.tensor([0, 0, 1, 1, 3, 0])


def test_accuracy() -> None:
    assert accuracy(PREDS, LABELS) == pytest.approx(300 / 6)
    assert accuracy(np.array([1, 2]), np.array([1, 2])) == 100.0
    assert accuracy([0, 1], [1, 0]) == 0.0


def test_confusion_matrix_counts() -> None:
    expected = np.array(
        [
            [2, 1, 0, 0],
            [0, 1, 0, 0],
            [1, 0, 0, 1],
            [0, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(confusion_matrix(PREDS, LABELS, 4), expected)


def test_confusion_matrix_normalized() -> None:
    cm = confusion_matrix(PREDS, LABELS, 4, normalize="true")
    np.testing.assert_allclose(cm[0], [2 / 3, 1 / 3, 0, 0])
    np.testing.assert_allclose(cm[2], [0.5, 0, 0, 0.5])
    np.testing.assert_allclose(cm[3], [0, 0, 0, 0])  # absent class: empty row


def test_per_class_accuracy_absent_class_is_nan() -> None:
    acc = per_class_accuracy(PREDS, LABELS, 4)
    assert acc.shape == (4,)
    assert acc[:3].tolist() == pytest.approx([200 / 3, 100.0, 0.0])
    assert math.isnan(acc[3])


def test_mean_class_accuracy_ignores_absent_class() -> None:
    assert mean_class_accuracy(PREDS, LABELS, 4) == pytest.approx((200 / 3 + 100 + 0) / 3)


def test_errors() -> None:
    with pytest.raises(ValueError, match="same non-zero length"):
        accuracy(PREDS, LABELS[:5])
    with pytest.raises(ValueError, match="1-D"):
        accuracy(PREDS.view(2, 3), LABELS.view(2, 3))
    with pytest.raises(ValueError, match="integer"):
        accuracy(PREDS.float(), LABELS)
    with pytest.raises(ValueError, match=r"preds must lie in \[0, 3\)"):
        confusion_matrix(PREDS, LABELS, 3)
    with pytest.raises(ValueError, match="normalize"):
        confusion_matrix(PREDS, LABELS, 4, normalize="all")


def test_class_means_and_nearest_mean_predict_on_a_hand_made_example():
    feats = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 2.0], [0.5, 5.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    means = class_means(feats, labels, 3)
    assert torch.equal(means, torch.tensor([[1.0, 0.0], [10.0, 1.0], [0.5, 5.0]]))
    # two clusters on one ray, which no bias-free linear classifier can tell apart
    queries = torch.tensor([[1.2, 0.1], [9.0, 0.9], [0.0, 4.0]])
    assert nearest_mean_predict(queries, means).tolist() == [0, 1, 2]


def test_class_means_names_the_empty_class():
    with pytest.raises(ValueError, match=r"classes without samples: \[1\]"):
        class_means(torch.zeros(3, 2), torch.tensor([0, 2, 2]), 3)
    with pytest.raises(ValueError, match=r"expected features \(N, D\)"):
        class_means(torch.zeros(3), torch.tensor([0, 1, 2]), 3)


def test_tsne_2d_keeps_separated_classes_apart() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(90) % 3
    centers = 10 * torch.randn(3, 64, generator=gen)
    feats = centers[labels] + torch.randn(90, 64, generator=gen)
    xy = tsne_2d(feats, seed=0, max_iter=300)
    assert xy.shape == (90, 2) and np.isfinite(xy).all()
    # each point's nearest neighbour in the map belongs to its own class
    d = torch.cdist(torch.as_tensor(xy), torch.as_tensor(xy)).fill_diagonal_(float("inf"))
    assert (labels[d.argmin(1)] == labels).float().mean() > 0.95
    np.testing.assert_allclose(tsne_2d(feats, seed=0, max_iter=300), xy)  # seeded


def test_tsne_2d_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 5"):
        tsne_2d(torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        tsne_2d(torch.randn(10))
