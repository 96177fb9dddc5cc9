"""Batch augmentation on the device: five crops + flip, centre crop, normalisation.

Expected crop corners are written out by hand (not taken from `crop_offsets`), on
non-square images where every position has a distinct corner, so that an off-by-one,
swapped corners or a flip of the wrong axis each fail a test.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from ferlib.data.augment import (
    CROP_POSITIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RAFDB_MEAN,
    RAFDB_STD,
    center_crop,
    crop_offsets,
    five_crop_flip,
    normalize,
    random_five_crop_flip,
    sample_five_crop_flip,
    to_rgb,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# H=12, W=17, size 9: (top, left) per position, by hand.
H, W, S = 12, 17, 9
CORNERS = {
    0: (1, 4),  # centre: (12 - 9) // 2 = 1, (17 - 9) // 2 = 4
    1: (0, 0),  # top-left
    2: (0, 8),  # top-right
    3: (3, 0),  # bottom-left
    4: (3, 8),  # bottom-right
}


def _images(b: int = 6, c: int = 3, h: int = H, w: int = W, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, h, w), generator=gen, dtype=torch.uint8)


def _by_slicing(image: Tensor, position: int, flip: bool, size: int = S) -> Tensor:
    top, left = CORNERS[position]
    crop = image[:, top : top + size, left : left + size]
    return crop.flip(-1) if flip else crop


def test_crop_offsets_values() -> None:
    assert CROP_POSITIONS == ("center", "top_left", "top_right", "bottom_left", "bottom_right")
    assert crop_offsets(H, W, S).tolist() == [list(CORNERS[p]) for p in range(5)]
    raf = crop_offsets(100, 100, 90)
    assert raf.dtype == torch.int64 and raf.shape == (5, 2)
    assert raf.tolist() == [[5, 5], [0, 0], [0, 10], [10, 0], [10, 10]]
    assert crop_offsets(256, 256, 224)[0].tolist() == [16, 16]
    assert crop_offsets(101, 100, 90)[0].tolist() == [5, 5]  # floor of 5.5
    assert crop_offsets(90, 90, 90).tolist() == [[0, 0]] * 5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("position", range(5))
def test_each_crop_matches_slicing(position: int, flip: bool, device: str) -> None:
    images = _images().to(device)
    b = images.shape[0]
    positions = torch.full((b,), position, dtype=torch.int64, device=device)
    flips = torch.full((b,), flip, dtype=torch.bool, device=device)
    out = five_crop_flip(images, S, positions, flips)
    assert out.shape == (b, 3, S, S) and out.dtype == torch.uint8 and out.device == images.device
    for i in range(b):
        assert torch.equal(out[i], _by_slicing(images[i], position, flip))


def test_mixed_batch_matches_slicing() -> None:
    images = _images(b=10)
    positions = torch.tensor([0, 1, 2, 3, 4, 4, 3, 2, 1, 0])
    flips = torch.tensor([False, True] * 5)
    out = five_crop_flip(images, S, positions, flips)
    for i in range(10):
        assert torch.equal(out[i], _by_slicing(images[i], int(positions[i]), bool(flips[i])))


def test_flip_is_horizontal() -> None:
    """Pixel values = 10 * row + column: a horizontal flip reverses the columns only."""
    rows = torch.arange(H)[:, None] * 10
    cols = torch.arange(W)[None, :]
    image = (rows + cols).to(torch.uint8).expand(1, 2, H, W)
    out = five_crop_flip(image, S, torch.tensor([1]), torch.tensor([True]))[0, 0]
    assert out[0].tolist() == list(range(8, -1, -1))  # top row, columns 8..0
    assert out[:, -1].tolist() == [10 * r for r in range(9)]  # rows still top to bottom
    plain = five_crop_flip(image, S, torch.tensor([1]), torch.tensor([False]))[0, 0]
    assert torch.equal(out, plain.flip(1))


@pytest.mark.parametrize("device", DEVICES)
def test_random_crop_uses_sampled_positions(device: str) -> None:
    images = _images(b=40).to(device)
    gen = torch.Generator(device=device).manual_seed(7)
    out = random_five_crop_flip(images, S, generator=gen)
    gen = torch.Generator(device=device).manual_seed(7)
    positions, flips = sample_five_crop_flip(40, gen, device)
    assert positions.device == images.device and flips.dtype == torch.bool
    assert len(set(positions.tolist())) == 5 and 0 < int(flips.sum()) < 40
    for i in range(40):
        expected = _by_slicing(images[i], int(positions[i]), bool(flips[i]))
        assert torch.equal(out[i], expected)


def test_cpu_generator_with_device_images() -> None:
    device = DEVICES[-1]
    images = _images(b=8).to(device)
    out = random_five_crop_flip(images, S, generator=torch.Generator().manual_seed(3))
    positions, flips = sample_five_crop_flip(8, torch.Generator().manual_seed(3), device)
    assert torch.equal(out, five_crop_flip(images, S, positions, flips))


def test_positions_uniform_flips_half() -> None:
    n = 20_000
    positions, flips = sample_five_crop_flip(n, torch.Generator().manual_seed(0))
    counts = torch.bincount(positions, minlength=5)
    assert counts.shape == (5,)
    assert all(3700 < int(k) < 4300 for k in counts)  # 4000 expected, sd ~57
    assert 0.47 < flips.float().mean().item() < 0.53
    joint = torch.bincount(positions * 2 + flips.long(), minlength=10)
    assert all(1700 < int(k) < 2300 for k in joint)  # independent: 2000 each, sd ~42


def test_random_crop_distribution_on_images() -> None:
    """Identify each output's position and flip from its pixels: all ten cases occur."""
    image = _images(b=1, c=1)
    images = image.expand(2000, 1, H, W).contiguous()
    out = random_five_crop_flip(images, S, generator=torch.Generator().manual_seed(1))
    cases = {(p, f): _by_slicing(image[0], p, f) for p in range(5) for f in (False, True)}
    found = []
    for crop in out:
        matches = [key for key, ref in cases.items() if torch.equal(crop, ref)]
        assert len(matches) == 1
        found.append(matches[0])
    counts = {key: found.count(key) for key in cases}
    assert all(140 < k < 260 for k in counts.values()), counts  # 200 expected


