"""Paired comparisons of W-MNIST runs over seeds: does a loss help the minority digits?

Two runs of one seed were scored on the same 10,000 MNIST test images, so whether they
differ is a *paired* question: McNemar's exact test on the images one run gets right and the
other wrong, and a paired bootstrap interval of the difference
(:func:`ferlib.metrics.mcnemar_test`, :func:`ferlib.metrics.paired_bootstrap`). This module
reads the test outputs a study saved (``<run>-test.npz``,
:func:`~ferlib.experiments.wmnist.save_outputs`) and asks it for every seed, for each way of
reading a prediction (the classifier layer, the Euclidean and the cosine nearest class mean)
and for each group of digits (all, the majority, the minority), then counts on how many seeds
the difference is significant and in which direction, and reports its spread over seeds.

    python -m ferlib paired --root results/wmnist-repro --seeds 0 1 2
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ferlib.data.mnist import WMNIST_MINORITY
from ferlib.experiments.results import pct, write_json
from ferlib.experiments.wmnist import load_outputs
from ferlib.metrics import mcnemar_test, mean_class_accuracy_interval, paired_bootstrap

__all__ = [
    "GROUPS",
    "PAIRS",
    "REPRO_RUNS",
    "RULES",
    "compare",
    "format_paired",
    "paired_report",
]

#: The ways of reading a prediction that a study saves (keys of its ``-test.npz``).
RULES: tuple[str, ...] = ("classifier", "ncm", "cosine_ncm")

#: Groups of digits: all ten, the seven majority digits, the minority digits 2, 5, 8.
GROUPS: dict[str, tuple[int, ...]] = {
    "all": tuple(range(10)),
    "majority": tuple(d for d in range(10) if d not in WMNIST_MINORITY),
    "minority": WMNIST_MINORITY,
}

#: Where the reproduction study (``--profile repro``) keeps each run's test outputs, per seed:
#: one folder per scaling, ``paper-seed<S>/`` (softmax, center) and ``published-seed<S>/``
#: (DDA γ = 7 under the published scaling). Its DDA γ = 7 under the paper's scaling diverged
#: on every seed, and a diverged run leaves no outputs to compare.
REPRO_RUNS: dict[str, str] = {
    "softmax": "paper-seed{seed}/softmax-test.npz",
    "center": "paper-seed{seed}/center-test.npz",
    "dda-7 published": "published-seed{seed}/dda-7-test.npz",
}

#: The comparisons (A, B) asked: each loss against softmax, and DDA against center loss.
PAIRS: tuple[tuple[str, str], ...] = (
    ("center", "softmax"),
    ("dda-7 published", "softmax"),
    ("dda-7 published", "center"),
)


def compare(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    rule: str,
    classes: Sequence[int],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    num_classes: int = 10,
) -> dict[str, Any]:
    """Runs A and B (test outputs of :func:`~ferlib.experiments.wmnist.load_outputs`) under
    one ``rule``, on the test images whose label is in ``classes`` (of ``num_classes``).

    Returns accuracies (%) of A and B, the difference A − B with its paired bootstrap 95%
    interval, McNemar's discordant counts and exact p-value, and the difference in average
    per-class accuracy (over ``classes``) with its interval.
    """
    labels = np.asarray(a["labels"])
    if not np.array_equal(labels, np.asarray(b["labels"])):
        raise ValueError("compare: the two runs were not scored on the same test labels")
    for run, name in ((a, "A"), (b, "B")):
        if rule not in run:
            raise KeyError(f"compare: run {name} has no {rule!r} predictions; has {sorted(run)}")
    keep = np.isin(labels, np.asarray(classes))
    if not keep.any():
        raise ValueError(f"compare: no test image has a label in {list(classes)}")
    y, pa, pb = labels[keep], np.asarray(a[rule])[keep], np.asarray(b[rule])[keep]
    test = mcnemar_test(pa, pb, y)
    diff = paired_bootstrap(pa, pb, y, num_classes, n_resamples=n_resamples, seed=seed)
    return {
        "a_acc": pct(100 * np.mean(pa == y)),
        "b_acc": pct(100 * np.mean(pb == y)),
        "diff": pct(diff["acc"].value),
        "diff_ci": [pct(diff["acc"].low), pct(diff["acc"].high)],
        "mean_class_diff": pct(diff["mean_class_acc"].value),
        "mean_class_diff_ci": [pct(diff["mean_class_acc"].low), pct(diff["mean_class_acc"].high)],
        "only_a": test.only_a,
        "only_b": test.only_b,
        "p_value": float(f"{test.p_value:.3g}"),
        "n": int(keep.sum()),
    }


def load_wmnist(path: Path) -> dict[str, np.ndarray]:
    """A W-MNIST run's test outputs (:func:`~ferlib.experiments.wmnist.save_outputs`)."""
    return {k: v.numpy() for k, v in load_outputs(path).items()}


def _diverged(path: Path) -> bool:
    """Whether the run whose outputs would be at ``path`` (``<stem>-test.npz``) left a result
    ``<stem>.json`` that says it diverged (a diverged run saves no test outputs)."""
    record = path.with_name(path.name.removesuffix("-test.npz") + ".json")
    if not record.is_file():
        return False
    return json.loads(record.read_text()).get("status") == "diverged"


def _load(
    root: Path, template: str, seed: int, load: Callable[[Path], dict[str, np.ndarray]]
) -> dict[str, np.ndarray] | None:
    """The run's outputs, or None for a run recorded as diverged."""
    path = root / template.format(seed=seed)
    if not path.is_file():
        if _diverged(path):
            return None
        raise FileNotFoundError(
            f"paired: no test outputs at {path} (expected the <run>-test.npz that a finished "
            "run writes beside its result; a run recorded as diverged has none and is skipped)"
        )
    return load(path)


