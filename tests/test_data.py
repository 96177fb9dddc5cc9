import hashlib
from pathlib import Path

import pytest
import torch

from ferlib.data import (
    MNIST_FILES,
    WMNIST_COUNTS,
    WMNIST_SEED,
    TensorLoader,
    class_counts,
    default_data_root,
    fingerprint,
    load_mnist,
    load_wmnist,
    wmnist_indices,
)
from ferlib.data.mnist import WMNIST_PAPER_COUNTS

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]

# Pinned W-MNIST indices for the default WMNIST_COUNTS and WMNIST_SEED. Changing the
# sampling or the constants must fail here on purpose: update these literals knowingly.
WMNIST_INDEX_SUM = 140_976_810
WMNIST_INDEX_SHA256 = "b82a3b749c6eccd5f89f6492162b5a4bcb67f26a20b55d85421b0b835ce623a2"
# the paper-scale W-MNIST of the `paper` and `repro` profiles (WMNIST_PAPER_COUNTS)
PAPER_INDEX_SHA256 = "49a913f5a4f11eb6d2ee42cd5f4cbecf9e86a4284c6a4ef3935a6adf08932b24"


@pytest.fixture(scope="module")
def mnist_train(mnist_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return load_mnist(mnist_root, train=True, download=False)


def test_default_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FERLIB_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("FERLIB_DATA")
    assert default_data_root() == Path(__file__).resolve().parents[1] / "data"


def test_mnist_train(mnist_train: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, labels = mnist_train
    assert images.shape == (60_000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (60_000,) and labels.dtype == torch.int64
    assert class_counts(labels, 10).tolist() == MNIST_TRAIN_COUNTS
    assert abs(images.mean().item()) < 0.01
    assert images.std().item() == pytest.approx(1.0, abs=0.01)


def test_mnist_test(mnist_root: Path) -> None:
    images, labels = load_mnist(mnist_root, train=False, download=False)
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (10_000,) and labels.dtype == torch.int64
    assert abs(images.mean().item()) < 0.05
    assert images.std().item() == pytest.approx(1.0, abs=0.05)


def test_missing_mnist_raises_with_expected_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert all(name in message for name in MNIST_FILES)


def test_wmnist_counts(mnist_root: Path) -> None:
    _, labels = load_wmnist(mnist_root, download=False)
    assert class_counts(labels, 10).tolist() == [WMNIST_COUNTS[d] for d in range(10)]


def test_wmnist_indices_reproducible_and_pinned(
    mnist_train: tuple[torch.Tensor, torch.Tensor],
) -> None:
    labels = mnist_train[1]
    idx = wmnist_indices(labels)
    assert torch.equal(idx, wmnist_indices(labels))
    assert idx.dtype == torch.int64 and torch.all(idx[1:] > idx[:-1])  # sorted, unique
    assert len(idx) == sum(WMNIST_COUNTS.values())
    assert int(idx.sum()) == WMNIST_INDEX_SUM
    digest = hashlib.sha256(idx.numpy().astype("<i8").tobytes()).hexdigest()
    assert digest == WMNIST_INDEX_SHA256


def test_paper_scale_wmnist_pinned(mnist_train: tuple[torch.Tensor, torch.Tensor]) -> None:
    """The reproduction profile's set: 5,840 per majority digit, 1,460 of 2, 5, 8 (4:1),
    drawn with WMNIST_SEED; the same images on every machine, and containing W-MNIST."""
    from ferlib.experiments.wmnist import PROFILES

    labels = mnist_train[1]
    counts = dict(PROFILES["repro"].counts)
    assert (
        counts
        == dict(WMNIST_PAPER_COUNTS)
        == {d: 1460 if d in (2, 5, 8) else 5840 for d in range(10)}
    )
    idx = wmnist_indices(labels, counts)
    assert len(idx) == 45_260 and int(idx.sum()) == 1_354_535_039
    assert hashlib.sha256(idx.numpy().astype("<i8").tobytes()).hexdigest() == PAPER_INDEX_SHA256
    assert set(wmnist_indices(labels).tolist()) <= set(idx.tolist())


def test_wmnist_seed_and_counts_configurable(
    mnist_train: tuple[torch.Tensor, torch.Tensor],
) -> None:
    labels = mnist_train[1]
    assert not torch.equal(wmnist_indices(labels), wmnist_indices(labels, seed=WMNIST_SEED + 1))
    idx = wmnist_indices(labels, counts={3: 10, 7: 5})
    assert class_counts(labels[idx], 10).tolist() == [0, 0, 0, 10, 0, 0, 0, 5, 0, 0]


def test_wmnist_bad_counts(mnist_train: tuple[torch.Tensor, torch.Tensor]) -> None:
    labels = mnist_train[1]
    with pytest.raises(ValueError, match="digit 5"):
        wmnist_indices(labels, counts={5: MNIST_TRAIN_COUNTS[5] + 1})
    with pytest.raises(ValueError, match="digit 3 does not occur"):
        wmnist_indices(labels[labels != 3], counts={3: 1})


def _toy(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(n, dtype=torch.float32).view(n, 1), torch.arange(n) % 3


def test_tensor_loader_covers_each_sample_once() -> None:
    images, labels = _toy(10)
    loader = TensorLoader(images, labels, batch_size=4, shuffle=True, seed=1)
    assert len(loader) == 3 and loader.num_samples == 10
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    seen = torch.cat([x for x, _ in batches]).view(-1)
    assert sorted(seen.long().tolist()) == list(range(10))
    assert torch.equal(torch.cat([y for _, y in batches]), seen.long() % 3)  # pairs kept


def test_tensor_loader_epoch_order() -> None:
    images, labels = _toy(50)
    loader = TensorLoader(images, labels, batch_size=50, shuffle=True, seed=3)

    def order(epoch: int) -> torch.Tensor:
        loader.set_epoch(epoch)
        return next(iter(loader))[0].view(-1)

    first = order(4)
    assert torch.equal(first, order(4))
    assert not torch.equal(first, order(5))
    expected = torch.randperm(50, generator=torch.Generator().manual_seed(3 + 4)).float()
    assert torch.equal(first, expected)  # resumable: depends only on seed + epoch


def test_tensor_loader_no_shuffle_and_drop_last() -> None:
    images, labels = _toy(10)
    loader = TensorLoader(images, labels, batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert torch.equal(torch.cat([x for x, _ in loader]).view(-1), torch.arange(8.0))


def test_tensor_loader_validation() -> None:
    images, labels = _toy(10)
    with pytest.raises(ValueError, match="same length"):
        TensorLoader(images, labels[:9], batch_size=2)
    with pytest.raises(ValueError, match="1-D integer"):
        TensorLoader(images, labels.float(), batch_size=2)
    with pytest.raises(ValueError, match="1-D integer"):
        TensorLoader(images, labels.view(5, 2), batch_size=2)
    with pytest.raises(ValueError, match="1-D integer"):
        TensorLoader(images, labels > 0, batch_size=2)  # booleans are not class indices


def test_class_counts() -> None:
    assert class_counts(torch.tensor([0, 2, 2, 4]), 6).tolist() == [1, 0, 2, 0, 1, 0]
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        class_counts(torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="1-D integer"):
        class_counts(torch.tensor([True, False]), 2)


def test_wmnist_counts_are_read_only() -> None:
    with pytest.raises(TypeError):
        WMNIST_COUNTS[2] = 20  # type: ignore[index]
    assert sum(WMNIST_COUNTS.values()) == 4650
    harsh = {**WMNIST_COUNTS, 2: 20}  # the way to build other counts
    assert harsh[2] == 20 and WMNIST_COUNTS[2] == 150


def test_fingerprint_tells_data_apart() -> None:
    images, labels = torch.randn(500, 1, 4, 4), torch.arange(500) % 7
    base = fingerprint(images, labels)
    assert base == fingerprint(images.clone(), labels.clone())  # same data, other tensors
    assert len(base) == 16 and int(base, 16) >= 0
    variants = {
        "fewer images": fingerprint(images[:-1], labels[:-1]),
        "another order": fingerprint(images.flip(0), labels.flip(0)),
        "one label": fingerprint(images, torch.where(labels == 3, 4, labels)),
        "preprocessing": fingerprint(images * 1.001, labels),
        "dtype": fingerprint(images.double(), labels),
    }
    assert base not in variants.values() and len(set(variants.values())) == len(variants)
    assert TensorLoader(images, labels, 32).fingerprint == base