def test_seeded_generator_is_deterministic() -> None:
    images = _images(b=64)
    a = random_five_crop_flip(images, S, torch.Generator().manual_seed(5))
    b = random_five_crop_flip(images, S, torch.Generator().manual_seed(5))
    c = random_five_crop_flip(images, S, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    torch.manual_seed(11)
    d = random_five_crop_flip(images, S)
    torch.manual_seed(11)
    assert torch.equal(d, random_five_crop_flip(images, S))


def test_empty_batch() -> None:
    out = random_five_crop_flip(_images(b=0), S)
    assert out.shape == (0, 3, S, S) and out.dtype == torch.uint8


def test_center_crop() -> None:
    images = _images()
    assert torch.equal(center_crop(images, S), images[:, :, 1:10, 4:13])
    raf = _images(b=2, h=100, w=100)
    assert torch.equal(center_crop(raf, 90), raf[:, :, 5:95, 5:95])
    affectnet = _images(b=1, h=256, w=256)
    assert torch.equal(center_crop(affectnet, 224), affectnet[:, :, 16:240, 16:240])
    positions = torch.zeros(6, dtype=torch.int64)
    flips = torch.zeros(6, dtype=torch.bool)
    assert torch.equal(center_crop(images, S), five_crop_flip(images, S, positions, flips))


def test_normalize_values() -> None:
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 5)
    out = normalize(images, RAFDB_MEAN, RAFDB_STD)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 5)
    expected = [
        (0 / 255 - 0.5752) / 0.2086,
        (128 / 255 - 0.4495) / 0.1911,
        (255 / 255 - 0.4012) / 0.1827,
    ]
    for ch in range(3):
        assert torch.allclose(out[:, ch], torch.full((2, 4, 5), expected[ch]), atol=1e-6)
    default = normalize(images)  # ImageNet statistics
    assert default[0, 0, 0, 0].item() == pytest.approx(-0.485 / 0.229, abs=1e-6)
    assert default[0, 2, 0, 0].item() == pytest.approx((1 - 0.406) / 0.225, abs=1e-6)
    grey = normalize(torch.full((1, 1, 2, 2), 51, dtype=torch.uint8), 0.5, 0.25)
    assert torch.allclose(grey, torch.full((1, 1, 2, 2), (0.2 - 0.5) / 0.25))
    assert images.dtype == torch.uint8  # input untouched


def test_statistics_constants() -> None:
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)
    assert RAFDB_MEAN == (0.5752, 0.4495, 0.4012)
    assert RAFDB_STD == (0.2086, 0.1911, 0.1827)


def test_to_rgb() -> None:
    grey = _images(c=1)
    rgb = to_rgb(grey)
    assert rgb.shape == (6, 3, H, W)
    assert all(torch.equal(rgb[:, c], grey[:, 0]) for c in range(3))
    colour = _images()
    assert to_rgb(colour) is colour
    assert normalize(to_rgb(grey)).shape == (6, 3, H, W)
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3"):
        to_rgb(_images(c=2))


@pytest.mark.parametrize(
    "call",
    [
        lambda x: random_five_crop_flip(x, 13),
        lambda x: center_crop(x, 13),
        lambda x: crop_offsets(12, 17, 13),
    ],
)
def test_crop_larger_than_image(call) -> None:
    with pytest.raises(ValueError, match=r"crop size 13 is larger than the images \(12x17"):
        call(_images())


def test_non_uint8_and_wrong_ndim() -> None:
    floats = _images().float()
    for fn in (lambda x: random_five_crop_flip(x, S), lambda x: center_crop(x, S), normalize):
        with pytest.raises(TypeError, match="expected uint8 images"):
            fn(floats)
        with pytest.raises(ValueError, match=r"\(B, C, H, W\) \(ndim 4\), got shape \(3, 12, 17\)"):
            fn(_images()[0])


def test_bad_arguments() -> None:
    images = _images()
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        center_crop(images, 0)
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        random_five_crop_flip(images, True)
    flips = torch.zeros(6, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"positions must be in 0\.\.4"):
        five_crop_flip(images, S, torch.tensor([0, 1, 2, 3, 4, 5]), flips)
    with pytest.raises(ValueError, match=r"positions of shape \(6,\)"):
        five_crop_flip(images, S, torch.zeros(5, dtype=torch.int64), flips)
    with pytest.raises(TypeError, match="integer positions"):
        five_crop_flip(images, S, torch.zeros(6), flips)
    with pytest.raises(ValueError, match="flips as a bool tensor"):
        five_crop_flip(images, S, torch.zeros(6, dtype=torch.int64), torch.zeros(6))
    with pytest.raises(ValueError, match=r"one mean per channel.*to_rgb"):
        normalize(_images(c=1), IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(ValueError, match="one std per channel"):
        normalize(images, IMAGENET_MEAN, (0.2, 0.2))
    with pytest.raises(ValueError, match="std must be > 0"):
        normalize(images, IMAGENET_MEAN, (0.2, 0.0, 0.2))
