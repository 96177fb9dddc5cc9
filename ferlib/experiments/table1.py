"""The W-MNIST study (paper Sec. 4.1): Table 1 and Fig. 2, reproduced end to end.

Six runs of LeNets++ on W-MNIST, tested on the full MNIST test set: softmax loss,
center loss (λ = 0.01) and DDA loss (λ = 0.01, γ = 1, 3, 5, 7), under a profile of
:mod:`ferlib.experiments.wmnist`.

Results land in ``out_dir``: ``table1.json`` / ``table1.csv`` / ``table1.txt`` (overall and
per-class test accuracy per run, of the classifier and of the nearest class mean of the
features, with profile, seed, machine and wall time), the figures, and one checkpoint per
run, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from ferlib.data import WMNIST_SEED, TensorLoader, class_counts
from ferlib.experiments.results import (
    profile_record,
    resolve_profile,
    save_figure,
    write_csv,
    write_json,
)
from ferlib.experiments.wmnist import (
    PAPER_TABLE1,
    PROFILES,
    RUNS,
    StudyProfile,
    classifier_and_ncm,
    load_study_data,
    run_config,
    save_outputs,
)
from ferlib.losses import Scaling
from ferlib.models import LeNetsPP
from ferlib.plots import (
    plot_accuracy_vs_gamma,
    plot_class_distribution,
    plot_feature_panels,
    plot_per_class_accuracy,
)
from ferlib.runner import run
from ferlib.runtime import machine_description

__all__ = ["checkpoint_name", "format_table", "run_study", "write_results"]


def checkpoint_name(run: str, scaling: Scaling) -> str:
    """File name of a run's checkpoint; softmax and center runs ignore the DDA scaling,
    so studies under both scalings share them."""
    return f"{run}-{scaling}.pt" if RUNS[run][1] > 0 else f"{run}.pt"


def run_study(
    profile: str | StudyProfile = "cpu",
    out_dir: str | Path = "results/wmnist",
    *,
    root: str | Path | None = None,
    scaling: Scaling = "paper",
    seed: int = 0,
    runs: list[str] | None = None,
    checkpoints: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every run of Table 1 (Eq. 2, Eq. 4, Eq. 6 with γ = 1, 3, 5, 7), write the
    table and the figures (Fig. 2), and return the table.

    A run that diverges is recorded as such (with the error message) and gets no
    accuracy: the table never shows NaN-driven numbers. A finished run's test outputs go to
    ``out_dir/<run>-test.npz`` (:func:`~ferlib.experiments.wmnist.save_outputs`), for paired
    comparisons between runs. Checkpoints go to ``checkpoints``
    (default ``out_dir/checkpoints``); studies under both scalings can share one folder,
    since the softmax and center runs do not depend on the scaling.
    """
    prof = resolve_profile(PROFILES, profile)
    out = Path(out_dir)
    ckpt_dir = Path(checkpoints) if checkpoints is not None else out / "checkpoints"
    names = runs or list(RUNS)
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        raise ValueError(f"unknown runs {unknown}; choose from {list(RUNS)}")
    (x_train, y_train), (x_test, y_test) = load_study_data(prof, root)
    train_loader = TensorLoader(x_train, y_train, prof.batch_size, shuffle=True, seed=seed)
    test_loader = TensorLoader(x_test, y_test, 1000)
    train_eval = TensorLoader(x_train, y_train, 1000)

    tic = time.perf_counter()
    results: dict[str, Any] = {}
    panels: dict[str, tuple] = {}
    for name in names:
        lam, gamma = RUNS[name]

        outputs: dict[str, Any] = {}

        def score(model, fit, name=name, outputs=outputs):
            scores, got = classifier_and_ncm(model, fit, test_loader, train_eval)
            centers = fit.centers.centers.cpu() if fit.centers is not None else None
            panels[name] = (got["features"], got["labels"], centers)
            outputs |= got
            return scores

        def write(record, name=name, outputs=outputs):
            if record["status"] == "ok":
                save_outputs(out / f"{name}-test.npz", outputs)

        results[name] = run(
            LeNetsPP,
            train_loader,
            test_loader,
            run_config(prof, lam, gamma, scaling, seed),
            checkpoint=ckpt_dir / checkpoint_name(name, scaling),
            record={"lam": lam, "gamma": gamma},
            score=score,
            write=write,
            desc=name,
            progress=progress,
        )
    table = {
        "profile": profile_record(prof),
        "scaling": scaling,
        "seed": seed,
        "wmnist_seed": WMNIST_SEED,
        "wall_seconds": round(time.perf_counter() - tic, 1),
        "machine": machine_description(),
        "paper_table1": PAPER_TABLE1,
        "runs": results,
    }
    write_results(table, out, panels, class_counts(y_train, 10), prof.minority)
    return table


