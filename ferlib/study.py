"""The W-MNIST study (paper Sec. 4.1): Table 1 and Fig. 2, reproduced end to end.

Six runs of LeNets++ on W-MNIST, tested on the full MNIST test set: softmax loss,
center loss (λ = 0.01) and DDA loss (λ = 0.01, γ = 1, 3, 5, 7). Three profiles:

* ``paper``: the paper's recipe (100 epochs, batch 128, lr 0.001 ÷1.25 every 20 epochs) on
  a paper-scale W-MNIST (45,260 images, see ``WMNIST_PAPER_COUNTS``); use a GPU.
* ``cpu``: all six runs in under an hour on a 2-core CPU, still showing the effect.
* ``quick``: the whole pipeline in under a minute, for tests (numbers mean nothing).

Results land in ``out_dir``: ``table1.json`` / ``table1.csv`` (overall and per-class test
accuracy per run, with profile, seed, machine and wall time), the figures, and one
checkpoint per run, so an interrupted study resumes where it stopped.

:func:`run_scale` measures what the size of the training set does (``results/wmnist-scale``).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator
from tqdm.auto import tqdm

from ferlib.data import (
    WMNIST_COUNTS,
    WMNIST_SEED,
    TensorLoader,
    class_counts,
    load_mnist,
    load_wmnist,
    wmnist_indices,
)
from ferlib.data.mnist import WMNIST_MINORITY, WMNIST_PAPER_COUNTS, wmnist_scale_counts
from ferlib.losses import Scaling
from ferlib.metrics import accuracy, class_means, nearest_mean_predict, per_class_accuracy
from ferlib.models import LeNetsPP
from ferlib.plots import (
    plot_accuracy_vs_gamma,
    plot_class_distribution,
    plot_feature_panels,
    plot_per_class_accuracy,
)
from ferlib.runtime import machine_description
from ferlib.training import NonFiniteLossError, TrainConfig, predict, seed_everything, train

#: The paper's Table 1 (MNIST test accuracy, %), for comparison.
PAPER_TABLE1: dict[str, float] = {
    "softmax": 96.78,
    "center": 97.12,
    "dda-1": 97.17,
    "dda-3": 97.17,
    "dda-5": 97.15,
    "dda-7": 97.34,
}

#: The runs of Table 1: name -> (λ, γ).
RUNS: dict[str, tuple[float, float]] = {
    "softmax": (0.0, 0.0),
    "center": (0.01, 0.0),
    "dda-1": (0.01, 1.0),
    "dda-3": (0.01, 3.0),
    "dda-5": (0.01, 5.0),
    "dda-7": (0.01, 7.0),
}


@dataclass(frozen=True)
class StudyProfile:
    """How long and on how much data the study trains.

    ``counts`` (training images per digit) may be given as a mapping ``{digit: count}``
    or as ``(digit, count)`` pairs; it is stored as sorted pairs, so a profile is
    hashable and cannot be changed behind the study's back.
    """

    name: str
    epochs: int
    lr: float
    lr_step: int
    lr_decay: float
    batch_size: int = 128
    grad_clip: float | None = None
    max_loss: float | None = None  # a batch loss above this counts as divergence
    counts: Mapping[int, int] | tuple[tuple[int, int], ...] = tuple(WMNIST_COUNTS.items())
    test_subset: int | None = None  # evaluate on the first n test images (quick profile)
    eval_every: int = 1  # test every n epochs (and after the last); testing costs CPU time

    def __post_init__(self) -> None:
        counts = self.counts
        if isinstance(counts, Mapping):
            counts = counts.items()
        try:
            pairs = tuple(sorted((int(k), int(n)) for k, n in counts))
        except (TypeError, ValueError) as err:
            raise TypeError(
                "StudyProfile.counts: expected a mapping {digit: count} or (digit, count) "
                f"pairs, got {self.counts!r:.80}"
            ) from err
        if any(not 0 <= k <= 9 or n < 0 for k, n in pairs) or sum(n for _, n in pairs) < 1:
            raise ValueError(
                "StudyProfile.counts: expected digits in 0..9 with counts >= 0, at least one "
                f"image in all, got {dict(pairs)}"
            )
        object.__setattr__(self, "counts", pairs)

    @property
    def minority(self) -> list[int]:
        """The classes cut below the largest count (W-MNIST: digits 2, 5, 8)."""
        largest = max(n for _, n in self.counts)
        return [k for k, n in self.counts if n < largest]


PROFILES: dict[str, StudyProfile] = {
    # the paper's recipe on a paper-scale W-MNIST (WMNIST_PAPER_COUNTS: 5,840 images per
    # majority digit, 1,460 for 2, 5, 8; 45,260 in all): 35,400 steps a run, for a GPU
    "paper": StudyProfile(
        "paper",
        epochs=100,
        lr=0.001,
        lr_step=20,
        lr_decay=1 / 1.25,
        counts=WMNIST_PAPER_COUNTS,
        eval_every=10,
    ),
    "cpu": StudyProfile(
        "cpu",
        epochs=20,
        lr=0.01,
        lr_step=7,
        lr_decay=0.5,
        grad_clip=10.0,
        max_loss=1000.0,
        eval_every=5,
    ),
    # a tenth of W-MNIST, 3 epochs of 29 small batches: tens of seconds on a CPU, and enough
    # steps to leave chance behind (about 30-40% on the 500 test images), so that tests can
    # check that the pipeline learns
    "quick": StudyProfile(
        "quick",
        epochs=3,
        lr=0.01,
        lr_step=3,
        lr_decay=1.0,
        batch_size=16,
        grad_clip=10.0,
        counts={k: n // 10 for k, n in WMNIST_COUNTS.items()},
        test_subset=500,
    ),
}


def run_config(profile: StudyProfile, lam: float, gamma: float, scaling: Scaling, seed: int):
    """The :class:`TrainConfig` of one run of the study."""
    return TrainConfig(
        epochs=profile.epochs,
        lr=profile.lr,
        lr_step=profile.lr_step,
        lr_decay=profile.lr_decay,
        grad_clip=profile.grad_clip,
        max_loss=profile.max_loss,
        eval_every=profile.eval_every,
        lam=lam,
        gamma=gamma,
        scaling=scaling,
        seed=seed,
    )


def checkpoint_name(run: str, scaling: Scaling) -> str:
    """File name of a run's checkpoint; softmax and center runs ignore the DDA scaling,
    so studies under both scalings share them."""
    return f"{run}-{scaling}.pt" if RUNS[run][1] > 0 else f"{run}.pt"


def load_study_data(profile: StudyProfile, root: str | Path | None = None):
    """W-MNIST train tensors and MNIST test tensors for a profile."""
    x_train, y_train = load_wmnist(root, counts=dict(profile.counts), seed=WMNIST_SEED)
    x_test, y_test = load_mnist(root, train=False)
    if profile.test_subset is not None:
        x_test, y_test = x_test[: profile.test_subset], y_test[: profile.test_subset]
    return (x_train, y_train), (x_test, y_test)


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
    """Train every run of Table 1, write the table and figures, and return the table.

    A run that diverges is recorded as such (with the error message) and gets no
    accuracy: the table never shows NaN-driven numbers. Checkpoints go to ``checkpoints``
    (default ``out_dir/checkpoints``); studies under both scalings can share one folder,
    since the softmax and center runs do not depend on the scaling.
    """
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    out = Path(out_dir)
    ckpt_dir = Path(checkpoints) if checkpoints is not None else out / "checkpoints"
    (x_train, y_train), (x_test, y_test) = load_study_data(prof, root)
    train_loader = TensorLoader(x_train, y_train, prof.batch_size, shuffle=True, seed=seed)
    test_loader = TensorLoader(x_test, y_test, 1000)
    train_eval_loader = TensorLoader(x_train, y_train, 1000)
    names = runs or list(RUNS)
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        raise ValueError(f"unknown runs {unknown}; choose from {list(RUNS)}")

    tic = time.perf_counter()
    results: dict[str, Any] = {}
    panels = {}
    for name in names:
        lam, gamma = RUNS[name]
        config = run_config(prof, lam, gamma, scaling, seed)
        seed_everything(seed)
        model = LeNetsPP()
        run_tic = time.perf_counter()
        try:
            result = train(
                model,
                train_loader,
                test_loader,
                config,
                checkpoint=ckpt_dir / checkpoint_name(name, scaling),
                progress=progress,
                desc=name,
            )
        except NonFiniteLossError as err:
            results[name] = {"lam": lam, "gamma": gamma, "status": "diverged", "error": str(err)}
            continue
        last = result.history[-1]
        feats, _, labels = predict(model, test_loader)
        # the features alone: nearest class mean of the training features (no classifier)
        train_feats, _, train_labels = predict(model, train_eval_loader)
        means = class_means(train_feats, train_labels, 10)
        ncm = nearest_mean_predict(feats, means)
        centers = result.centers.centers.cpu() if result.centers is not None else None
        panels[name] = (feats, labels, centers)
        results[name] = {
            "lam": lam,
            "gamma": gamma,
            "status": "ok",
            "test_acc": round(last["test_acc"], 2),
            "test_mean_class_acc": round(last["test_mean_class_acc"], 2),
            "test_per_class_acc": [round(a, 2) for a in last["test_per_class_acc"]],
            "ncm_acc": round(accuracy(ncm, labels), 2),
            "ncm_per_class_acc": [round(float(a), 2) for a in per_class_accuracy(ncm, labels, 10)],
            "final_feature_norm": round(last["feature_norm"], 3),
            "seconds": round(time.perf_counter() - run_tic, 1),
            "history": result.history,
        }
    wall = time.perf_counter() - tic

    table = {
        "profile": {f.name: getattr(prof, f.name) for f in fields(prof)}
        | {"counts": dict(prof.counts)},
        "scaling": scaling,
        "seed": seed,
        "wmnist_seed": WMNIST_SEED,
        "wall_seconds": round(wall, 1),
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
    """table1.json, table1.csv, table1.txt and the figures of the study."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "table1.json").write_text(json.dumps(table, indent=1) + "\n")
    with open(out / "table1.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["run", "lam", "gamma", "status", "test_acc", "paper_acc", "mean_class_acc"]
            + [f"acc_digit_{k}" for k in range(10)]
            + ["ncm_acc"]
            + [f"ncm_acc_digit_{k}" for k in range(10)]
        )
        for name, r in table["runs"].items():
            ok = r["status"] == "ok"
            writer.writerow(
                [name, r["lam"], r["gamma"], r["status"]]
                + [r["test_acc"] if ok else "", PAPER_TABLE1[name]]
                + [r["test_mean_class_acc"] if ok else ""]
                + (r["test_per_class_acc"] if ok else [""] * 10)
                + [r["ncm_acc"] if ok else ""]
                + (r["ncm_per_class_acc"] if ok else [""] * 10)
            )
    (out / "table1.txt").write_text(format_table(table, minority) + "\n")

    ax = plot_class_distribution(train_counts, title="W-MNIST training set (Fig. 2a)")
    ax.figure.savefig(out / "fig2a_distribution.png", dpi=110, bbox_inches="tight")
    plt.close(ax.figure)
    if panels:
        titles = {name: f"{name} ({table['runs'][name]['test_acc']:.2f}%)" for name in panels}
        fig = plot_feature_panels(
            {titles[n]: p for n, p in panels.items()},
            title="2-D test features learned on W-MNIST (Fig. 2b-f)",
        )
        fig.savefig(out / "fig2_features.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        fig = plot_feature_panels(
            {titles[n]: p for n, p in panels.items()},
            title="The same features, each panel zoomed onto its own range",
            share_limits=False,
        )
        fig.savefig(out / "fig2_features_zoom.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
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
        fig.savefig(out / "per_class_accuracy.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
    dda = [(r["gamma"], r["test_acc"]) for n, r in ok.items() if n.startswith("dda")]
    if dda:
        baselines = {n: r["test_acc"] for n, r in ok.items() if not n.startswith("dda")}
        ax = plot_accuracy_vs_gamma(
            [g for g, _ in dda],
            [a for _, a in dda],
            baselines=baselines,
            title="W-MNIST: MNIST test accuracy vs γ",
        )
        ax.figure.savefig(out / "accuracy_vs_gamma.png", dpi=110, bbox_inches="tight")
        plt.close(ax.figure)


# ----------------------------------------------------------------------------- stability


@dataclass(frozen=True)
class Variant:
    """One training recipe of the stability experiment: what changes against the study's."""

    name: str
    gamma: float
    scaling: Scaling
    lr: float
    grad_clip: float | None
    init: str = "xavier"
    lam: float = 0.01


#: Which of scaling, learning rate, gradient clipping and initialisation decide whether a
#: DDA run trains. Every variant uses the profile's schedule (epochs, lr decay, batch, data).
#: The committed study's own two recipes (lr 0.01, clipping at 10, xavier init, either
#: scaling) are in results/wmnist*/ and are not repeated here.
STABILITY_VARIANTS: tuple[Variant, ...] = (
    Variant("paper recipe, γ=7", 7.0, "paper", 0.001, None),
    Variant("softmax, lr 0.001", 0.0, "paper", 0.001, None, lam=0.0),
    Variant("published, lr 0.001, γ=7", 7.0, "published", 0.001, None),
    Variant("published, no clipping, γ=7", 7.0, "published", 0.01, None),
    Variant("paper, no clipping, γ=7", 7.0, "paper", 0.01, None),
    Variant("published, default init, γ=7", 7.0, "published", 0.01, 10.0, init="default"),
    Variant("paper recipe, γ=1", 1.0, "paper", 0.001, None),
)


def run_stability(
    profile: str | StudyProfile = "cpu",
    out_dir: str | Path = "results/stability",
    *,
    root: str | Path | None = None,
    seed: int = 0,
    variants: tuple[Variant, ...] = STABILITY_VARIANTS,
    checkpoints: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train each :class:`Variant` on the profile's W-MNIST and schedule; record whether it
    trains, where it diverges, its accuracy and its feature norm per epoch.

    Writes ``stability.json``, ``stability.txt`` and ``stability.png`` (feature norm and
    softmax loss per epoch, divergences marked) to ``out_dir`` and returns the table.
    """
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    out = Path(out_dir)
    ckpt_dir = Path(checkpoints) if checkpoints is not None else out / "checkpoints"
    (x_train, y_train), (x_test, y_test) = load_study_data(prof, root)
    train_loader = TensorLoader(x_train, y_train, prof.batch_size, shuffle=True, seed=seed)
    test_loader = TensorLoader(x_test, y_test, 1000)
    tic = time.perf_counter()
    rows: dict[str, Any] = {}
    for i, v in enumerate(variants):
        config = replace(
            run_config(prof, v.lam, v.gamma, v.scaling, seed), lr=v.lr, grad_clip=v.grad_clip
        )
        seed_everything(seed)
        model = LeNetsPP(init=v.init)
        row: dict[str, Any] = asdict(v) | {"epochs": prof.epochs}
        run_tic = time.perf_counter()
        try:
            result = train(
                model,
                train_loader,
                test_loader,
                config,
                checkpoint=ckpt_dir / f"variant-{i}.pt",
                progress=progress,
                desc=v.name,
            )
        except NonFiniteLossError as err:
            row |= {"status": "diverged", "epoch": err.epoch, "step": err.step}
            row |= {"error": str(err), "history": err.history}
        else:
            last = result.history[-1]
            row |= {"status": "ok", "test_acc": round(last["test_acc"], 2)}
            row |= {"test_per_class_acc": [round(a, 2) for a in last["test_per_class_acc"]]}
            row |= {"history": result.history}
        row["seconds"] = round(time.perf_counter() - run_tic, 1)
        rows[v.name] = row
    table = {
        "profile": prof.name,
        "seed": seed,
        "wall_seconds": round(time.perf_counter() - tic, 1),
        "machine": machine_description(),
        "variants": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "stability.json").write_text(json.dumps(table, indent=1) + "\n")
    (out / "stability.txt").write_text(format_stability(table, prof.minority) + "\n")
    fig = plot_stability(table)
    fig.savefig(out / "stability.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return table


def format_stability(table: dict[str, Any], minority: list[int] | None = None) -> str:
    """The stability table as text: recipe, outcome, test accuracy (overall, minority)."""
    minority = minority or []
    digits = "".join(f" {'d' + str(k):>5}" for k in minority)
    head = (
        f"{'variant':<30} {'scaling':>9} {'lr':>6} {'clip':>5} {'init':>7} "
        f"{'outcome':>22} {'test %':>7}{digits} {'|x| last':>9}"
    )
    lines = [head, "-" * len(head)]
    for name, r in table["variants"].items():
        clip = "-" if r["grad_clip"] is None else f"{r['grad_clip']:g}"
        scaling = r["scaling"] if r["gamma"] > 0 else "-"  # no DDA term, no scaling
        row = f"{name:<30} {scaling:>9} {r['lr']:>6g} {clip:>5} {r['init']:>7} "
        norm = f"{r['history'][-1]['feature_norm']:.1f}" if r["history"] else "-"
        if r["status"] == "ok":
            row += f"{'trained ' + str(r['epochs']) + ' epochs':>22} {r['test_acc']:>7.2f}"
            row += "".join(f" {r['test_per_class_acc'][k]:>5.1f}" for k in minority)
        else:
            row += f"{'diverged ep ' + str(r['epoch']) + ' step ' + str(r['step']):>22} "
            row += f"{'-':>7}" + "".join(f" {'-':>5}" for _ in minority)
        lines.append(row + f" {norm:>9}")
    return "\n".join(lines)


def plot_stability(table: dict[str, Any]) -> plt.Figure:
    """Mean feature norm and softmax loss per epoch for each variant; × marks a divergence."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for j, (name, r) in enumerate(table["variants"].items()):
        epochs = [h["epoch"] for h in r["history"]]
        for ax, key in zip(axes, ("feature_norm", "train_softmax"), strict=True):
            values = [h[key] for h in r["history"]]
            ax.plot(epochs, values, "-o", ms=3, color=f"C{j}", label=name)
            if r["status"] != "ok" and epochs:
                ax.plot(epochs[-1], values[-1], "x", ms=12, mew=3, color=f"C{j}")
    early = [n for n, r in table["variants"].items() if r["status"] != "ok" and not r["history"]]
    if early:  # nothing to draw: say so on the figure
        axes[0].text(
            0.02,
            0.98,
            "diverged within epoch 1:\n" + "\n".join(early),
            transform=axes[0].transAxes,
            va="top",
            fontsize="small",
        )
    axes[0].set_yscale("log")
    axes[0].set_title("Mean 2-D feature norm |x| per epoch")
    axes[0].set_ylabel("mean |x| (log scale)")
    axes[1].set_title("Softmax loss L_S per epoch")
    axes[1].set_ylabel("mean L_S over the epoch")
    for ax in axes:
        ax.set_xlabel("epoch (× = last completed epoch before divergence)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].legend(fontsize="small", loc="upper right")
    fig.suptitle(f"Which recipes train? W-MNIST, {table['profile']} schedule, seed {table['seed']}")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- scale

#: The two losses of the scale experiment: name -> (λ, γ, DDA scaling). DDA γ = 7 with the
#: published scaling is the recipe that trains under the cpu schedule (results/stability).
SCALE_LOSSES: dict[str, tuple[float, float, Scaling]] = {
    "softmax": (0.0, 0.0, "paper"),
    "dda-7": (0.01, 7.0, "published"),
}
#: Images per majority digit (a quarter of that for 2, 5, 8) in the equal-steps arm:
#: today's W-MNIST (600/150) up to the paper-scale set (5840/1460, WMNIST_PAPER_COUNTS).
#: Each of its runs costs what one cpu-profile run costs (740 steps of 128).
SCALE_SIZES: tuple[int, ...] = (600, 2400, 5840)
#: ... and in the equal-epochs arm, whose cost grows with the size: 185, 365 and 730 steps
#: under the cpu base, so that its largest run has about the equal-steps arm's budget.
SCALE_EPOCH_SIZES: tuple[int, ...] = (600, 1200, 2400)
#: Epochs of every equal-epochs run (the base schedule's decay steps scaled to it).
SCALE_EPOCHS: int = 5
SCALE_ARMS: tuple[str, ...] = ("steps", "epochs")


class StreamLoader:
    """Mini-batches of a stream of shuffled passes over in-memory tensors, cut into
    "epochs" of a fixed number of steps, so that runs on sets of different sizes take the
    same number of SGD steps under the same epoch-based learning-rate schedule.

    Pass ``p`` over the set has the order ``torch.randperm(n, generator=seed + p)`` and
    ``ceil(n / batch_size)`` batches (the last one smaller), exactly as
    :class:`~ferlib.data.TensorLoader`'s epoch ``p``; epoch ``e`` of this loader yields
    batches ``e * steps_per_epoch`` ... ``(e + 1) * steps_per_epoch - 1`` of the stream.
    With ``steps_per_epoch == len(TensorLoader(...))`` it is that loader, batch for batch.

    Args:
        images: (N, ...) inputs.
        labels: (N,) integer labels.
        batch_size: samples per batch.
        steps_per_epoch: batches per epoch, >= 1.
        seed: base seed of the shuffling.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        steps_per_epoch: int,
        seed: int = 0,
    ) -> None:
        self.inner = TensorLoader(images, labels, batch_size, shuffle=True, seed=seed)
        if steps_per_epoch < 1:
            raise ValueError(f"StreamLoader: steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0

    @property
    def fingerprint(self) -> str:
        """The data's fingerprint and the epoch length: what a checkpoint records."""
        return f"{self.inner.fingerprint}:stream{self.steps_per_epoch}"

    @property
    def num_samples(self) -> int:
        """Number of samples N in the dataset."""
        return self.inner.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Select the ``steps_per_epoch`` batches of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self):
        per_pass = len(self.inner)
        start = self.epoch * self.steps_per_epoch
        done = 0
        while done < self.steps_per_epoch:
            pass_no, offset = divmod(start + done, per_pass)
            self.inner.set_epoch(pass_no)
            for i, batch in enumerate(self.inner):
                if i < offset:
                    continue
                yield batch
                done += 1
                if done == self.steps_per_epoch:
                    return


def _scale_recipe(base: StudyProfile, arm: str, majority: int, epochs: int) -> dict[str, Any]:
    """Epochs, decay step, steps per epoch and total steps of one run of the scale grid."""
    counts = wmnist_scale_counts(majority)
    n_train = sum(counts.values())
    per_pass = -(-n_train // base.batch_size)
    if arm == "steps":  # the base profile's schedule and number of steps, on more data
        steps_per_epoch = -(-sum(n for _, n in base.counts) // base.batch_size)
        run_epochs, lr_step = base.epochs, base.lr_step
    elif arm == "epochs":  # `epochs` passes over the set, the base decay scaled to them
        steps_per_epoch, run_epochs = per_pass, epochs
        lr_step = max(1, round(base.lr_step * epochs / base.epochs))
    else:
        raise ValueError(f"run_scale: unknown arm {arm!r}; choose from {list(SCALE_ARMS)}")
    return {
        "majority": majority,
        "minority": majority // 4,
        "n_train": n_train,
        "epochs": run_epochs,
        "lr_step": lr_step,
        "steps_per_epoch": steps_per_epoch,
        "steps": run_epochs * steps_per_epoch,
        "passes": round(run_epochs * steps_per_epoch / per_pass, 2),
    }


def scale_plan(
    sizes: tuple[int, ...] = SCALE_SIZES,
    epoch_sizes: tuple[int, ...] = SCALE_EPOCH_SIZES,
    losses: tuple[str, ...] = tuple(SCALE_LOSSES),
    seeds: tuple[int, ...] = (0,),
) -> list[tuple[str, str, int, int]]:
    """The runs of the scale experiment as ``(arm, loss, majority, seed)``, in the order
    they are trained: the equal-steps arm first; in each arm the smallest and the largest
    size first, so that an interrupted experiment already spans the range."""
    unknown = sorted(set(losses) - set(SCALE_LOSSES))
    if unknown:
        raise ValueError(f"run_scale: unknown losses {unknown}; choose from {list(SCALE_LOSSES)}")
    for m in (*sizes, *epoch_sizes):
        wmnist_scale_counts(m)  # a clear error for a size that is not 4:1 or too large
    return [
        (arm, loss, m, seed)
        for seed in seeds
        for arm, arm_sizes in (("steps", sizes), ("epochs", epoch_sizes))
        for m in _span_first(arm_sizes)
        for loss in losses
    ]


def _span_first(sizes: tuple[int, ...]) -> list[int]:
    """Sizes, smallest and largest first: (600, 1200, 2400, 5840) -> [600, 5840, 1200, 2400]."""
    ordered = sorted(set(sizes))
    return ordered[:1] + ordered[-1:] + ordered[1:-1] if len(ordered) > 1 else ordered


def scale_key(arm: str, loss: str, majority: int, seed: int) -> str:
    """The name of one run of the scale experiment, e.g. ``steps-dda-7-600-seed0``."""
    return f"{arm}-{loss}-{majority}-seed{seed}"


def run_scale(
    out_dir: str | Path = "results/wmnist-scale",
    *,
    base: str | StudyProfile = "cpu",
    sizes: tuple[int, ...] = SCALE_SIZES,
    epoch_sizes: tuple[int, ...] = SCALE_EPOCH_SIZES,
    epochs: int = SCALE_EPOCHS,
    losses: tuple[str, ...] = tuple(SCALE_LOSSES),
    seeds: tuple[int, ...] = (0,),
    reuse: tuple[str | Path, ...] = (),
    root: str | Path | None = None,
    checkpoints: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Test accuracy against the size of a 4:1 W-MNIST, at equal SGD steps and at equal
    epochs, for softmax and DDA γ = 7 (published scaling).

    Every run uses the ``base`` profile's recipe (learning rate, decay factor, batch,
    clipping, divergence bound, test set); the sets are ``wmnist_scale_counts(m)`` for
    ``m`` in ``sizes`` (equal-steps arm: the base profile's epochs of
    ``ceil(base images / batch)`` steps, through a :class:`StreamLoader`) and in
    ``epoch_sizes`` (equal-epochs arm: ``epochs`` passes, decay step scaled), all drawn
    with ``WMNIST_SEED`` (nested sets). The equal-steps run at ``m = 600`` under the
    ``cpu`` base is the committed study's run, batch for batch: ``reuse`` takes such runs
    from studies' ``table1.json`` (same profile as ``base``; the DDA scaling of
    :data:`SCALE_LOSSES`) instead of training them again, each seed of each file.
    Only the final test is run (testing never changes training).

    Writes ``scale.json``, ``scale.csv``, ``scale.txt`` and ``scale.png`` to ``out_dir``
    after every run; runs already in ``scale.json`` with the same recipe are not trained
    again (and per-epoch checkpoints resume an interrupted run). Returns the table.
    """
    prof = PROFILES[base] if isinstance(base, str) else base
    if epochs < 1:
        raise ValueError(f"run_scale: epochs must be >= 1, got {epochs}")
    plan = scale_plan(sizes, epoch_sizes, losses, seeds)
    out = Path(out_dir)
    ckpt_dir = Path(checkpoints) if checkpoints is not None else out / "checkpoints"
    x_all, y_all = load_mnist(root, train=True)
    x_test, y_test = load_mnist(root, train=False)
    if prof.test_subset is not None:
        x_test, y_test = x_test[: prof.test_subset], y_test[: prof.test_subset]
    test_loader = TensorLoader(x_test, y_test, 1000)
    settings = {
        "base_profile": {f.name: getattr(prof, f.name) for f in fields(prof)}
        | {"counts": dict(prof.counts)},
        "losses": {name: SCALE_LOSSES[name] for name in losses},
        "epochs_arm_epochs": epochs,
    }
    previous: dict[str, Any] = {}
    rows: dict[str, Any] = {}
    reused = _reused_rows(reuse, prof, settings, losses, epochs)
    if (out / "scale.json").exists():
        old_table = json.loads((out / "scale.json").read_text())
        previous = old_table.get("runs", {})
        if all(old_table.get(k) == v for k, v in json.loads(json.dumps(settings)).items()):
            # runs of another call on the same base (other seeds, sizes): kept in the table
            planned = {scale_key(*run) for run in plan}
            rows = {k: v for k, v in previous.items() if k not in planned}
    spent = 0.0
    for arm, loss, majority, seed in tqdm(plan, desc="scale", disable=not progress):
        key = scale_key(arm, loss, majority, seed)
        recipe = _scale_recipe(prof, arm, majority, epochs)
        lam, gamma, scaling = SCALE_LOSSES[loss]
        recipe |= {"lam": lam, "gamma": gamma, "scaling": scaling, "lr": prof.lr}
        old = previous.get(key)
        if key in reused or (old is not None and old.get("recipe") == recipe):
            rows[key] = reused.get(key, old)
            continue
        idx = wmnist_indices(y_all, wmnist_scale_counts(majority), WMNIST_SEED)
        x_train, y_train = x_all[idx], y_all[idx]
        if arm == "steps":
            loader = StreamLoader(
                x_train, y_train, prof.batch_size, recipe["steps_per_epoch"], seed
            )
        else:
            loader = TensorLoader(x_train, y_train, prof.batch_size, shuffle=True, seed=seed)
        config = replace(
            run_config(prof, lam, gamma, scaling, seed),
            epochs=recipe["epochs"],
            lr_step=recipe["lr_step"],
            eval_every=recipe["epochs"],
        )
        seed_everything(seed)
        model = LeNetsPP()
        tic = time.perf_counter()
        row: dict[str, Any] = {"arm": arm, "loss": loss, "seed": seed, "recipe": recipe}
        try:
            result = train(
                model,
                loader,
                test_loader,
                config,
                checkpoint=ckpt_dir / f"{key}.pt",
                progress=progress,
                desc=f"{arm} {loss} {majority}/{majority // 4}",
            )
        except NonFiniteLossError as err:
            row |= {"status": "diverged", "error": str(err), "history": err.history}
        else:
            row |= _scale_scores(model, result.history, x_train, y_train, test_loader)
        row["seconds"] = round(time.perf_counter() - tic, 1)
        spent += row["seconds"]
        rows[key] = row
        write_scale(_scale_table(settings, rows, spent, losses), out)
    rows |= {k: v for k, v in reused.items() if k not in rows}
    if not rows:
        raise ValueError("run_scale: nothing to run (empty sizes and epoch_sizes)")
    write_scale(_scale_table(settings, rows, spent, losses), out)
    return json.loads((out / "scale.json").read_text())


def _scale_table(
    settings: dict[str, Any], rows: dict[str, Any], spent: float, losses: tuple[str, ...]
) -> dict[str, Any]:
    """The scale experiment's table: settings, seeds, machine, the paper's numbers, runs."""
    return {
        **settings,
        "seeds": sorted({r["seed"] for r in rows.values()}),
        "wmnist_seed": WMNIST_SEED,
        "minority_digits": list(WMNIST_MINORITY),
        "wall_seconds_this_call": round(spent, 1),
        "train_seconds_all_runs": round(sum(r["seconds"] for r in rows.values()), 1),
        "machine": machine_description(),
        "paper_table1": {name: PAPER_TABLE1[name] for name in losses},
        "runs": rows,
    }


def _reused_rows(
    paths: tuple[str | Path, ...],
    prof: StudyProfile,
    settings: dict[str, Any],
    losses: tuple[str, ...],
    epochs: int,
) -> dict[str, Any]:
    """Equal-steps rows at the base size taken from studies' table1.json (see run_scale)."""
    rows: dict[str, Any] = {}
    if not paths:
        return rows
    majority = max(n for _, n in prof.counts)
    if majority % 4 or dict(prof.counts) != wmnist_scale_counts(majority):
        raise ValueError(
            f"run_scale: reuse needs a 4:1 base W-MNIST, {prof.name!r} has {dict(prof.counts)}"
        )
    want = json.loads(json.dumps(settings["base_profile"]))
    for path in paths:
        study_table = json.loads(Path(path).read_text())
        got = dict(study_table["profile"])
        if {k: v for k, v in got.items() if k != "eval_every"} != {
            k: v for k, v in want.items() if k != "eval_every"
        }:
            raise ValueError(f"run_scale: {path} was not run with the base profile {prof.name!r}")
        seed = study_table["seed"]
        for loss in losses:
            lam, gamma, scaling = SCALE_LOSSES[loss]
            r = study_table["runs"].get(loss)
            if r is None or (gamma > 0 and study_table["scaling"] != scaling):
                continue
            recipe = _scale_recipe(prof, "steps", majority, epochs)
            recipe |= {"lam": lam, "gamma": gamma, "scaling": scaling, "lr": prof.lr}
            row: dict[str, Any] = {"arm": "steps", "loss": loss, "seed": seed, "recipe": recipe}
            if r["status"] == "ok":
                minority = list(WMNIST_MINORITY)
                row |= {
                    "status": "ok",
                    "test_acc": r["test_acc"],
                    "minority_acc": round(
                        sum(r["test_per_class_acc"][k] for k in minority) / len(minority), 2
                    ),
                    "test_per_class_acc": r["test_per_class_acc"],
                    "ncm_acc": r["ncm_acc"],
                    "ncm_minority_acc": round(
                        sum(r["ncm_per_class_acc"][k] for k in minority) / len(minority), 2
                    ),
                    "ncm_per_class_acc": r["ncm_per_class_acc"],
                    "final_train_acc": round(r["history"][-1]["train_acc"], 2),
                    "history": r["history"],
                }
            else:
                row |= {"status": "diverged", "error": r["error"], "history": []}
            row |= {"seconds": r.get("seconds") or 0.0, "source": str(path)}
            rows[scale_key("steps", loss, majority, seed)] = row
    return rows


def _scale_scores(
    model: torch.nn.Module,
    history: list[dict[str, Any]],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    test_loader: TensorLoader,
) -> dict[str, Any]:
    """Test accuracy of the classifier and of the nearest class mean (NCM) of the training
    features, overall, per digit and on the minority digits (mean of their accuracies)."""
    last = history[-1]
    per_class = [round(a, 2) for a in last["test_per_class_acc"]]
    feats, _, labels = predict(model, test_loader)
    train_feats, _, train_labels = predict(model, TensorLoader(x_train, y_train, 1000))
    ncm = nearest_mean_predict(feats, class_means(train_feats, train_labels, 10))
    ncm_per_class = [round(float(a), 2) for a in per_class_accuracy(ncm, labels, 10)]
    minority = list(WMNIST_MINORITY)
    return {
        "status": "ok",
        "test_acc": round(last["test_acc"], 2),
        "minority_acc": round(sum(per_class[k] for k in minority) / len(minority), 2),
        "test_per_class_acc": per_class,
        "ncm_acc": round(accuracy(ncm, labels), 2),
        "ncm_minority_acc": round(sum(ncm_per_class[k] for k in minority) / len(minority), 2),
        "ncm_per_class_acc": ncm_per_class,
        "final_train_acc": round(last["train_acc"], 2),
        "history": history,
    }


SCALE_CSV_COLUMNS = (
    "run", "arm", "loss", "seed", "majority", "minority", "n_train", "epochs", "steps",
    "passes", "status", "test_acc", "minority_acc", "ncm_acc", "ncm_minority_acc",
    "final_train_acc", "paper_acc", "seconds",
)  # fmt: skip


def write_scale(table: dict[str, Any], out: Path) -> None:
    """scale.json, scale.csv, scale.txt and scale.png of the scale experiment."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(table, indent=1) + "\n")
    with open(out / "scale.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(SCALE_CSV_COLUMNS)
        for key, r in table["runs"].items():
            values = {"run": key, **r, **r["recipe"], "paper_acc": PAPER_TABLE1[r["loss"]]}
            writer.writerow([values.get(c, "") for c in SCALE_CSV_COLUMNS])
    (out / "scale.txt").write_text(format_scale(table) + "\n")
    fig = plot_scale(table)
    fig.savefig(out / "scale.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def format_scale(table: dict[str, Any]) -> str:
    """The scale experiment as text: one line per run, accuracies in %."""
    head = (
        f"{'arm':<7} {'loss':<8} {'seed':>4} {'maj/min':>10} {'images':>7} {'epochs':>6} "
        f"{'steps':>6} {'passes':>6} {'test %':>7} {'2/5/8 %':>8} {'NCM %':>7} "
        f"{'NCM 258':>8} {'paper':>6} {'s':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in table["runs"].values():
        c = r["recipe"]
        row = (
            f"{r['arm']:<7} {r['loss']:<8} {r['seed']:>4} "
            f"{str(c['majority']) + '/' + str(c['minority']):>10} {c['n_train']:>7} "
            f"{c['epochs']:>6} {c['steps']:>6} {c['passes']:>6g} "
        )
        if r["status"] == "ok":
            row += (
                f"{r['test_acc']:>7.2f} {r['minority_acc']:>8.2f} {r['ncm_acc']:>7.2f} "
                f"{r['ncm_minority_acc']:>8.2f}"
            )
        else:
            row += f"{'diverged':>7} {'-':>8} {'-':>7} {'-':>8}"
        lines.append(row + f" {PAPER_TABLE1[r['loss']]:>6.2f} {r['seconds']:>6.0f}")
    return "\n".join(lines)


def plot_scale(table: dict[str, Any]) -> plt.Figure:
    """Accuracy against training-set size: one row per loss, one column per arm; the
    classifier (overall and minority digits) and the NCM rule; the paper's Table 1 number
    as a reference line. Several seeds: each seed a small marker, the line their mean."""
    runs = list(table["runs"].values())
    losses = list(dict.fromkeys(r["loss"] for r in runs))
    fig, axes = plt.subplots(
        len(losses), 2, figsize=(12, 3.8 * len(losses)), sharex=True, sharey=True, squeeze=False
    )
    metrics = (
        ("test_acc", "classifier, all digits", "C0", "-o"),
        ("minority_acc", "classifier, digits 2/5/8", "C3", "--s"),
        ("ncm_acc", "nearest class mean, all digits", "C2", ":^"),
    )
    epochs_arm = table.get("epochs_arm_epochs", "?")
    steps = [r["recipe"]["steps"] for r in runs if r["arm"] == "steps"]
    titles = {
        "steps": f"equal SGD steps ({steps[0] if steps else '?'} each)",
        "epochs": f"equal epochs ({epochs_arm} each)",
    }
    sizes = sorted({r["recipe"]["n_train"] for r in runs})
    split = {
        r["recipe"]["n_train"]: (r["recipe"]["majority"], r["recipe"]["minority"]) for r in runs
    }
    for i, loss in enumerate(losses):
        for j, arm in enumerate(SCALE_ARMS):
            ax = axes[i][j]
            mine = [r for r in runs if r["loss"] == loss and r["arm"] == arm]
            for key, label, color, style in metrics:
                by_size: dict[int, list[float]] = {}
                for r in mine:
                    if r["status"] == "ok":
                        by_size.setdefault(r["recipe"]["n_train"], []).append(r[key])
                xs = sorted(by_size)
                for x in xs:
                    ax.plot([x] * len(by_size[x]), by_size[x], style[-1], color=color, ms=3)
                means = [sum(by_size[x]) / len(by_size[x]) for x in xs]
                ax.plot(xs, means, style, color=color, label=label)
            for r in mine:
                if r["status"] != "ok":
                    ax.plot(r["recipe"]["n_train"], 0, "kx", ms=10, mew=2)
            ax.axhline(PAPER_TABLE1[loss], color="k", lw=1, ls="-.")
            ax.text(
                sizes[0] if sizes else 1, PAPER_TABLE1[loss] - 1,
                f"paper, Table 1: {PAPER_TABLE1[loss]:.2f}%", fontsize="small", va="top",
            )  # fmt: skip
            name = "softmax" if loss == "softmax" else f"DDA γ={SCALE_LOSSES[loss][1]:g}"
            ax.set_title(f"{name}: {titles[arm]}")
            ax.set_xscale("log")
            ax.set_xticks(sizes)
            ax.set_xticklabels([f"{n:,}\n{split[n][0]}/{split[n][1]}" for n in sizes])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("MNIST test accuracy (%)")
            if i == len(losses) - 1:
                ax.set_xlabel("W-MNIST training images (images per majority / minority digit)")
    axes[0][0].set_ylim(top=100)
    axes[0][0].legend(fontsize="small", loc="lower right")
    seeds = table.get("seeds", [])
    fig.suptitle(
        "Accuracy against the size of W-MNIST (majority:minority 4:1), "
        f"seed(s) {', '.join(map(str, seeds))}; × = diverged"
    )
    fig.tight_layout()
    return fig


def merge_scale(out_dir: str | Path, others: tuple[str | Path, ...]) -> dict[str, Any]:
    """Merge the runs of other ``scale.json`` files (e.g. the equal-epochs arm, trained by
    a second process at the same time) into ``out_dir/scale.json`` and rewrite its files.

    The tables must share the base profile and the losses; a run present in two of them
    with different results, or equal-epochs runs of different lengths, are refused.
    Records each source's training time under ``merged_from``. Returns the merged table.
    """
    out = Path(out_dir)
    table = json.loads((out / "scale.json").read_text())
    merged_from = dict(table.get("merged_from") or {str(out / "scale.json"): table_seconds(table)})
    for path in others:
        other = json.loads(Path(path).read_text())
        for key in ("base_profile", "losses"):
            if other[key] != table[key]:
                raise ValueError(f"merge_scale: {path} has another {key} than {out}/scale.json")
        epochs_runs = [r for r in other["runs"].values() if r["arm"] == "epochs"]
        mine = [r for r in table["runs"].values() if r["arm"] == "epochs"]
        if epochs_runs and mine and other["epochs_arm_epochs"] != table["epochs_arm_epochs"]:
            raise ValueError(
                f"merge_scale: equal-epochs runs of {other['epochs_arm_epochs']} and "
                f"{table['epochs_arm_epochs']} epochs cannot share a figure"
            )
        if epochs_runs:
            table["epochs_arm_epochs"] = other["epochs_arm_epochs"]
        for key, run in other["runs"].items():
            if key in table["runs"] and table["runs"][key]["recipe"] != run["recipe"]:
                raise ValueError(f"merge_scale: run {key} differs between the tables")
            table["runs"].setdefault(key, run)
        merged_from[str(path)] = table_seconds(other)
    runs = table["runs"]
    table["seeds"] = sorted({r["seed"] for r in runs.values()})
    table["train_seconds_all_runs"] = round(sum(r["seconds"] for r in runs.values()), 1)
    table["merged_from"] = merged_from
    write_scale(table, out)
    return table


def table_seconds(table: dict[str, Any]) -> float:
    """Training seconds of the runs a scale table trained itself (not reused from a study)."""
    return round(sum(r["seconds"] for r in table["runs"].values() if "source" not in r), 1)