def paired_report(
    root: str | Path,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    runs: Mapping[str, str] = REPRO_RUNS,
    pairs: Sequence[tuple[str, str]] = PAIRS,
    rules: Sequence[str] = RULES,
    groups: Mapping[str, Sequence[int]] = GROUPS,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    out: str | Path | None = None,
    num_classes: int = 10,
    load: Callable[[Path], dict[str, np.ndarray]] = load_wmnist,
) -> dict[str, Any]:
    """Every pair × rule × group × seed compared (:func:`compare`), and per pair, rule and
    group a verdict over seeds: on how many seeds A is significantly better (McNemar
    p < ``alpha``), significantly worse, or neither, and the mean and range of the difference.
    Also each run's average per-class accuracy with its bootstrap interval (the classifier),
    the noise of the paper's metric for imbalance. Written to ``out`` (JSON) when given.

    ``runs`` maps a run's name to its ``.npz`` path under ``root``, with ``{seed}``;
    ``load`` reads one such file. A run recorded as diverged on a seed (its ``.json`` says
    so, and it left no outputs) is listed in ``diverged`` and that seed is left out of every
    comparison it is part of.
    """
    root = Path(root)
    unknown = sorted({name for pair in pairs for name in pair} - set(runs))
    if unknown:
        raise ValueError(f"paired: pairs name runs {unknown} that `runs` does not list")
    loaded = {s: {name: _load(root, t, s, load) for name, t in runs.items()} for s in seeds}
    diverged = {
        name: [s for s in seeds if loaded[s][name] is None]
        for name in runs
        if any(loaded[s][name] is None for s in seeds)
    }
    noise = {}
    for name in runs:
        per_seed = []
        for s in seeds:
            run = loaded[s][name]
            if run is None:
                continue
            iv = mean_class_accuracy_interval(
                run["classifier"], run["labels"], num_classes, n_resamples=n_resamples
            )
            per_seed.append({"seed": s, "value": pct(iv.value), "ci": [pct(iv.low), pct(iv.high)]})
        noise[name] = per_seed
    comparisons = []
    for a_name, b_name in pairs:
        for rule in rules:
            for group, classes in groups.items():
                per_seed = [
                    {"seed": s}
                    | compare(
                        loaded[s][a_name],
                        loaded[s][b_name],
                        rule,
                        classes,
                        n_resamples=n_resamples,
                        num_classes=num_classes,
                    )
                    for s in seeds
                    if loaded[s][a_name] is not None and loaded[s][b_name] is not None
                ]
                if not per_seed:
                    continue
                diffs = [c["diff"] for c in per_seed]
                significant = [c for c in per_seed if c["p_value"] < alpha]
                comparisons.append(
                    {
                        "a": a_name,
                        "b": b_name,
                        "rule": rule,
                        "group": group,
                        "seeds": per_seed,
                        "mean_diff": pct(np.mean(diffs)),
                        "diff_range": [min(diffs), max(diffs)],
                        "a_better": sum(c["diff"] > 0 for c in significant),
                        "b_better": sum(c["diff"] < 0 for c in significant),
                        "not_significant": len(per_seed) - len(significant),
                    }
                )
    report = {
        "root": str(root),
        "seeds": list(seeds),
        "runs": dict(runs),
        "alpha": alpha,
        "n_resamples": n_resamples,
        "groups": {k: list(v) for k, v in groups.items()},
        "diverged": diverged,
        "mean_class_acc_noise": noise,
        "comparisons": comparisons,
    }
    if out is not None:
        write_json(Path(out), report)
    return report


def format_paired(
    report: Mapping[str, Any],
    rules: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    noise: bool = True,
) -> str:
    """The report as text: one line per pair, rule and group, with each seed's difference
    (an asterisk marks McNemar p < alpha), the mean, and the verdict over seeds; only the
    ``rules`` and ``groups`` given (default: all), and the runs' average per-class accuracy
    intervals when ``noise``."""
    seeds = report["seeds"]
    head = " ".join(f"{'seed ' + str(s):>9}" for s in seeds)
    lines = [
        f"A - B in accuracy (points) on the same test images; * = McNemar p < {report['alpha']}",
        f"{'A vs B':26} {'rule':10} {'group':8} {head}   {'mean':>6}  A>B / A<B / n.s.",
    ]
    for c in report["comparisons"]:
        if (rules is not None and c["rule"] not in rules) or (
            groups is not None and c["group"] not in groups
        ):
            continue
        by_seed = {s["seed"]: s for s in c["seeds"]}
        cells = " ".join(
            f"{by_seed[s]['diff']:+8.2f}{'*' if by_seed[s]['p_value'] < report['alpha'] else ' '}"
            if s in by_seed
            else f"{'-':>8} "
            for s in seeds
        )
        verdict = f"{c['a_better']} / {c['b_better']} / {c['not_significant']}"
        pair = f"{c['a']} vs {c['b']}"
        lines.append(
            f"{pair:26} {c['rule']:10} {c['group']:8} {cells}   {c['mean_diff']:+6.2f}  {verdict}"
        )
    for name, bad in report.get("diverged", {}).items():
        lines.append(f"- : {name} diverged on seed(s) {', '.join(map(str, bad))}, no outputs")
    if not noise:
        return "\n".join(lines)
    lines.append("")
    lines.append("average per-class accuracy of the classifier, with its 95% bootstrap interval")
    for name, per_seed in report["mean_class_acc_noise"].items():
        cells = "  ".join(
            f"seed {r['seed']}: {r['value']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]"
            for r in per_seed
        )
        lines.append(f"{name:16} {cells}")
    return "\n".join(lines)
