"""A synthetic stand-in for RAF-DB: drawn faces in RAF-DB's exact layout, for users without a
licensed copy and for CI. Numbers measured on it are NOT RAF-DB numbers.

:func:`make_standin` writes::

    out/README.txt                                   # says SYNTHETIC STAND-IN, seed, scale
    out/standin.json                                 # manifest: scale, seed, size, counts
    out/basic/EmoLabel/list_patition_label.txt       # sic; "train_00001.jpg 5", no final newline
    out/basic/Image/aligned/train_00001_aligned.jpg  # size x size RGB JPEG
    out/basic/Image/aligned/test_0001_aligned.jpg

with RAF-DB's label codes (1..7 = Surprise, Fear, Disgust, Happiness, Sadness, Anger,
Neutral) and its per-class train/test counts times ``scale`` (:func:`standin_counts`), so the
class imbalance is RAF-DB's: Happiness most frequent, Fear and Disgust the minority.

Generative model (all drawing is vectorised numpy over chunks of images):

* **Face**: an oval head (skin tone from light to dark), optional hair cap, two eyes (sclera,
  iris with random gaze), a nose, brows and a mouth, drawn in face coordinates.
* **Expression**: each class has uniform ranges for seven action parameters: brow raise,
  brow slant (inner ends up or down), brow arch, eye opening, mouth width, mouth curve
  (smile or downturn), mouth opening, plus asymmetry (mouth tilt, one-sided opening, uneven
  brows) and teeth. An intensity in [0.3, 1] pulls every expression towards neutral, and each
  face has its own resting offsets (identity), so weak expressions look neutral.
* **Deliberate confusions**: Fear and Surprise share raised brows, wide eyes and an open
  mouth (Fear: flatter brows slanted inwards-up, wider stretched mouth); Disgust overlaps
  Anger (lowered brows, narrowed eyes) and Sadness (downturned mouth), differing mainly by
  its asymmetry. With few training samples these minority classes are the hard ones.
* **Nuisances**: head rotation (about 10 degrees), shift and scale; background colour,
  gradient and stripes; directional lighting and brightness; Gaussian pixel noise; and in
  30% of images an occluding rectangle or bar (hand, glasses, hair, object) over part of
  the face.

Everything is a function of ``(scale, seed, size)``: the same arguments give the same label
file bytes and the same pixels (JPEG quality is fixed; the encoder is PIL's libjpeg).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ferlib.data.rafdb import RAFDB_CLASSES, RAFDB_COUNTS

__all__ = [
    "StandinExistsError",
    "make_standin",
    "standin_counts",
]

# RAF-DB's official (train, test) image counts per class, in label order (12,271 / 3,068)
_COUNTS: dict[str, tuple[int, int]] = {
    name: (RAFDB_COUNTS["train"][i], RAFDB_COUNTS["test"][i])
    for i, name in enumerate(RAFDB_CLASSES)
}

MIN_PER_CLASS = 3  # every class keeps at least this many images per split, whatever the scale
JPEG_QUALITY = 92
LABEL_FILE = Path("basic/EmoLabel/list_patition_label.txt")  # sic: RAF-DB's spelling
IMAGE_DIR = Path("basic/Image/aligned")
MANIFEST = "standin.json"
README = "README.txt"
GENERATOR_VERSION = 1  # bump when the drawing changes, so old stand-ins are redrawn
_CHUNK = 64  # images drawn together; fixed so that the noise streams never change


class StandinExistsError(FileExistsError):
    """``out`` already holds a RAF-DB label file that this module did not write (perhaps the
    real dataset); the stand-in refuses to overwrite it."""


def standin_counts(scale: float = 1.0) -> dict[str, list[int]]:
    """Per-class ``[train, test]`` counts of a stand-in: RAF-DB's counts times ``scale``,
    rounded half up, at least ``MIN_PER_CLASS`` per split. Keys in RAF-DB's label order.

    Raises:
        ValueError: ``scale`` is not a positive finite number.
    """
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"standin_counts: scale must be a positive number, got {scale!r}")
    return {
        name: [max(MIN_PER_CLASS, math.floor(n * scale + 0.5)) for n in _COUNTS[name]]
        for name in RAFDB_CLASSES
    }


# ----------------------------------------------------------------------------- expressions

# Per class, uniform (low, high) ranges at full intensity. Units are face coordinates: the
# head is an ellipse of half-axes 0.6 x 0.78 centred at 0, v points down.
_PARAMS = (
    "brow_raise",  # brows up (+) or down (-)
    "brow_slant",  # inner ends up (+, sad/fear) or down (-, anger)
    "brow_arch",  # curvature of the brows
    "brow_asym",  # one brow lower than the other
    "eye_open",  # eye height relative to a neutral eye
    "mouth_w",  # half-width of the mouth
    "mouth_curve",  # corners up (-, smile) or down (+)
    "mouth_open",  # half-height of the opening
    "mouth_tilt",  # one corner higher than the other
    "mouth_side",  # opening larger on one side (disgust's raised upper lip)
)
_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "Neutral": {
        "brow_raise": (-0.015, 0.015),
        "brow_slant": (-0.015, 0.015),
        "brow_arch": (0.0, 0.02),
        "brow_asym": (0.0, 0.008),
        "eye_open": (0.85, 1.1),
        "mouth_w": (0.15, 0.21),
        "mouth_curve": (-0.015, 0.02),
        "mouth_open": (0.0, 0.008),
        "mouth_tilt": (0.0, 0.01),
        "mouth_side": (0.0, 0.1),
    },
    "Happiness": {
        "brow_raise": (-0.01, 0.04),
        "brow_slant": (-0.02, 0.03),
        "brow_arch": (0.0, 0.03),
        "brow_asym": (0.0, 0.01),
        "eye_open": (0.4, 0.95),
        "mouth_w": (0.2, 0.29),
        "mouth_curve": (-0.11, -0.035),
        "mouth_open": (0.0, 0.06),
        "mouth_tilt": (0.0, 0.02),
        "mouth_side": (0.0, 0.2),
    },
    "Surprise": {
        "brow_raise": (0.06, 0.15),
        "brow_slant": (-0.015, 0.035),
        "brow_arch": (0.015, 0.06),
        "brow_asym": (0.0, 0.012),
        "eye_open": (1.2, 1.75),
        "mouth_w": (0.1, 0.19),
        "mouth_curve": (-0.015, 0.025),
        "mouth_open": (0.04, 0.13),
        "mouth_tilt": (0.0, 0.015),
        "mouth_side": (0.0, 0.15),
    },
    "Fear": {
        "brow_raise": (0.04, 0.12),
        "brow_slant": (0.03, 0.09),
        "brow_arch": (0.0, 0.035),
        "brow_asym": (0.0, 0.015),
        "eye_open": (1.1, 1.65),
        "mouth_w": (0.17, 0.28),
        "mouth_curve": (0.01, 0.06),
        "mouth_open": (0.025, 0.1),
        "mouth_tilt": (0.0, 0.02),
        "mouth_side": (0.0, 0.25),
    },
    "Sadness": {
        "brow_raise": (-0.02, 0.04),
        "brow_slant": (0.025, 0.08),
        "brow_arch": (0.0, 0.02),
        "brow_asym": (0.0, 0.012),
        "eye_open": (0.55, 0.95),
        "mouth_w": (0.13, 0.21),
        "mouth_curve": (0.03, 0.085),
        "mouth_open": (0.0, 0.015),
        "mouth_tilt": (0.0, 0.02),
        "mouth_side": (0.0, 0.2),
    },
    "Anger": {
        "brow_raise": (-0.1, -0.03),
        "brow_slant": (-0.1, -0.03),
        "brow_arch": (0.0, 0.015),
        "brow_asym": (0.0, 0.015),
        "eye_open": (0.5, 0.9),
        "mouth_w": (0.12, 0.19),
        "mouth_curve": (-0.005, 0.035),
        "mouth_open": (0.0, 0.02),
        "mouth_tilt": (0.0, 0.02),
        "mouth_side": (0.0, 0.25),
    },
    "Disgust": {
        "brow_raise": (-0.07, 0.0),
        "brow_slant": (-0.06, 0.02),
        "brow_arch": (0.0, 0.015),
        "brow_asym": (0.005, 0.035),
        "eye_open": (0.45, 0.85),
        "mouth_w": (0.13, 0.21),
        "mouth_curve": (0.015, 0.065),
        "mouth_open": (0.0, 0.03),
        "mouth_tilt": (0.025, 0.07),
        "mouth_side": (0.3, 0.9),
    },
}
_TEETH = {  # probability that an open mouth shows its upper teeth
    "Neutral": 0.1,
    "Happiness": 0.6,
    "Surprise": 0.3,
    "Fear": 0.5,
    "Sadness": 0.1,
    "Anger": 0.4,
    "Disgust": 0.4,
}


def _draw_parameters(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """All per-image parameters of one split, drawn in bulk: arrays of shape (N,).

    ``labels`` are class indices 0..6 in RAF-DB order; the draw order is fixed so that a seed
    always gives the same faces.
    """
    n = len(labels)
    names = np.array(RAFDB_CLASSES)[labels]
    neutral = {k: 0.5 * (lo + hi) for k, (lo, hi) in _RANGES["Neutral"].items()}
    intensity = rng.uniform(0.3, 1.0, n)
    p: dict[str, np.ndarray] = {}
    for key in _PARAMS:
        lo = np.array([_RANGES[c][key][0] for c in names])
        hi = np.array([_RANGES[c][key][1] for c in names])
        full = rng.uniform(lo, hi)
        is_neutral = labels == RAFDB_CLASSES.index("Neutral")
        p[key] = np.where(is_neutral, full, neutral[key] + intensity * (full - neutral[key]))
    # identity: each face's resting offsets, independent of the expression
    p["brow_raise"] += rng.normal(0, 0.015, n)
    p["brow_slant"] += rng.normal(0, 0.012, n)
    p["eye_open"] *= rng.uniform(0.85, 1.15, n)
    p["mouth_w"] *= rng.uniform(0.9, 1.1, n)
    p["mouth_curve"] += rng.normal(0, 0.01, n)
    # the asymmetries take a random side
    for key in ("brow_asym", "mouth_tilt", "mouth_side"):
        p[key] *= rng.choice([-1.0, 1.0], n)
    teeth_p = np.array([_TEETH[c] for c in names])
    p["teeth"] = (rng.random(n) < teeth_p).astype(float)
    # identity and pose
    p["eye_x"] = rng.uniform(0.21, 0.27, n)
    p["eye_y"] = rng.uniform(-0.15, -0.08, n)
    p["eye_w"] = rng.uniform(0.09, 0.12, n)
    p["gaze_x"] = rng.uniform(-0.03, 0.03, n)
    p["gaze_y"] = rng.uniform(-0.01, 0.01, n)
    p["mouth_y"] = rng.uniform(0.33, 0.42, n)
    p["lip"] = rng.uniform(0.014, 0.03, n)
    p["brow_thick"] = rng.uniform(0.022, 0.04, n)
    p["head_w"] = rng.uniform(0.55, 0.65, n)
    p["head_h"] = rng.uniform(0.72, 0.84, n)
    p["angle"] = np.clip(rng.normal(0, 0.17, n), -0.4, 0.4)  # radians, about 10 degrees
    p["shift_x"] = rng.uniform(-0.08, 0.08, n)
    p["shift_y"] = rng.uniform(-0.06, 0.1, n)
    p["zoom"] = rng.uniform(0.75, 0.98, n)  # face units per image unit
    tone = rng.random(n)
    light, dark = np.array([0.96, 0.8, 0.7]), np.array([0.36, 0.24, 0.17])
    p["skin"] = light + tone[:, None] * (dark - light) + rng.normal(0, 0.03, (n, 3))
    p["hair_on"] = (rng.random(n) < 0.75).astype(float)
    p["hairline"] = rng.uniform(-0.66, -0.48, n)
    p["hair"] = rng.uniform(0.03, 0.45, (n, 1)) * rng.uniform(0.6, 1.0, (n, 3))
    p["bg"] = rng.uniform(0.05, 0.95, (n, 3))
    p["bg_grad"] = rng.uniform(-0.25, 0.25, (n, 2))
    p["stripe_amp"] = rng.uniform(0, 0.12, n) * (rng.random(n) < 0.5)
    p["stripe_freq"] = rng.uniform(3, 14, n)
    p["stripe_dir"] = rng.uniform(0, np.pi, n)
    p["stripe_phase"] = rng.uniform(0, 2 * np.pi, n)
    p["light_amp"] = rng.uniform(0.0, 0.4, n)
    p["light_dir"] = rng.uniform(0, 2 * np.pi, n)
    p["brightness"] = rng.uniform(0.75, 1.15, n)
    p["noise"] = rng.uniform(0.01, 0.06, n)
    p["occ_on"] = (rng.random(n) < 0.3).astype(float)
    bar = rng.random(n) < 0.5  # a thin bar across (glasses, hair strand) or a block (hand)
    p["occ_cx"] = rng.uniform(-0.45, 0.45, n)
    p["occ_cy"] = rng.uniform(-0.35, 0.5, n)
    p["occ_w"] = np.where(bar, rng.uniform(0.6, 1.4, n), rng.uniform(0.2, 0.55, n))
    p["occ_h"] = np.where(bar, rng.uniform(0.06, 0.14, n), rng.uniform(0.15, 0.45, n))
    p["occ_angle"] = rng.uniform(-0.5, 0.5, n)
    p["occ_color"] = np.where(
        (rng.random(n) < 0.4)[:, None],
        p["skin"] * rng.uniform(0.85, 1.1, (n, 1)),  # a hand
        rng.uniform(0.0, 1.0, (n, 3)),  # an object
    )
    return p


# ----------------------------------------------------------------------------- drawing


def _soft(d: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """Coverage of a shape from a signed distance ``d`` (negative inside): 1 inside, 0
    outside, a linear ramp of width ``edge`` (about one pixel) across the border."""
    return np.clip(0.5 - d / edge, 0.0, 1.0)


def _paint(img: np.ndarray, mask: np.ndarray, color: np.ndarray) -> None:
    """In place: ``img (B, 3, H, W) += mask * (color - img)``, i.e. paint ``color`` (B, 3, 1, 1)
    or (3, 1, 1) with coverage ``mask`` (B, H, W)."""
    diff = color - img
    diff *= mask[:, None]
    img += diff


def _render(p: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a chunk of faces from parameters ``p`` (arrays of shape (B,) or (B, 3)).

    Returns:
        uint8 images (B, size, size, 3).
    """
    f32 = np.float32

    def col(key: str) -> np.ndarray:  # (B,) -> (B, 1, 1)
        return p[key].astype(f32)[:, None, None]

    def rgb(x: np.ndarray) -> np.ndarray:  # (B, 3) or (3,) -> (B, 3, 1, 1) or (3, 1, 1)
        return np.asarray(x, dtype=f32)[..., None, None]

    axis = (np.arange(size, dtype=f32) + 0.5) / size * 2 - 1
    y, x = np.meshgrid(axis, axis, indexing="ij")
    x, y = x[None], y[None]  # image coordinates (1, H, W) in [-1, 1], y down

    # background: colour, gradient, stripes
    g = p["bg_grad"].astype(f32)
    d = np.cos(col("stripe_dir")) * x + np.sin(col("stripe_dir")) * y
    shade = g[:, 0, None, None] * x + g[:, 1, None, None] * y
    shade = shade + col("stripe_amp") * np.sin(col("stripe_freq") * d + col("stripe_phase"))
    img = np.clip(rgb(p["bg"]) + shade[:, None], 0, 1).astype(f32)  # (B, 3, H, W)

    # face coordinates: undo shift, rotation and zoom
    ca, sa, z = np.cos(col("angle")), np.sin(col("angle")), col("zoom")
    xs, ys = x - col("shift_x"), y - col("shift_y")
    u = (ca * xs + sa * ys) * z
    v = (-sa * xs + ca * ys) * z
    edge = 2.0 / size * z * 1.2  # about one pixel, in face units
    au = np.abs(u)

    # head and hair
    hw, hh = col("head_w"), col("head_h")
    r = np.sqrt((u / hw) ** 2 + (v / hh) ** 2)
    hair_r = np.sqrt((u / (hw + 0.04)) ** 2 + ((v + 0.02) / (hh + 0.05)) ** 2)
    hair_mask = _soft((hair_r - 1) * hw, edge) * _soft(v - col("hairline"), edge)
    hair_mask *= col("hair_on")
    _paint(img, hair_mask * (v < 0), rgb(p["hair"]))
    head = _soft((r - 1) * hw, edge)
    skin = rgb(np.clip(p["skin"], 0, 1)) * (1.0 - 0.18 * np.clip(r, 0, 1) ** 3)[:, None]
    _paint(img, head, skin)
    _paint(img, hair_mask, rgb(p["hair"]))

    # brows: a thick curve above each eye, inner end at |u| = 0.07, outer at 0.37
    t_in = np.clip((0.37 - au) / 0.3, 0, 1)  # 1 at the inner end, 0 at the outer end
    side = np.sign(u)
    brow_v = (
        col("eye_y")
        - 0.17
        - col("brow_raise")
        - col("brow_slant") * (t_in - 0.5)
        - col("brow_arch") * (1 - (2 * t_in - 1) ** 2)
        + col("brow_asym") * side
    )
    along = np.maximum(0.07 - au, au - 0.37)  # distance outside the brow's extent
    brow = _soft(np.maximum(np.abs(v - brow_v) - col("brow_thick"), along), edge)
    _paint(img, brow * head, rgb(p["hair"] * 0.8))

    # eyes: sclera, iris, eyelid line
    ex, ey, ew = col("eye_x"), col("eye_y"), col("eye_w")
    eh = 0.05 * col("eye_open")
    du, dv = au - ex, v - ey
    eye_r = np.sqrt((du / ew) ** 2 + (dv / eh) ** 2)
    eye = _soft((eye_r - 1) * eh, edge)
    _paint(img, eye, rgb(np.array([0.93, 0.92, 0.9])))
    iris_d = np.sqrt((u - side * ex - col("gaze_x")) ** 2 + (dv - col("gaze_y")) ** 2)
    _paint(img, eye * _soft(iris_d - 0.045, edge), rgb(np.array([0.12, 0.08, 0.06])))
    lid = _soft(np.abs(eye_r - 1) * eh - 0.008, edge) * (dv < 0) * (np.abs(du) < ew)
    _paint(img, lid * head, rgb(p["skin"] * 0.45))

    # nose: a shaded ridge and a base
    ridge = _soft(np.maximum(np.abs(u - 0.015) - 0.012, np.abs(v - 0.08) - 0.12), edge)
    base = _soft(np.sqrt((u / 0.07) ** 2 + ((v - 0.2) / 0.025) ** 2) * 0.025 - 0.025, edge)
    _paint(img, 0.35 * np.maximum(ridge, base) * head, rgb(p["skin"] * 0.55))

    # mouth: centre line my + curve t^2 + tilt t, opening h(t), lips around it
    mw = col("mouth_w")
    t = u / mw
    inside = np.clip(1 - t**2, 0, 1)
    v0 = col("mouth_y") + col("mouth_curve") * t**2 + col("mouth_tilt") * t
    h = col("mouth_open") * np.sqrt(inside) * (1 + col("mouth_side") * t)
    dist = np.abs(v - v0)
    beyond = (np.abs(t) - 1) * mw  # outside the corners
    lips = _soft(np.maximum(dist - h - col("lip") * (0.5 + 0.5 * inside), beyond), edge)
    lip_color = rgb(p["skin"] * np.array([0.85, 0.55, 0.55]))
    _paint(img, lips * head, lip_color)
    interior = _soft(np.maximum(dist - h, beyond), edge) * (h > 0.002)
    _paint(img, interior * head, rgb(np.array([0.25, 0.06, 0.06])))
    teeth = interior * (v < v0 - 0.3 * h) * col("teeth")
    _paint(img, teeth * head, rgb(np.array([0.9, 0.88, 0.82])))

    # lighting and brightness (over everything), then occlusion, then sensor noise
    ld = col("light_dir")
    light = 1 + col("light_amp") * (np.cos(ld) * x + np.sin(ld) * y)
    img *= (light * col("brightness"))[:, None]
    oa = col("occ_angle")
    ox, oy = x - col("occ_cx"), y - col("occ_cy")
    ou, ov = np.cos(oa) * ox + np.sin(oa) * oy, -np.sin(oa) * ox + np.cos(oa) * oy
    occ = _soft(np.maximum(np.abs(ou) - col("occ_w") / 2, np.abs(ov) - col("occ_h") / 2), edge)
    _paint(img, occ * col("occ_on"), rgb(p["occ_color"]))
    img += rng.standard_normal(img.shape, dtype=f32) * col("noise")[:, None]
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1).copy()


