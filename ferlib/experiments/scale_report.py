"""The scale experiment's result files: ``scale.json``, ``scale.csv``, ``scale.txt`` and the
figure ``scale.png`` (accuracy against the size of W-MNIST; :mod:`ferlib.experiments.scale`),
and merging the tables of runs trained by several processes (:func:`merge_scale`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from ferlib.experiments.results import same_profile, save_figure, write_csv, write_json
from ferlib.paper import PAPER_TABLE1

__all__ = [
    "SCALE_ARMS",
    "SCALE_CSV_COLUMNS",
    "format_scale",
    "merge_scale",
    "plot_scale",
    "table_seconds",
    "write_scale",
]

#: The two arms: equal SGD steps at every size, equal epochs at every size.
SCALE_ARMS: tuple[str, ...] = ("steps", "epochs")

SCALE_CSV_COLUMNS = (
    "run", "arm", "loss", "seed", "majority", "minority", "n_train", "epochs", "steps",
    "passes", "status", "test_acc", "minority_acc", "ncm_acc", "ncm_minority_acc",
    "final_train_acc", "paper_acc", "seconds",
)  # fmt: skip


def write_scale(table: dict[str, Any], out: Path) -> None:
    """scale.json, scale.csv, scale.txt and scale.png of the scale experiment."""
    write_json(out / "scale.json", table)
    rows = []
    for key, r in table["runs"].items():
        values = {"run": key, **r, **r["recipe"], "paper_acc": PAPER_TABLE1[r["loss"]]}
        rows.append([values.get(c, "") for c in SCALE_CSV_COLUMNS])
    write_csv(out / "scale.csv", SCALE_CSV_COLUMNS, rows)
    (out / "scale.txt").write_text(format_scale(table) + "\n")
    save_figure(plot_scale(table), out / "scale.png")


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
    """Accuracy against training-set size (log axis): one row per loss, one column per arm;
    the classifier (overall and minority digits) and the NCM rule. Each seed is a small
    hollow marker; the line and its filled markers are the mean over seeds. The paper's
    Table 1 number is a reference line, named in the legend (no label over the data)."""
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
                    ax.plot(
                        [x] * len(by_size[x]), by_size[x], style[-1], color=color, ms=4,
                        mfc="none", alpha=0.7,
                    )  # fmt: skip
                means = [sum(by_size[x]) / len(by_size[x]) for x in xs]
                ax.plot(xs, means, style, color=color, label=f"{label}: mean over seeds")
            seeds_at: dict[int, int] = {}
            for r in mine:
                seeds_at[r["recipe"]["n_train"]] = seeds_at.get(r["recipe"]["n_train"], 0) + 1
            for x, n in seeds_at.items():
                ax.text(x, 12, f"{n} seed{'s' * (n > 1)}", ha="center", fontsize="x-small")
            for r in mine:
                if r["status"] != "ok":
                    ax.plot(r["recipe"]["n_train"], 0, "kx", ms=10, mew=2)
            ax.axhline(
                PAPER_TABLE1[loss], color="k", lw=1, ls="-.",
                label="the paper's Table 1 for this loss (value in the title)",
            )  # fmt: skip
            ax.plot([], [], "o", color="grey", mfc="none", ms=4, label="one seed (hollow)")
            name = "softmax" if loss == "softmax" else f"DDA γ={table['losses'][loss][1]:g}"
            ax.set_title(f"{name}: {titles[arm]} (Table 1: {PAPER_TABLE1[loss]:.2f}%)")
            ax.set_xscale("log")
            ax.set_xticks(sizes)
            ax.set_xticklabels([f"{n:,}\n{split[n][0]}/{split[n][1]}" for n in sizes])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("MNIST test accuracy (%)")
            if i == len(losses) - 1:
                ax.set_xlabel(
                    "W-MNIST training images, log scale (images per majority / minority digit)"
                )
    axes[0][0].set_ylim(top=100)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize="small", frameon=False)
    seeds = table.get("seeds", [])
    fig.suptitle(
        "Accuracy against the size of W-MNIST (majority:minority 4:1), "
        f"seed(s) {', '.join(map(str, seeds))}; × = diverged"
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
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
        if not same_profile(other["base_profile"], table["base_profile"]):
            raise ValueError(f"merge_scale: {path} has another base_profile than {out}/scale.json")
        if other["losses"] != table["losses"]:
            raise ValueError(f"merge_scale: {path} has another losses than {out}/scale.json")
        epochs_runs = [r for r in other["runs"].values() if r["arm"] == "epochs"]
        mine = [r for r in table["runs"].values() if r["arm"] == "epochs"]
        if epochs_runs and mine and other["epochs_arm_epochs"] != table["epochs_arm_epochs"]:
            raise ValueError(
                f"merge_scale: equal-epochs runs of {other['epochs_arm_epochs']} and "
                f"{table['epochs_arm_epochs']} epochs cannot share a figure"
            )
        if epochs_runs:
            table["epochs_arm_epochs"] = other["epochs_arm_epochs"]
        for key, run_row in other["runs"].items():
            if key in table["runs"] and table["runs"][key]["recipe"] != run_row["recipe"]:
                raise ValueError(f"merge_scale: run {key} differs between the tables")
            table["runs"].setdefault(key, run_row)
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
