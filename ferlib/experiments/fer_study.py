"""The stand-in FER study of notebook 05, read back: seeds, groups, paired tests, NCM, centers.

Twelve runs of :func:`ferlib.experiments.fer.run_fer` (``results/standin/run_study.sh``):
seeds 0, 1, 2 of softmax, center loss and DDA γ = 5 under both scalings, ``cpu`` profile.
This module reads what they wrote (``cpu-<run>-seed<S>.json`` and ``-test.npz``) and asks:

* did each run converge: are its last two test evaluations within one evaluation's noise
  (:func:`convergence`)?
* how do the losses do on the minority expressions (Fear, Disgust, Anger) and on the rest, by
  the classifier and by the nearest class mean of the 512-D features, Euclidean and cosine
  (notebook 04's rules), per seed and over seeds (:data:`GROUPS`)?
* are the differences real: McNemar and paired bootstrap per seed
  (:func:`ferlib.experiments.paired.paired_report` with :data:`PAIRS`)?
* what notebook 02's statistics of Wen et al.'s center step predict for Fear, the rarest
  class, and whether its center lags behind its features at the end of training
  (:func:`wen_prediction`, :func:`center_lag`, from the runs' checkpoints).

The commands::

    bash results/standin/run_study.sh
    python -m ferlib fer-report --root results/standin --seeds 0 1 2 \\
        --checkpoints 'runs/standin-ckpt-seed{seed}'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from ferlib.data.rafdb import RAFDB_CLASSES
from ferlib.experiments.paired import RULES, format_paired, paired_report
from ferlib.experiments.results import pct, write_json

__all__ = [
    "GROUPS",
    "PAIRS",
    "STUDY_RUNS",
    "center_lag",
    "convergence",
    "format_study",
    "group_accuracy",
    "load_fer_outputs",
    "study_report",
    "wen_prediction",
]

#: The study's runs: name -> file stem under the results folder, with ``{profile}`` and
#: ``{seed}`` (``run_fer`` names its files ``<profile>-<run>-seed<S>``).
STUDY_RUNS: dict[str, str] = {
    "softmax": "{profile}-softmax-seed{seed}",
    "center": "{profile}-center-seed{seed}",
    "dda-5 paper": "{profile}-dda-5-paper-seed{seed}",
    "dda-5 published": "{profile}-dda-5-published-seed{seed}",
}

_MINORITY = ("Fear", "Disgust", "Anger")
#: Groups of expressions (RAF-DB's label order): all seven, the three rarest, the other four.
GROUPS: dict[str, tuple[int, ...]] = {
    "all": tuple(range(len(RAFDB_CLASSES))),
    "minority": tuple(RAFDB_CLASSES.index(c) for c in _MINORITY),
    "rest": tuple(k for k, c in enumerate(RAFDB_CLASSES) if c not in _MINORITY),
}

#: The comparisons (A, B): each loss against softmax, and each DDA run against center loss.
PAIRS: tuple[tuple[str, str], ...] = (
    ("center", "softmax"),
    ("dda-5 paper", "softmax"),
    ("dda-5 published", "softmax"),
    ("dda-5 paper", "center"),
    ("dda-5 published", "center"),
)


def load_fer_outputs(path: str | Path) -> dict[str, np.ndarray]:
    """A FER run's ``-test.npz`` as int64 arrays (N,): ``labels``, ``classifier`` (the saved
    ``predictions``) and, when saved, ``ncm`` and ``cosine_ncm``."""
    with np.load(Path(path)) as z:
        out = {"labels": z["labels"].astype(np.int64), "classifier": z["predictions"]}
        out |= {rule: z[rule] for rule in ("ncm", "cosine_ncm") if rule in z.files}
    return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}


def group_accuracy(per_class: Sequence[float], group: Sequence[int]) -> float:
    """The mean of the per-class accuracies (%) of the classes in ``group``."""
    return pct(float(np.mean([per_class[k] for k in group])))


def convergence(result: Mapping[str, Any], n_test: int, z: float = 1.96) -> dict[str, Any]:
    """Whether a run's test accuracy was flat at the end: the difference between its last two
    evaluations against the 95% binomial half-width of one evaluation on ``n_test`` images,
    ``z·sqrt(p(1 − p)/n)``. Two evaluations of nearly the same network on the same images
    are strongly correlated, so this yardstick is generous to "flat" only when the
    difference is already small; it is the noise a reader would attach to one number.
    """
    tested = [h for h in result["history"] if "test_acc" in h]
    if len(tested) < 2:
        raise ValueError("convergence: the run has fewer than two test evaluations")
    (prev, last) = tested[-2:]
    p = last["test_acc"] / 100
    half_width = 100 * z * math.sqrt(p * (1 - p) / n_test)
    diff = last["test_acc"] - prev["test_acc"]
    return {
        "epochs": [prev["epoch"], last["epoch"]],
        "test_acc": [pct(prev["test_acc"]), pct(last["test_acc"])],
        "diff": pct(diff),
        "mean_class_diff": pct(last["test_mean_class_acc"] - prev["test_mean_class_acc"]),
        "half_width": pct(half_width),
        "flat": abs(diff) <= half_width,
    }


def wen_prediction(
    train_labels: Sequence[int] | np.ndarray,
    batch_size: int,
    alpha: float,
    *,
    epochs: int = 1,
    seed: int = 0,
    num_classes: int = len(RAFDB_CLASSES),
) -> list[dict[str, Any]]:
    """Notebook 02's statistics of Wen et al.'s center step, per class: predicted and measured.

    Predicted, with ``n_k ~ Binomial(batch_size, q_k)`` for the class's share ``q_k``: the
    mean count per batch, the chance that the class is absent (its center does not move) and
    the mean step ``α n/(1 + n)`` (the fraction of the way to the batch mean). Measured: the
    same over the batches the training loop really drew, ``epochs`` epochs of the shuffled
    order ``randperm(N, seed + e)`` that :class:`~ferlib.data.device.DeviceLoader` uses,
    incomplete last batches dropped as in training.
    """
    labels = torch.as_tensor(np.asarray(train_labels), dtype=torch.int64)
    n = len(labels)
    counts = []
    for e in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + e))
        full = (n // batch_size) * batch_size
        batches = labels[order[:full]].view(-1, batch_size)
        counts.append(torch.nn.functional.one_hot(batches, num_classes).sum(1))
    measured = torch.cat(counts).double()  # (steps, K)
    ks = np.arange(batch_size + 1)
    rows = []
    for k in range(num_classes):
        share = float((labels == k).double().mean())
        pmf = stats.binom.pmf(ks, batch_size, share)
        nk = measured[:, k]
        rows.append(
            {
                "class": k,
                "share": round(share, 5),
                "mean_count": round(share * batch_size, 3),
                "p_absent": round(float(pmf[0]), 4),
                "mean_step": round(float((pmf * alpha * ks / (1 + ks)).sum()), 4),
                "measured_mean_count": round(float(nk.mean()), 3),
                "measured_p_absent": round(float((nk == 0).double().mean()), 4),
                "measured_mean_step": round(float((alpha * nk / (1 + nk)).mean()), 4),
                "steps": len(nk),
            }
        )
    return rows


def center_lag(centers: torch.Tensor, means: torch.Tensor) -> list[float]:
    """How far each learned center (K, D) ended from its class's mean training feature
    (K, D), as a fraction of that mean's norm: ``‖c_k − m_k‖ / ‖m_k‖``.

    The means are those of the test-time view (centre crop, batch norm in eval mode), the
    centers followed the training view; that offset is common to every class, so compare a
    class's lag with the others' rather than with zero.
    """
    if centers.shape != means.shape:
        raise ValueError(
            f"center_lag: centers {tuple(centers.shape)} and means {tuple(means.shape)} differ"
        )
    lag = (centers.double() - means.double()).norm(dim=1) / means.double().norm(dim=1)
    return [round(v, 4) for v in lag.tolist()]


def _read(root: Path, stem: str) -> dict[str, Any]:
    path = root / f"{stem}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no result at {path}; run results/standin/run_study.sh (or "
            "`python -m ferlib fer --profile cpu --seed S ...`) first"
        )
    return json.loads(path.read_text())


def study_report(
    root: str | Path,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    profile: str = "cpu",
    checkpoints: str | None = None,
    train_labels: Sequence[int] | None = None,
    n_resamples: int = 2000,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Everything the module docstring lists, for the ``profile``'s runs under ``root``.

    ``checkpoints``: the folder of each seed's checkpoints, with ``{seed}``, for the centers'
    lag (left out when None or missing). ``train_labels``: the training labels, for the
    Wen-step statistics (left out when None). Written to ``out`` (JSON) when given.
    """
    root = Path(root)
    runs: dict[str, list[dict[str, Any]]] = {}
    prof: dict[str, Any] | None = None  # the profile, as the first result records it
    lags: dict[str, list[dict[str, Any]]] = {}
    templates = {
        name: t.replace("{profile}", profile) for name, t in STUDY_RUNS.items()
    }  # {seed} stays
    for name, template in templates.items():
        runs[name] = []
        for s in seeds:
            stem = template.format(seed=s)
            r = _read(root, stem)
            prof = prof or r["profile"]
            row: dict[str, Any] = {"seed": s, "status": r["status"], "seconds": r["seconds"]}
            if r["status"] != "ok":
                row["error"] = r.get("error", "")
                row["epochs_run"] = len(r["history"])
                runs[name].append(row)
                continue
            n_test = int(np.sum(r["confusion_matrix"]))
            row |= {
                "accuracy": r["accuracy"],
                "mean_class_accuracy": r["mean_class_accuracy"],
                "convergence": convergence(r, n_test),
                "feature_norm": round(r["history"][-1]["feature_norm"], 3),
            }
            for rule, key in (
                ("classifier", "per_class_accuracy"),
                ("ncm", "ncm_per_class_accuracy"),
                ("cosine_ncm", "cosine_ncm_per_class_accuracy"),
            ):
                if key in r:
                    row[rule] = {g: group_accuracy(r[key], c) for g, c in GROUPS.items()}
                    row[rule]["per_class"] = r[key]
            runs[name].append(row)
            ckpt = Path(checkpoints.format(seed=s)) / f"{stem}.pt" if checkpoints else None
            npz = root / f"{stem}-test.npz"
            if r["lam"] > 0 and ckpt is not None and ckpt.is_file():
                state = torch.load(ckpt, map_location="cpu", weights_only=True)
                with np.load(npz) as z:
                    means = torch.from_numpy(z["class_means"])
                lags.setdefault(name, []).append(
                    {"seed": s, "lag": center_lag(state["centers"]["centers"], means)}
                )
    summary = {}
    for name, rows in runs.items():
        ok = [r for r in rows if r["status"] == "ok"]
        summary[name] = {"finished": len(ok), "diverged": len(rows) - len(ok)}
        for key in ("accuracy", "mean_class_accuracy"):
            values = [r[key] for r in ok]
            if values:
                summary[name][key] = _spread(values)
        for rule in RULES:
            for group in GROUPS:
                values = [r[rule][group] for r in ok if rule in r]
                if values:
                    summary[name][f"{rule}_{group}"] = _spread(values)
    paired = paired_report(
        root,
        seeds,
        runs={name: t + "-test.npz" for name, t in templates.items()},
        pairs=PAIRS,
        rules=RULES,
        groups=GROUPS,
        n_resamples=n_resamples,
        num_classes=len(RAFDB_CLASSES),
        load=load_fer_outputs,
    )
    wen = None
    if train_labels is not None and prof is not None:
        wen = wen_prediction(
            train_labels,
            prof["batch_size"],
            prof["train"]["alpha"],
            epochs=prof["train"]["epochs"],
            seed=seeds[0],
        )
    report = {
        "root": str(root),
        "seeds": list(seeds),
        "classes": list(RAFDB_CLASSES),
        "groups": {k: list(v) for k, v in GROUPS.items()},
        "profile": prof,
        "runs": runs,
        "summary": summary,
        "paired": paired,
        "wen": wen,
        "center_lag": lags,
    }
    if out is not None:
        write_json(Path(out), report)
    return report