# ----------------------------------------------------------------------------- the stand-in


def _names(split: str, n: int) -> list[str]:
    """RAF-DB's file names: ``train_00001.jpg`` (5 digits) or ``test_0001.jpg`` (4 digits)."""
    digits = 5 if split == "train" else 4
    return [f"{split}_{i:0{digits}d}.jpg" for i in range(1, n + 1)]


def _aligned(name: str) -> str:
    """``train_00001.jpg`` -> ``train_00001_aligned.jpg``."""
    return name[: -len(".jpg")] + "_aligned.jpg"


def _plan(scale: float, seed: int) -> list[tuple[str, str, int]]:
    """Every image of the stand-in as ``(split, name, label code 1..7)``, train then test;
    the classes are shuffled within each split (like RAF-DB's file)."""
    counts = standin_counts(scale)
    rng = np.random.default_rng([seed, 0])
    plan: list[tuple[str, str, int]] = []
    for s, split in enumerate(("train", "test")):
        codes = np.repeat(np.arange(1, 8), [counts[c][s] for c in RAFDB_CLASSES])
        codes = rng.permutation(codes)
        plan += [(split, n, int(k)) for n, k in zip(_names(split, len(codes)), codes, strict=True)]
    return plan


def _manifest(scale: float, seed: int, size: int) -> dict:
    return {
        "what": "synthetic stand-in for RAF-DB (NOT RAF-DB), written by ferlib.data.synthetic",
        "version": GENERATOR_VERSION,
        "scale": float(scale),
        "seed": int(seed),
        "size": int(size),
        "jpeg_quality": JPEG_QUALITY,
        "counts": standin_counts(scale),
        "complete": False,
    }


