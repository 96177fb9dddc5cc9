"""What every experiment's result files share: JSON and CSV writing, rounding, profiles.

A results file records the profile that made it (:func:`profile_record`). Files written
before profiles held a ``TrainConfig`` (issue 16) record it flat (``epochs``, ``lr``, ...
beside ``batch_size``); :func:`same_profile` compares both forms, so that committed
results can still be reused and merged.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import matplotlib.pyplot as plt

from ferlib.training import TrainConfig

__all__ = [
    "pct",
    "pcts",
    "profile_record",
    "resolve_profile",
    "same_profile",
    "save_figure",
    "write_csv",
    "write_json",
]

P = TypeVar("P")


def resolve_profile(profiles: Mapping[str, P], profile: str | P, what: str = "profile") -> P:
    """``profiles[profile]`` for a name (a clear error for an unknown one), else ``profile``."""
    if not isinstance(profile, str):
        return profile
    if profile not in profiles:
        raise ValueError(f"unknown {what} {profile!r}; choose from {sorted(profiles)}")
    return profiles[profile]


def pct(value: float) -> float:
    """A percentage as results files keep it: two decimals."""
    return round(float(value), 2)


def pcts(values: Iterable[float]) -> list[float]:
    """:func:`pct` of each value (per-class accuracies)."""
    return [pct(v) for v in values]


def profile_record(profile: Any) -> dict[str, Any]:
    """A profile as JSON-ready data: its fields, the recipe under ``train``, and ``counts``
    (when it has them) as a mapping ``{digit: count}``."""
    record = asdict(profile) if is_dataclass(profile) else dict(profile)
    if "counts" in record:
        record["counts"] = dict(record["counts"])
    return record


def _flat(record: Mapping[str, Any]) -> dict[str, Any]:
    """A profile record with its recipe's settings beside the data settings. A record of the
    old flat form lacks the recipe settings that it never varied: they had their defaults."""
    data = json.loads(json.dumps(dict(record)))
    train = data.pop("train", None)
    if train is None:  # the flat form: what it does not name was TrainConfig's default
        train = {f.name: getattr(TrainConfig(), f.name) for f in fields(TrainConfig)}
        train = {k: v for k, v in json.loads(json.dumps(train)).items() if k not in data}
    return data | train


def same_profile(
    a: Mapping[str, Any], b: Mapping[str, Any], ignore: Sequence[str] = ("eval_every",)
) -> bool:
    """Whether two profile records (:func:`profile_record`, either form) describe the same
    data and recipe, apart from the settings in ``ignore`` (testing never changes training)."""
    fa, fb = _flat(a), _flat(b)
    return {k: v for k, v in fa.items() if k not in ignore} == {
        k: v for k, v in fb.items() if k not in ignore
    }


def write_json(path: Path, table: Mapping[str, Any]) -> Path:
    """``table`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=1) + "\n")
    return path


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """A CSV file with a header row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Save a results figure (110 dpi, tight) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