def _spread(values: Sequence[float]) -> dict[str, Any]:
    return {
        "mean": pct(float(np.mean(values))),
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }


def format_study(report: Mapping[str, Any]) -> str:
    """The report as text: per run and seed, convergence and accuracy by group and rule; then
    the Wen-step statistics, the centers' lag and the paired tests."""
    classes = report["classes"]
    lines = [
        "SYNTHETIC STAND-IN (not RAF-DB): stand-in FER study, test accuracy (%)",
        "min. = minority (Fear, Disgust, Anger: mean of their per-class accuracies); "
        "rest = the other four",
        f"{'run':16} {'seed':>4} {'acc':>6} {'avg':>6} {'min.':>6} {'rest':>6} "
        f"{'NCM min.':>8} {'cos min.':>8}  last two evaluations (flat?)",
    ]
    for name, rows in report["runs"].items():
        for r in rows:
            head = f"{name:16} {r['seed']:>4}"
            if r["status"] != "ok":
                lines.append(f"{head} diverged after {r['epochs_run']} epoch(s): {r['error'][:60]}")
                continue
            c = r["convergence"]
            ncm = r.get("ncm", {}).get("minority", float("nan"))
            cos = r.get("cosine_ncm", {}).get("minority", float("nan"))
            lines.append(
                f"{head} {r['accuracy']:6.2f} {r['mean_class_accuracy']:6.2f} "
                f"{r['classifier']['minority']:6.2f} {r['classifier']['rest']:6.2f} "
                f"{ncm:8.2f} {cos:8.2f}  {c['test_acc'][0]:.2f} -> {c['test_acc'][1]:.2f} "
                f"(±{c['half_width']:.2f}: {'flat' if c['flat'] else 'NOT flat'})"
            )
    lines += ["", "over seeds: mean [min, max]"]
    for name, s in report["summary"].items():
        cells = []
        for key, label in (
            ("accuracy", "acc"),
            ("mean_class_accuracy", "avg"),
            ("classifier_minority", "min."),
            ("ncm_minority", "NCM min."),
        ):
            if key in s:
                v = s[key]
                cells.append(f"{label} {v['mean']:.2f} [{v['min']:.2f}, {v['max']:.2f}]")
        diverged = f"  diverged on {s['diverged']} seed(s)" if s["diverged"] else ""
        lines.append(f"{name:16} " + "  ".join(cells) + diverged)
    if report.get("wen"):
        lines += [
            "",
            "Wen et al.'s center step per class (notebook 02): predicted (binomial) / measured "
            "over the batches the loop drew",
            f"{'class':10} {'E[n_k]':>13} {'P(absent)':>15} {'mean step':>15}",
        ]
        for w in report["wen"]:
            lines.append(
                f"{classes[w['class']]:10} {w['mean_count']:6.2f}/{w['measured_mean_count']:<6.2f} "
                f"{w['p_absent']:7.1%}/{w['measured_p_absent']:<7.1%} "
                f"{w['mean_step']:7.3f}/{w['measured_mean_step']:<7.3f}"
            )
    if report.get("center_lag"):
        lines += ["", "centers' lag at the end, ||c_k - m_k|| / ||m_k|| (m_k: class mean feature)"]
        lines.append(f"{'run':16} {'seed':>4} " + " ".join(f"{c[:8]:>8}" for c in classes))
        for name, rows in report["center_lag"].items():
            for r in rows:
                lag = " ".join(f"{v:8.3f}" for v in r["lag"])
                lines.append(f"{name:16} {r['seed']:>4} {lag}")
    lines += ["", "paired tests, per seed", format_paired(report["paired"])]
    return "\n".join(lines)
