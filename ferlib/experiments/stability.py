"""Which recipes train DDA on W-MNIST: the DDA scaling, the learning rate, gradient clipping
and the initialisation, each varied against a profile's schedule (``results/stability``).

The paper's Eq. 5 and its published code scale L_DDA differently (``ferlib.losses``:
scaling ``"paper"`` or ``"published"``); notebook 04 shows which recipes diverge and why.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from ferlib.data import TensorLoader
from ferlib.experiments.results import pct, pcts, resolve_profile, save_figure, write_json
from ferlib.experiments.wmnist import PROFILES, StudyProfile, load_study_data, run_config
from ferlib.losses import Scaling
from ferlib.models import LeNetsPP
from ferlib.paper import LAMBDA
from ferlib.runner import run
from ferlib.runtime import machine_description

__all__ = [
    "STABILITY_VARIANTS",
    "Variant",
    "format_stability",
    "plot_stability",
    "run_stability",
]


@dataclass(frozen=True)
class Variant:
    """One training recipe of the stability experiment: what changes against the study's."""

    name: str
    gamma: float
    scaling: Scaling
    lr: float
    grad_clip: float | None
    init: str = "xavier"
    lam: float = LAMBDA


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
    trains (Eq. 6 with the scaling of Eq. 5 or of the published code), where it diverges,
    its accuracy and its feature norm per epoch.

    Writes ``stability.json``, ``stability.txt`` and ``stability.png`` (feature norm and
    softmax loss per epoch, divergences marked) to ``out_dir`` and returns the table.
    """
    prof = resolve_profile(PROFILES, profile)
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
        rows[v.name] = run(
            partial(LeNetsPP, init=v.init),
            train_loader,
            test_loader,
            config,
            checkpoint=ckpt_dir / f"variant-{i}.pt",
            record=asdict(v) | {"epochs": config.epochs},
            score=lambda _model, fit: {
                "test_acc": pct(fit.history[-1]["test_acc"]),
                "test_per_class_acc": pcts(fit.history[-1]["test_per_class_acc"]),
            },
            desc=v.name,
            progress=progress,
        )
    table = {
        "profile": prof.name,
        "seed": seed,
        "wall_seconds": round(time.perf_counter() - tic, 1),
        "machine": machine_description(),
        "variants": rows,
    }
    write_json(out / "stability.json", table)
    (out / "stability.txt").write_text(format_stability(table, prof.minority) + "\n")
    save_figure(plot_stability(table), out / "stability.png")
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
