import math

import numpy as np
import pytest
import torch

from ferlib.metrics import (
    McNemar,
    accuracy,
    class_means,
    confusion_matrix,
    cosine_mean_predict,
    mcnemar_test,
    mean_class_accuracy,
    mean_class_accuracy_interval,
    nearest_mean_predict,
    nearest_mean_rules,
    paired_bootstrap,
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


# ----------------------------------------------------------------------------- noise


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_images():
    y = np.zeros(20, dtype=int)
    # 5 images only A gets right, none only B: p = 2 * (1/2)^5
    result = mcnemar_test([0] * 5 + [1] * 15, [1] * 20, y)
    assert (result.only_a, result.only_b) == (5, 0)
    assert result.p_value == pytest.approx(2 / 32)
    # 1 against 9: p = 2 * P(X <= 1) for X ~ Bin(10, 1/2) = 2 * 11 / 1024
    a = np.array([0] * 1 + [1] * 9 + [0] * 10)
    b = np.array([1] * 1 + [0] * 9 + [0] * 10)
    result = mcnemar_test(a, b, y)
    assert (result.only_a, result.only_b) == (1, 9)
    assert result.p_value == pytest.approx(22 / 1024)
    assert mcnemar_test(a, a, y) == McNemar(0, 0, 1.0)  # no discordant image
    assert mcnemar_test([0, 1], [1, 0], [0, 0]) == McNemar(1, 1, 1.0)  # one each: no evidence


def test_paired_bootstrap_of_identical_and_of_opposite_runs():
    y = np.arange(50) % 5
    same = paired_bootstrap(y, y, y, 5, n_resamples=200)
    assert all((i.value, i.low, i.high) == (0.0, 0.0, 0.0) for i in same.values())
    wrong = (y + 1) % 5
    opposite = paired_bootstrap(y, wrong, y, 5, n_resamples=200)
    for interval in opposite.values():
        assert (interval.value, interval.low, interval.high) == pytest.approx((100, 100, 100))


def test_paired_bootstrap_matches_the_normal_approximation():
    """A right on all 400 images, B on every other one: the difference in accuracy is 50
    points with standard error 100 * sqrt(0.25 / 400) = 2.5, so the 95% interval is about
    50 ± 4.9 (the bootstrap's own Monte-Carlo error is a few tenths)."""
    y = np.zeros(400, dtype=int)
    b = np.where(np.arange(400) % 2 == 0, 0, 1)
    result = paired_bootstrap(y, b, y, 2, n_resamples=4000)["acc"]
    assert result.value == pytest.approx(50.0)
    assert result.low == pytest.approx(50 - 1.96 * 2.5, abs=1.0)
    assert result.high == pytest.approx(50 + 1.96 * 2.5, abs=1.0)
    assert result.confidence == 0.95 and str(result).startswith("50.00 [")


def test_pairing_sees_a_difference_that_two_separate_intervals_hide():
    """Two runs that agree on 990 of 1,000 images; A alone is right on the other 10. Each
    run's own 95% interval is about ±1.9 points, and they overlap; the paired interval of
    the 1-point difference excludes 0, and McNemar gives p = 2 / 2^10."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 1000)
    a = np.where(rng.random(1000) < 0.9, y, (y + 1) % 4)
    b = a.copy()
    right_a = np.flatnonzero(a == y)[:10]
    b[right_a] = (y[right_a] + 1) % 4  # B wrong where A is right, 10 times
    diff = paired_bootstrap(a, b, y, 4, n_resamples=2000)
    assert diff["acc"].value == pytest.approx(1.0)
    assert 0 < diff["acc"].low < 1.0 < diff["acc"].high
    assert diff["mean_class_acc"].low > 0
    alone = 1.96 * 100 * math.sqrt(0.9 * 0.1 / 1000)  # one run's binomial half-width
    assert alone > 1.8 and diff["acc"].value < 2 * alone  # separate intervals would overlap
    assert mcnemar_test(a, b, y) == McNemar(10, 0, pytest.approx(2 / 1024))


def test_mean_class_accuracy_interval_is_wide_when_a_class_is_small():
    """Class 0: 100 images, all right; class 1: 4 images, 2 right. The average is 75%, and
    resampling 4 images moves class 1's accuracy (hence the average) by tens of points."""
    y = np.array([0] * 100 + [1] * 4)
    preds = y.copy()
    preds[100:102] = 0
    interval = mean_class_accuracy_interval(preds, y, 2, n_resamples=2000)
    assert interval.value == pytest.approx(75.0) == mean_class_accuracy(preds, y, 2)
    assert interval.low <= 62.5 and interval.high >= 87.5
    perfect = mean_class_accuracy_interval(y, y, 2, n_resamples=200)
    assert (perfect.value, perfect.low, perfect.high) == (100.0, 100.0, 100.0)
    again = mean_class_accuracy_interval(preds, y, 2, n_resamples=2000)
    assert again == interval  # seeded


def test_noise_functions_reject_bad_input():
    with pytest.raises(ValueError, match="same non-zero"):
        mcnemar_test([0, 1], [0], [0, 1])
    with pytest.raises(ValueError, match="labels"):
        paired_bootstrap([0, 1], [0, 1], [0, 5], 2)
    with pytest.raises(ValueError, match="labels"):
        mean_class_accuracy_interval([0, 1], [0, 7], 3)


def test_cosine_mean_predict_goes_by_angle_where_the_euclidean_rule_goes_by_distance():
    """Class 0 lies far out along x, class 1 near the origin along y. A short feature pointing
    along x is nearest (Euclidean) to class 1's mean, but points at class 0."""
    train = torch.tensor([[10.0, 0.0], [12.0, 0.0], [0.0, 0.1], [0.0, 0.2]])
    train_labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.5, 3.0]])
    means = class_means(train, train_labels, 2)
    assert nearest_mean_predict(test, means).tolist() == [1, 1]
    assert cosine_mean_predict(test, train, train_labels, 2).tolist() == [0, 1]
    # the lengths of the training features do not matter, only their directions
    stretched = train * torch.tensor([[0.1], [5.0], [3.0], [0.5]])
    assert cosine_mean_predict(test, stretched, train_labels, 2).tolist() == [0, 1]


def test_nearest_mean_rules_gives_both_readings_and_the_means_they_used():
    train = torch.tensor([[10.0, 0.0], [12.0, 0.0], [0.0, 0.1], [0.0, 0.2]])
    train_labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.5, 3.0]])
    rules = nearest_mean_rules(test, train, train_labels, 2)
    assert rules["ncm"].tolist() == [1, 1] and rules["cosine_ncm"].tolist() == [0, 1]
    assert torch.allclose(rules["class_means"], torch.tensor([[11.0, 0.0], [0.0, 0.15]]))
