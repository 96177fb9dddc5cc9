"""Decoding a dataset once (with a disk cache) and loaders that augment on the device.

Everything runs on the CPU with tiny tensors: a 16x16 RAF-DB written with PIL into
``tmp_path``, a fake dataset that counts its reads, and in-memory images whose label is
their index, so that every sample of a batch can be traced back to its source image.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DistributedSampler

from ferlib.data import RAFDB, fingerprint, normalize, to_rgb
from ferlib.data.augment import RAFDB_MEAN, RAFDB_STD, center_crop, five_crop_flip
from ferlib.data.cache import cache_file, decode_dataset
from ferlib.data.device import DeviceAugmentLoader, DeviceLoader, EpochShuffle, stream_loader
from ferlib.data.rafdb import LABEL_FILE

SIDE = 16


# ----------------------------------------------------------------------------- fixtures


def random_images(n: int, channels: int = 3, side: int = 12, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, side, side), dtype=torch.uint8, generator=generator)


class FakeDataset(torch.utils.data.Dataset):
    """Map-style dataset over given uint8 images, with ``files``, ``split`` and
    ``fingerprint``; counts its reads (thread-safe)."""

    def __init__(self, images: list[Tensor], labels: list[int], fp: str = "abc123") -> None:
        self.items = images
        self.targets = labels
        self.files = [Path(f"/faces/img_{i:03d}.jpg") for i in range(len(images))]
        self.split = "train"
        self.fingerprint = fp
        self.reads = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        with self._lock:
            self.reads += 1
        return self.items[index].clone(), self.targets[index]


def fake(n: int = 9, seed: int = 0, fp: str = "abc123") -> FakeDataset:
    images = random_images(n, side=SIDE, seed=seed)
    return FakeDataset(list(images), [(3 * i) % 7 for i in range(n)], fp)


@pytest.fixture
def rafdb_root(tmp_path: Path) -> Path:
    """A tiny official RAF-DB: 6 train and 2 test 16x16 JPEGs of random noise."""
    base = tmp_path / "basic"
    aligned = base / "Image" / "aligned"
    aligned.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i, (split, label) in enumerate(
        [*[("train", k) for k in (1, 4, 7, 2, 5, 3)], ("test", 6), ("test", 1)]
    ):
        name = f"{split}_{i:05d}.jpg"
        pixels = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(aligned / name.replace(".jpg", "_aligned.jpg"), quality=90)
        lines.append(f"{name} {label}")
    (base / LABEL_FILE).parent.mkdir(parents=True)
    (base / LABEL_FILE).write_text("\n".join(lines) + "\n")
    return tmp_path


def candidates(image: Tensor, crop: int, mean=RAFDB_MEAN, std=RAFDB_STD) -> list[Tensor]:
    """The 10 normalised training crops of one uint8 image (C, H, W): 5 positions x flip."""
    batch = image[None].expand(5, -1, -1, -1)
    out = []
    for flip in (False, True):
        crops = five_crop_flip(batch, crop, torch.arange(5), torch.full((5,), flip))
        out.extend(normalize(to_rgb(crops), mean, std))
    return out


def match(x: Tensor, image: Tensor, crop: int) -> int | None:
    """Index 0..9 of the candidate crop (position + 5 * flipped) that ``x`` equals."""
    for k, candidate in enumerate(candidates(image, crop)):
        if torch.allclose(x, candidate, atol=1e-6):
            return k
    return None


# ----------------------------------------------------------------------------- decode_dataset


def test_decode_rafdb_gives_the_files_pixels_and_labels(rafdb_root: Path) -> None:
    dataset = RAFDB(rafdb_root, "train")
    images, labels = decode_dataset(dataset, workers=3, progress=False)
    assert images.dtype == torch.uint8 and images.shape == (6, 3, SIDE, SIDE)
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 3, 6, 1, 4, 2]
    for i, path in enumerate(dataset.files):
        expected = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(images[i].numpy(), expected), f"image {i} ({path.name})"


def test_decode_order_does_not_depend_on_threads() -> None:
    dataset = fake(n=40)
    one, labels_one = decode_dataset(dataset, workers=1, progress=False)
    many, labels_many = decode_dataset(dataset, workers=8, progress=False)
    assert torch.equal(one, torch.stack(dataset.items))
    assert torch.equal(many, one) and torch.equal(labels_many, labels_one)
    assert labels_one.tolist() == dataset.targets


def test_cache_is_written_atomically_and_reused(tmp_path: Path) -> None:
    first = fake()
    images, labels = decode_dataset(first, cache_dir=tmp_path / "cache", progress=False)
    assert first.reads == len(first)
    path = tmp_path / "cache" / "FakeDataset-train-abc123.pt"
    assert cache_file(first, tmp_path / "cache") == path
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [path.name]  # no temp file left

    again = fake()  # same data, same fingerprint, new object
    cached_images, cached_labels = decode_dataset(
        again, cache_dir=tmp_path / "cache", progress=False
    )
    assert again.reads == 0, "the cached file should have been loaded, not the images decoded"
    assert torch.equal(cached_images, images) and torch.equal(cached_labels, labels)
    assert cached_labels.dtype == torch.int64


def test_changed_dataset_is_decoded_again(tmp_path: Path) -> None:
    decode_dataset(fake(seed=0, fp="old"), cache_dir=tmp_path, progress=False)
    changed = fake(seed=1, fp="new")
    images, _ = decode_dataset(changed, cache_dir=tmp_path, progress=False)
    assert changed.reads == len(changed)
    assert torch.equal(images, torch.stack(changed.items))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "FakeDataset-train-new.pt",
        "FakeDataset-train-old.pt",
    ]


def test_unusable_cache_file_is_decoded_again(tmp_path: Path) -> None:
    dataset = fake()
    cache_file(dataset, tmp_path).write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="unusable cache"):
        images, _ = decode_dataset(dataset, cache_dir=tmp_path, progress=False)
    assert dataset.reads == len(dataset) and torch.equal(images, torch.stack(dataset.items))
    assert decode_dataset(fake(), cache_dir=tmp_path, progress=False)[0].equal(images)


def test_cache_file_is_readable_like_the_folder_not_private(tmp_path: Path) -> None:
    # mkstemp makes 0600 files; a grader's sandbox (root mapped to nobody) could then not
    # read a cache the course made, decoded again and failed to write into the read-only folder
    decode_dataset(fake(), cache_dir=tmp_path, progress=False)
    umask = os.umask(0)
    os.umask(umask)
    mode = cache_file(fake(), tmp_path).stat().st_mode & 0o777
    assert mode == 0o666 & ~umask


def test_a_cache_that_cannot_be_written_keeps_the_decoded_images(tmp_path: Path) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder would go")  # mkdir/mkstemp fail
    dataset = fake()
    with pytest.warns(UserWarning, match="could not write the cache"):
        images, labels = decode_dataset(dataset, cache_dir=blocked, progress=False)
    assert torch.equal(images, torch.stack(dataset.items))
    assert labels.tolist() == dataset.targets


def test_mixed_shapes_name_the_first_file_that_differs() -> None:
    dataset = fake(n=30)
    dataset.items[17] = torch.zeros(3, SIDE, SIDE + 2, dtype=torch.uint8)
    dataset.items[25] = torch.zeros(1, SIDE, SIDE, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"img_017\.jpg.*\(3, 16, 18\), expected \(3, 16, 16\)"):
        decode_dataset(dataset, workers=4, progress=False)


def test_in_memory_images_are_used_without_decoding() -> None:
    class InMemory(torch.utils.data.Dataset):  # like FER2013
        images = random_images(5, channels=1, side=48)
        targets = torch.tensor([0, 6, 2, 2, 1])

        def __len__(self) -> int:
            return 5

        def __getitem__(self, index: int):
            raise AssertionError("decode_dataset should not read items one by one")

    images, labels = decode_dataset(InMemory(), cache_dir=None, progress=False)
    assert images is InMemory.images
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 6, 2, 2, 1]


def test_decode_errors(tmp_path: Path) -> None:
    dataset = fake()
    dataset.items[2] = dataset.items[2].float()
    with pytest.raises(TypeError, match=r"uint8 tensor \(C, H, W\).*img_002\.jpg"):
        decode_dataset(dataset, progress=False)
    anonymous = fake()
    del anonymous.fingerprint
    with pytest.raises(ValueError, match="fingerprint"):
        decode_dataset(anonymous, cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        decode_dataset(fake(), workers=0)
    with pytest.raises(ValueError, match="empty"):
        decode_dataset(FakeDataset([], []), progress=False)


# ----------------------------------------------------------------------------- DeviceLoader


def loader(n: int = 20, batch_size: int = 4, **kwargs) -> DeviceLoader:
    """A DeviceLoader over random 12x12 images whose label is their index."""
    channels = kwargs.pop("channels", 3)
    kwargs.setdefault("mean", RAFDB_MEAN)
    kwargs.setdefault("std", RAFDB_STD)
    kwargs.setdefault("crop", 8)
    images = random_images(n, channels=channels)
    return DeviceLoader(images, torch.arange(n), batch_size, **kwargs)


def labels_of(batches) -> list[int]:
    return [int(v) for _, y in batches for v in y]


def test_batches_have_the_right_shapes_dtypes_and_lengths() -> None:
    train = loader(n=10, batch_size=4, train=True)
    batches = list(train)
    assert len(train) == len(batches) == 2  # drop_last by default at training time
    for x, y in batches:
        assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32 and x.device.type == "cpu"
        assert y.shape == (4,) and y.dtype == torch.int64
    test = loader(n=10, batch_size=4, train=False)
    assert [len(y) for _, y in test] == [4, 4, 2] and len(test) == 3
    kept = loader(n=10, batch_size=4, train=True, drop_last=False)
    assert [len(y) for _, y in kept] == [4, 4, 2] and len(kept) == 3
    assert loader(n=12, batch_size=4, train=True).num_samples == 12


def test_test_batches_are_the_normalised_centre_crops_in_order() -> None:
    test = loader(n=10, batch_size=4, train=False)
    assert labels_of(test) == list(range(10))  # no shuffling at test time
    for x, y in test:
        expected = normalize(center_crop(test.images[y], 8), RAFDB_MEAN, RAFDB_STD)
        assert torch.equal(x, expected)


def test_training_crops_are_five_crops_of_the_right_image_possibly_flipped() -> None:
    train = loader(n=64, batch_size=16, train=True)
    seen = []
    for x, y in train:
        for sample, label in zip(x, y, strict=True):
            k = match(sample, train.images[label], 8)
            assert k is not None, f"sample {int(label)} is none of its 10 crops"
            seen.append(k)
    # the augmentation is really random: several positions, flipped and unflipped
    assert len({k % 5 for k in seen}) == 5
    assert any(k >= 5 for k in seen) and any(k < 5 for k in seen)


def test_order_and_augmentation_are_reproducible_per_epoch() -> None:
    a, b = loader(train=True, seed=3), loader(train=True, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    first, second = list(a), list(b)
    assert all(
        torch.equal(x1, x2) and torch.equal(y1, y2)
        for (x1, y1), (x2, y2) in zip(first, second, strict=True)
    )
    # the same order as TensorLoader: randperm from seed + epoch
    expected = torch.randperm(20, generator=torch.Generator().manual_seed(3 + 2)).tolist()
    assert labels_of(first) == expected
    a.set_epoch(3)
    assert labels_of(a) != labels_of(first)
    a.set_epoch(2)  # resuming at epoch 2 repeats it
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, first, strict=True))


def test_same_order_different_crops_across_epochs_without_shuffle() -> None:
    a = loader(n=32, batch_size=32, train=True, shuffle=False)
    x0, y0 = next(iter(a))
    a.set_epoch(1)
    x1, y1 = next(iter(a))
    assert torch.equal(y0, y1) and y0.tolist() == list(range(32))
    assert not torch.equal(x0, x1), "crops and flips should be redrawn each epoch"


@pytest.mark.parametrize(("n", "world_size"), [(11, 2), (10, 3), (8, 2)])
def test_ddp_shards_are_equal_disjoint_and_cover_everything(n: int, world_size: int) -> None:
    shards = [
        loader(n=n, batch_size=2, train=True, drop_last=False, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    for shard in shards:
        shard.set_epoch(1)
    seen = [labels_of(shard) for shard in shards]
    per_rank = -(-n // world_size)
    assert all(
        len(s) == per_rank and shard.num_samples == per_rank
        for s, shard in zip(seen, shards, strict=True)
    )
    assert len({len(shard) for shard in shards}) == 1  # same number of steps on every rank
    flat = [v for s in seen for v in s]
    assert sorted(set(flat)) == list(range(n))  # union: every sample
    padding = per_rank * world_size - n
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0 + 1)).tolist()
    repeated = sorted(v for v in set(flat) if flat.count(v) > 1)
    assert repeated == sorted(order[:padding])  # overlap only from the wrap-around padding
    assert all(flat.count(v) == 2 for v in repeated)


@pytest.mark.parametrize(("n", "world_size"), [(11, 2), (10, 3)])
def test_ddp_test_shards_count_every_sample_exactly_once(n: int, world_size: int) -> None:
    shards = [
        loader(n=n, batch_size=2, train=False, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    flat = [v for shard in shards for v in labels_of(shard)]
    assert sorted(flat) == list(range(n))  # no padding at test time: a fair evaluation
    assert [shard.num_samples for shard in shards] == [
        len(range(r, n, world_size)) for r in range(world_size)
    ]


def test_ddp_ranks_draw_different_crops() -> None:
    # 16 copies of one image: both ranks crop the same pixels, so only the draws differ
    images = random_images(1).expand(16, -1, -1, -1).contiguous()
    ranks = [
        DeviceLoader(
            images, torch.zeros(16, dtype=torch.long), 8, train=True, crop=8, rank=r, world_size=2
        )
        for r in range(2)
    ]
    x0, _ = next(iter(ranks[0]))
    x1, _ = next(iter(ranks[1]))
    assert not torch.equal(x0, x1)


def test_grey_images_become_three_channels() -> None:
    test = loader(n=6, batch_size=6, train=False, channels=1)
    x, y = next(iter(test))
    assert x.shape == (6, 3, 8, 8)
    expected = normalize(to_rgb(center_crop(test.images[y], 8)), RAFDB_MEAN, RAFDB_STD)
    assert torch.equal(x, expected)
    assert not torch.equal(x[:, 0], x[:, 1])  # per-channel statistics still apply
    train = loader(n=6, batch_size=6, train=True, channels=1)
    x, y = next(iter(train))
    assert x.shape == (6, 3, 8, 8)
    assert all(match(s, train.images[int(k)], 8) is not None for s, k in zip(x, y, strict=True))


def test_fingerprint() -> None:
    images, labels = random_images(5), torch.arange(5)
    default = DeviceLoader(images, labels, 2, train=False, crop=8)
    assert default.fingerprint == fingerprint(images, labels)
    other = DeviceLoader(images, labels.flip(0), 2, train=False, crop=8)
    assert other.fingerprint != default.fingerprint
    assert (
        DeviceLoader(images, labels, 2, train=False, crop=8, fingerprint="f00").fingerprint == "f00"
    )


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"images": random_images(4).float()}, TypeError, r"uint8 tensor \(N, C, H, W\)"),
        ({"images": random_images(4)[0]}, TypeError, r"uint8 tensor \(N, C, H, W\)"),
        ({"images": random_images(4, channels=2)}, ValueError, "1 \\(grey\\) or 3 \\(RGB\\)"),
        ({"labels": torch.arange(4).float()}, TypeError, "integer"),
        ({"labels": torch.arange(3)}, ValueError, "4 images and 3 labels"),
        ({"crop": 13}, ValueError, r"crop 13 is larger than the images \(12x12"),
        (
            {"rank": 2, "world_size": 2},
            ValueError,
            r"rank must be an int in \[0, world_size\) = \[0, 2\), got 2",
        ),
        ({"rank": -1}, ValueError, "rank"),
        ({"world_size": 0}, ValueError, "world_size must be an int >= 1"),
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1"),
        ({"batch_size": 5, "train": True}, ValueError, "no batch at all"),
        ({"mean": (0.5, 0.5)}, ValueError, "mean/std"),
    ],
)
def test_device_loader_errors(change: dict, error: type, message: str) -> None:
    args = {"images": random_images(4), "labels": torch.arange(4), "batch_size": 2}
    kwargs = {"train": False, "crop": 8}
    for key, value in change.items():
        (args if key in args else kwargs)[key] = value
    with pytest.raises(error, match=message):
        DeviceLoader(args["images"], args["labels"], args["batch_size"], **kwargs)


# ----------------------------------------------------------------------------- streaming


class Faces(torch.utils.data.Dataset):
    """Images of assorted sizes; ``flat`` ones are a single grey level (10 * index)."""

    def __init__(self, n: int = 10, flat: bool = True, side: int | None = None) -> None:
        self.n, self.flat, self.side = n, flat, side
        self.fingerprint = "faces-fp"
        self.noise = random_images(n, side=side or 16, seed=5)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not self.flat:
            return self.noise[index].clone(), index
        h, w = (self.side, self.side) if self.side else (20 + index, 24 - index % 3)
        return torch.full((3, h, w), 10 * index, dtype=torch.uint8), index


def test_stream_loader_resizes_and_normalises() -> None:
    stream = stream_loader(
        Faces(),
        4,
        train=False,
        crop=12,
        resize=16,
        device="cpu",
        workers=0,
        mean=RAFDB_MEAN,
        std=RAFDB_STD,
    )
    assert isinstance(stream, DeviceAugmentLoader) and len(stream) == 3
    assert stream.fingerprint == "faces-fp"
    assert stream.loader.pin_memory is False
    batches = list(stream)
    assert labels_of(batches) == list(range(10))
    for x, y in batches:
        assert x.shape == (len(y), 3, 12, 12) and x.dtype == torch.float32
        assert y.dtype == torch.int64
        flat = (
            torch.full((len(y), 3, 12, 12), 1, dtype=torch.uint8)
            * (10 * y).to(torch.uint8)[:, None, None, None]
        )
        assert torch.allclose(x, normalize(flat, RAFDB_MEAN, RAFDB_STD), atol=1e-5)


def test_stream_loader_resizes_to_the_given_side() -> None:
    stream = stream_loader(Faces(4), 4, train=False, crop=20, resize=20, device="cpu", workers=0)
    images, _ = next(iter(stream.loader))
    assert images.shape == (4, 3, 20, 20) and images.dtype == torch.uint8


def test_stream_loader_training_crops_match_the_images() -> None:
    dataset = Faces(24, flat=False, side=16)  # already at the resize side: no resampling
    stream = stream_loader(
        dataset,
        8,
        train=True,
        crop=8,
        resize=16,
        device="cpu",
        workers=0,
        seed=1,
        mean=RAFDB_MEAN,
        std=RAFDB_STD,
    )
    stream.set_epoch(4)
    seen = []
    for x, y in stream:
        for sample, label in zip(x, y, strict=True):
            k = match(sample, dataset.noise[label], 8)
            assert k is not None
            seen.append(k)
    assert len(set(seen)) > 2  # random crops and flips, not all the centre
    expected = torch.randperm(24, generator=torch.Generator().manual_seed(1 + 4)).tolist()
    assert labels_of(stream) == expected  # the seeded shuffle of epoch 4, like TensorLoader
    assert isinstance(stream.loader.sampler, EpochShuffle)


def test_stream_loader_forwards_set_epoch_to_the_distributed_sampler() -> None:
    ranks = [
        stream_loader(
            Faces(9, flat=False, side=16),
            2,
            train=True,
            crop=8,
            resize=16,
            device="cpu",
            workers=0,
            rank=r,
            world_size=2,
            drop_last=False,
        )
        for r in range(2)
    ]
    assert all(isinstance(s.loader.sampler, DistributedSampler) for s in ranks)
    for stream in ranks:
        stream.set_epoch(5)
        assert stream.loader.sampler.epoch == 5 and stream.epoch == 5
    seen5 = [labels_of(stream) for stream in ranks]
    assert len(seen5[0]) == len(seen5[1]) == 5
    assert set(seen5[0]) | set(seen5[1]) == set(range(9))
    for stream in ranks:
        stream.set_epoch(6)
    assert [labels_of(stream) for stream in ranks] != seen5


def test_device_augment_loader_checks_its_batches() -> None:
    floats = torch.utils.data.DataLoader([(torch.zeros(3, 8, 8), 0)] * 4, batch_size=2)
    with pytest.raises(TypeError, match=r"uint8 image batches \(B, C, H, W\)"):
        next(iter(DeviceAugmentLoader(floats, train=True, crop=4)))
    with pytest.raises(ValueError, match="crop 20 is larger than the resized images"):
        stream_loader(Faces(), 2, train=True, crop=20, resize=16, device="cpu", workers=0)
    with pytest.raises(ValueError, match="rank"):
        stream_loader(Faces(), 2, train=True, crop=8, resize=16, device="cpu", rank=2, world_size=2)