def format_table(table: dict[str, Any], minority: list[int] | None = None) -> str:
    """Table 1 as text: the paper's accuracy beside ours (the classifier's), the minority
    digits' accuracy, then the same for the nearest-class-mean rule on the features."""
    minority = minority or []
    digits = "".join(f" {'d' + str(k):>6}" for k in minority)
    head = f"{'run':<8} {'λ':>5} {'γ':>4} {'paper %':>8} {'ours %':>8}{digits} {'NCM %':>8}{digits}"
    lines = [head, "-" * len(head)]
    for name, r in table["runs"].items():
        gamma = "-" if r["gamma"] == 0 else f"{r['gamma']:g}"
        lam = "-" if r["lam"] == 0 else f"{r['lam']:g}"
        row = f"{name:<8} {lam:>5} {gamma:>4} {PAPER_TABLE1[name]:>8.2f}"
        if r["status"] != "ok":
            lines.append(f"{row} {'diverged':>8}")
            continue
        row += f" {r['test_acc']:>8.2f}"
        row += "".join(f" {r['test_per_class_acc'][k]:>6.1f}" for k in minority)
        if "ncm_acc" in r:
            row += f" {r['ncm_acc']:>8.2f}"
            row += "".join(f" {r['ncm_per_class_acc'][k]:>6.1f}" for k in minority)
        lines.append(row)
    return "\n".join(lines)


def write_results(
    table: dict[str, Any],
    out: Path,
    panels: dict[str, tuple],
    train_counts: torch.Tensor,
    minority: list[int],
) -> None:
    """table1.json, table1.csv, table1.txt and the figures of the study (Fig. 2a-f, per-digit
    accuracy, accuracy against γ)."""
    write_json(out / "table1.json", table)
    header = ["run", "lam", "gamma", "status", "test_acc", "paper_acc", "mean_class_acc"]
    header += [f"acc_digit_{k}" for k in range(10)] + ["ncm_acc"]
    header += [f"ncm_acc_digit_{k}" for k in range(10)]
    rows = []
    for name, r in table["runs"].items():
        ok = r["status"] == "ok"
        rows.append(
            [name, r["lam"], r["gamma"], r["status"]]
            + [r["test_acc"] if ok else "", PAPER_TABLE1[name]]
            + [r["test_mean_class_acc"] if ok else ""]
            + (r["test_per_class_acc"] if ok else [""] * 10)
            + [r["ncm_acc"] if ok else ""]
            + (r["ncm_per_class_acc"] if ok else [""] * 10)
        )
    write_csv(out / "table1.csv", header, rows)
    (out / "table1.txt").write_text(format_table(table, minority) + "\n")

    ax = plot_class_distribution(train_counts, title="W-MNIST training set (Fig. 2a)")
    save_figure(ax.figure, out / "fig2a_distribution.png")
    if panels:
        titled = {f"{n} ({table['runs'][n]['test_acc']:.2f}%)": p for n, p in panels.items()}
        fig = plot_feature_panels(titled, title="2-D test features learned on W-MNIST (Fig. 2b-f)")
        save_figure(fig, out / "fig2_features.png")
        fig = plot_feature_panels(
            titled,
            title="The same features, each panel zoomed onto its own range",
            share_limits=False,
        )
        save_figure(fig, out / "fig2_features_zoom.png")
    ok = {n: r for n, r in table["runs"].items() if r["status"] == "ok"}
    if ok:
        fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
        for ax, key, what in (
            (axes[0], "test_per_class_acc", "the classifier layer (as in Table 1)"),
            (axes[1], "ncm_per_class_acc", "nearest class mean of the 2-D features"),
        ):
            plot_per_class_accuracy(
                {n: r[key] for n, r in ok.items()},
                highlight=minority,
                ax=ax,
                title=f"MNIST test accuracy per digit, predicted by {what}",
            )
        axes[0].set_xlabel("")
        axes[1].set_xlabel("Digit (minority digits shaded)")
        fig.tight_layout()
        save_figure(fig, out / "per_class_accuracy.png")
    dda = [(r["gamma"], r["test_acc"]) for n, r in ok.items() if n.startswith("dda")]
    if dda:
        ax = plot_accuracy_vs_gamma(
            [g for g, _ in dda],
            [a for _, a in dda],
            baselines={n: r["test_acc"] for n, r in ok.items() if not n.startswith("dda")},
            title="W-MNIST: MNIST test accuracy vs γ",
        )
        save_figure(ax.figure, out / "accuracy_vs_gamma.png")