def _is_complete(out: Path, expected: dict) -> bool:
    """True when ``out`` holds a finished stand-in made with the same parameters."""
    try:
        saved = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(saved, dict) or not saved.get("complete"):
        return False
    if any(saved.get(k) != expected[k] for k in ("version", "scale", "seed", "size", "counts")):
        return False
    if not (out / LABEL_FILE).is_file() or not (out / README).is_file():
        return False
    n = sum(sum(c) for c in expected["counts"].values())
    names = os.listdir(out / IMAGE_DIR) if (out / IMAGE_DIR).is_dir() else []
    return len(names) == n


def _readme(scale: float, seed: int, size: int, counts: dict[str, list[int]]) -> str:
    train, test = (sum(c[s] for c in counts.values()) for s in (0, 1))
    rows = "\n".join(
        f"  {k}  {name:<10} {c[0]:>6} {c[1]:>6}"
        for k, (name, c) in enumerate(counts.items(), start=1)
    )
    return f"""THIS IS A SYNTHETIC STAND-IN, NOT RAF-DB.

Every image in this folder was drawn by a program (ferlib.data.synthetic.make_standin):
cartoon faces, an oval head with expression-dependent brows, eyes and mouth, under random
pose, skin tone, lighting, background, noise and occlusion. No image shows a real person
and nothing here comes from RAF-DB. It only copies RAF-DB's folder layout, file names,
label codes and class imbalance, so that code written for RAF-DB runs on it.

NUMBERS MEASURED ON THIS STAND-IN ARE NOT RAF-DB NUMBERS. Do not report them as RAF-DB
results or compare them with the paper's tables. To get RAF-DB, request it from its
authors (http://www.whdeng.cn/RAF/model1.html) under their licence.

How it was made: make_standin(out, scale={scale}, seed={seed}, size={size}), generator
version {GENERATOR_VERSION}; {size}x{size} RGB JPEG (quality {JPEG_QUALITY}).
Counts are RAF-DB's official train/test counts times scale={scale}
(at least {MIN_PER_CLASS} per class and split): {train} train, {test} test.

  code class        train   test
{rows}

Layout (as RAF-DB's):
  basic/EmoLabel/list_patition_label.txt   (sic) "train_00001.jpg 5" per line
  basic/Image/aligned/<name>_aligned.jpg
"""


def make_standin(
    out: str | Path,
    scale: float = 1.0,
    seed: int = 0,
    size: int = 100,
    progress: bool = True,
) -> Path:
    """Write a synthetic stand-in for RAF-DB (basic emotions) under ``out`` and return it.

    The layout, file names, label codes and class imbalance are RAF-DB's (see the module
    docstring); ``out/README.txt`` says it is a SYNTHETIC STAND-IN and how it was made. If
    ``out`` already holds a complete stand-in made with the same ``(scale, seed, size)`` it
    is reused as is; a stand-in made with other parameters (or left unfinished) is replaced.

    Args:
        out: the folder to write (created if needed); pass it as a RAF-DB root.
        scale: fraction of RAF-DB's per-class counts (1.0: 12,271 train, 3,068 test).
        seed: the random seed; same arguments, same label file bytes and pixels.
        size: image side in pixels (RAF-DB's aligned images: 100).
        progress: show a tqdm progress bar.

    Raises:
        ValueError: ``scale`` is not positive, or ``size`` is below 16.
        StandinExistsError: ``out`` holds a RAF-DB label file that is not a stand-in's (it
            may be the real dataset, which is never overwritten).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"make_standin: size must be an integer >= 16, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"make_standin: seed must be a non-negative integer, got {seed!r}")
    counts = standin_counts(scale)  # validates scale
    out = Path(out)
    manifest = _manifest(scale, seed, size)
    if _is_complete(out, manifest):
        return out
    if (out / MANIFEST).is_file():  # ours, but other parameters or unfinished: start afresh
        shutil.rmtree(out / "basic", ignore_errors=True)
    elif (out / LABEL_FILE).exists() or (out / IMAGE_DIR).exists():
        raise StandinExistsError(
            f"make_standin: {out} already holds {LABEL_FILE} or {IMAGE_DIR} but no {MANIFEST}: "
            "it may be the real RAF-DB, which is never overwritten. Choose another folder."
        )
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    (out / LABEL_FILE).parent.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")

    plan = _plan(scale, seed)
    bar = tqdm(total=len(plan), desc="RAF-DB stand-in", disable=not progress, unit="img")
    try:
        for s, split in enumerate(("train", "test")):
            items = [item for item in plan if item[0] == split]
            labels = np.array([k - 1 for _, _, k in items])
            params = _draw_parameters(labels, np.random.default_rng([seed, 1, s]))
            for c, start in enumerate(range(0, len(items), _CHUNK)):
                stop = min(start + _CHUNK, len(items))
                chunk = {k: a[start:stop] for k, a in params.items()}
                pixels = _render(chunk, size, np.random.default_rng([seed, 2, s, c]))
                for (_, name, _), array in zip(items[start:stop], pixels, strict=True):
                    Image.fromarray(array).save(
                        out / IMAGE_DIR / _aligned(name), format="JPEG", quality=JPEG_QUALITY
                    )
                bar.update(stop - start)
    finally:
        bar.close()

    lines = "\n".join(f"{name} {k}" for _, name, k in plan)  # no final newline, like RAF-DB's
    (out / LABEL_FILE).write_bytes(lines.encode("ascii"))
    (out / README).write_text(_readme(scale, seed, size, counts))
    manifest["complete"] = True
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out
