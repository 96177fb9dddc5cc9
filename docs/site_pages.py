"""The website's generated pages: everything on them comes from files, nothing is typed twice.

* :func:`results_page`: the Results page, from the JSON files in ``results/`` (the W-MNIST
  Table 1 of every study and seed, the reproduction study and its paired tests, the stability
  and scale experiments, the stand-in FER runs) and the figures beside them. A study that is
  missing, or still running, is named as such; the page is made from whatever exists.
* :func:`notebooks_table`: what each notebook runs in each profile (the table in notebook 00)
  and how long its committed run took (the execution times stored in the notebook).
* :func:`profiles_table`: the experiments' profiles, from ``ferlib.experiments``.
* :func:`api_pages`: one API page per public module of ``ferlib`` (Sphinx autodoc).

``docs/build.py`` calls these while it stages the site; ``tests/test_site.py`` calls
:func:`results_page` on a changed copy of ``results/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: The committed ``cpu``-profile W-MNIST studies, in the order the page shows them.
CPU_STUDIES: tuple[str, ...] = (
    "wmnist-published",
    "wmnist-published-seed1",
    "wmnist-published-seed2",
    "wmnist",
)
#: The reproduction study (``--profile repro``): one folder per DDA scaling and seed.
REPRO_ROOT = "wmnist-repro"
REPRO_SCALINGS: tuple[str, ...] = ("paper", "published")
REPRO_SEEDS: tuple[int, ...] = (0, 1, 2)
#: The figures a Table 1 study writes, in the order the page shows them.
STUDY_FIGURES: tuple[tuple[str, str], ...] = (
    ("fig2_features.png", "the 2-D test features of each run (Fig. 2b-f)"),
    ("fig2_features_zoom.png", "the same features, each panel zoomed onto its own range"),
    ("per_class_accuracy.png", "test accuracy per digit (minority digits shaded)"),
    ("accuracy_vs_gamma.png", "test accuracy against γ"),
    ("fig2a_distribution.png", "the W-MNIST training set (Fig. 2a)"),
)


# --------------------------------------------------------------------------- helpers


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; ``|`` inside a cell is escaped."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def load_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(data, None)``, or ``(None, why)`` when the file is missing or unreadable (a study
    that is still running may not have written it yet)."""
    if not path.is_file():
        return None, "missing"
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as err:
        return None, f"unreadable ({type(err).__name__}: {err})"


def flat_profile(record: Mapping[str, Any] | str) -> dict[str, Any]:
    """A profile record of a results file with its recipe (``train``) beside its data settings;
    files written before profiles held a ``TrainConfig`` are flat already, and some files
    record the profile's name alone."""
    if isinstance(record, str):
        return {"name": record}
    data = dict(record)
    train = data.pop("train", None) or {}
    return data | dict(train)


def lr_schedule(p: Mapping[str, Any]) -> str:
    """``lr 0.01, ×0.5 every 7 epochs`` (or a constant rate)."""
    lr, decay, step = p.get("lr"), p.get("lr_decay"), p.get("lr_step")
    if lr is None:
        return "lr ?"
    if decay in (None, 1, 1.0) or not step:
        return f"lr {lr:g}"
    return f"lr {lr:g}, ×{decay:.3g} every {step} epochs"


def describe_profile(record: Mapping[str, Any] | str) -> str:
    """One line that says which profile made a result: its name, epochs, learning-rate
    schedule, batch size, clipping and (W-MNIST) the number of training images."""
    p = flat_profile(record)
    parts = [f"profile `{p.get('name', '?')}`"]
    if "epochs" in p:
        parts.append(f"{p['epochs']} epochs")
    if "lr" in p:
        parts.append(lr_schedule(p))
    if "batch_size" in p:
        parts.append(f"batch {p['batch_size']}")
    if "epochs" in p:
        clip = p.get("grad_clip")
        parts.append("no gradient clipping" if clip is None else f"gradient clipping at {clip:g}")
    counts = p.get("counts")
    if isinstance(counts, Mapping) and counts:
        parts.append(f"{sum(counts.values()):,} W-MNIST training images")
    if p.get("test_subset"):
        parts.append(f"the first {p['test_subset']} test images")
    return ", ".join(parts)


def minority_digits(record: Mapping[str, Any] | str) -> list[int]:
    """The digits a W-MNIST profile cut below the largest count (W-MNIST's own minority
    digits when the record does not keep the counts)."""
    counts = flat_profile(record).get("counts") or {}
    if not counts:
        from ferlib.data.mnist import WMNIST_MINORITY

        return list(WMNIST_MINORITY)
    largest = max(counts.values())
    return sorted(int(k) for k, n in counts.items() if n < largest)


def diverged_at(run: Mapping[str, Any]) -> str:
    """``diverged (epoch 5)`` from a diverged run's record."""
    epoch = run.get("epoch")
    if epoch is None:
        found = re.search(r"at epoch (\d+)", str(run.get("error", "")))
        epoch = found.group(1) if found else None
    return f"diverged (epoch {epoch})" if epoch is not None else "diverged"


def fmt(value: Any, digits: int = 2) -> str:
    """A number as the tables show it, ``–`` for none."""
    if value is None:
        return "–"
    if isinstance(value, float | int):
        return f"{value:.{digits}f}"
    return str(value)


def machine_line(table: Mapping[str, Any]) -> str:
    """``machine: ..., wall time ... s`` of a results file, when it records them."""
    bits = []
    m = table.get("machine")
    if isinstance(m, Mapping):
        bits.append(
            "machine: "
            + ", ".join(f"{k} {v}" for k, v in m.items() if k in ("device", "threads", "torch"))
        )
    wall = table.get("wall_seconds", table.get("wall_seconds_this_call"))
    if wall is not None:
        bits.append(f"wall time {wall:,.0f} s")
    return "; ".join(bits)


# --------------------------------------------------------------------------- W-MNIST


def study_title(folder: str, table: Mapping[str, Any]) -> str:
    """The heading of one Table 1: where it is and what made it."""
    name = flat_profile(table.get("profile", {})).get("name", "?")
    return (
        f"`results/{folder}/table1.json`: profile `{name}`, "
        f"{table.get('scaling', '?')} scaling, seed {table.get('seed', '?')}"
    )


def table1_markdown(table: Mapping[str, Any]) -> str:
    """Table 1 of one study: per run the paper's accuracy, ours (the classifier layer), the
    minority digits, and the nearest class mean (NCM) of the features."""
    minority = minority_digits(table.get("profile", {}))
    digits = " / ".join(str(d) for d in minority)
    paper = table.get("paper_table1", {})
    header = ["run", "λ", "γ", "paper %", "ours %", f"digits {digits} %", "NCM %"]
    header.append(f"NCM digits {digits} %")
    rows = []
    for name, r in table.get("runs", {}).items():
        lam = "–" if not r.get("lam") else f"{r['lam']:g}"
        gamma = "–" if not r.get("gamma") else f"{r['gamma']:g}"
        row = [name, lam, gamma, fmt(paper.get(name))]
        if r.get("status") != "ok":
            rows.append([*row, diverged_at(r), "–", "–", "–"])
            continue
        per = r.get("test_per_class_acc") or [None] * 10
        ncm = r.get("ncm_per_class_acc") or [None] * 10
        row += [fmt(r.get("test_acc")), " / ".join(fmt(per[d], 1) for d in minority)]
        row += [fmt(r.get("ncm_acc")), " / ".join(fmt(ncm[d], 1) for d in minority)]
        rows.append(row)
    return md_table(header, rows)


def by_seed_markdown(tables: Mapping[int, Mapping[str, Any]]) -> str:
    """One row per run, the classifier's and the NCM's accuracy on each seed present."""
    seeds = sorted(tables)
    runs = list(dict.fromkeys(n for t in tables.values() for n in t.get("runs", {})))
    paper = next(iter(tables.values())).get("paper_table1", {})
    header = ["run", "paper %"]
    header += [f"classifier, seed {s}" for s in seeds] + [f"NCM, seed {s}" for s in seeds]
    rows = []
    for name in runs:
        cls, ncm = [], []
        for s in seeds:
            r = tables[s].get("runs", {}).get(name)
            if r is None:
                cls.append("not run")
                ncm.append("not run")
            elif r.get("status") != "ok":
                cls.append(diverged_at(r))
                ncm.append("–")
            else:
                cls.append(fmt(r.get("test_acc")))
                ncm.append(fmt(r.get("ncm_acc")))
        rows.append([name, fmt(paper.get(name)), *cls, *ncm])
    return md_table(header, rows)


def figure(results: Path, rel: str, what: str, copy: list[Path]) -> str:
    """A MyST figure of the results file ``results / rel`` (shown as ``results/<rel>`` beside
    the page), added to ``copy``; ``""`` when the file does not exist. A figure with the same
    bytes as one shown before is named, not shown (and not copied) again."""
    path = results / rel
    if not path.is_file():
        return ""
    data = path.read_bytes()
    for earlier in copy:
        if earlier.read_bytes() == data:
            same = earlier.relative_to(results).as_posix()
            return f"`results/{rel}` ({what}) is the same image as `results/{same}` above."
    copy.append(path)
    return f"```{{figure}} results/{rel}\n:width: 100%\n\n`results/{rel}`: {what}\n```"


def study_section(
    results: Path, folder: str, level: str, figures: Sequence[str], copy: list[Path]
) -> str:
    """One Table 1 study: heading, provenance, table and its figures (added to ``copy``)."""
    table, why = load_json(results / folder / "table1.json")
    if table is None:
        return f"{level} `results/{folder}/`\n\n`results/{folder}/table1.json` is {why}.\n"
    parts = [f"{level} {study_title(folder, table)}", ""]
    parts.append(describe_profile(table.get("profile", {})) + ".")
    extra = machine_line(table)
    if extra:
        parts.append(f"W-MNIST drawn with seed {table.get('wmnist_seed', '?')}; {extra}.")
    parts += ["", table1_markdown(table), ""]
    for name in figures:
        shown = figure(results, f"{folder}/{name}", dict(STUDY_FIGURES).get(name, name), copy)
        if shown:
            parts += [shown, ""]
    return "\n".join(parts)


def paired_markdown(report: Mapping[str, Any]) -> str:
    """The paired tests (``ferlib.experiments.paired``): per pair, rule and group of digits,
    A − B on each seed (``*``: McNemar p < alpha), the mean and the verdict over seeds; then
    each run's average per-class accuracy with its bootstrap interval."""
    seeds = report.get("seeds", [])
    alpha = report.get("alpha", 0.05)
    header = ["A vs B", "rule", "digits", *[f"seed {s}" for s in seeds], "mean"]
    header.append("A better / B better / n.s.")
    rows = []
    for c in report.get("comparisons", []):
        cells = [
            f"{s['diff']:+.2f}{'*' if s.get('p_value', 1.0) < alpha else ''}"
            for s in c.get("seeds", [])
        ]
        verdict = f"{c.get('a_better')} / {c.get('b_better')} / {c.get('not_significant')}"
        mean = f"{c.get('mean_diff', 0):+.2f}"
        rows.append([f"{c['a']} vs {c['b']}", c.get("rule"), c.get("group"), *cells, mean, verdict])
    parts = [
        f"A − B in accuracy (points) on the same test images, seeds {seeds}; `*` marks "
        f"McNemar's exact test p < {alpha}; {report.get('n_resamples', '?')} bootstrap "
        "resamples.",
        "",
        md_table(header, rows),
        "",
    ]
    noise = report.get("mean_class_acc_noise", {})
    if noise:
        parts += ["Average per-class accuracy of the classifier, 95% bootstrap interval:", ""]
        rows = [
            [name] + [f"{r['value']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]" for r in per_seed]
            for name, per_seed in noise.items()
        ]
        parts.append(md_table(["run", *[f"seed {s}" for s in seeds]], rows))
    return "\n".join(parts)


def repro_section(results: Path, copy: list[Path]) -> str:
    """The reproduction study: every folder that exists, which seeds are missing or still
    running, the seeds side by side per scaling, and the paired tests when they exist."""
    root = results / REPRO_ROOT
    parts = [
        "## The reproduction study (`repro` profile)",
        "",
        f"`results/{REPRO_ROOT}/`: the paper-scale W-MNIST with the `repro` profile, three seeds "
        "under each DDA scaling; each finished run keeps its test predictions, so the losses are "
        "compared with paired tests on the same test images.",
        "",
    ]
    done: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in REPRO_SCALINGS}
    status_rows = []
    for scaling in REPRO_SCALINGS:
        for seed in REPRO_SEEDS:
            folder = f"{REPRO_ROOT}/{scaling}-seed{seed}"
            table, why = load_json(results / folder / "table1.json")
            if table is not None:
                done[scaling][seed] = table
                status = "done"
            elif (results / folder).is_dir():
                status = f"running or unfinished: the folder exists, `table1.json` is {why}"
            else:
                status = "missing: not run yet"
            status_rows.append([f"`results/{folder}/`", scaling, seed, status])
    parts += [md_table(["folder", "scaling", "seed", "status"], status_rows), ""]
    missing = [f"{r[1]} seed {r[2]}" for r in status_rows if r[3] != "done"]
    if missing:
        parts += [f"Missing or unfinished: {', '.join(missing)}.", ""]
    for scaling in REPRO_SCALINGS:
        if done[scaling]:
            parts += [f"### {scaling} scaling, by seed", ""]
            first = next(iter(done[scaling].values()))
            parts += [describe_profile(first.get("profile", {})) + ".", ""]
            parts += [by_seed_markdown(done[scaling]), ""]
    for scaling in REPRO_SCALINGS:
        for seed in sorted(done[scaling]):
            folder = f"{REPRO_ROOT}/{scaling}-seed{seed}"
            parts += [study_section(results, folder, "###", ("fig2_features.png",), copy), ""]
    report, why = load_json(root / "paired.json")
    parts += ["### Paired tests", ""]
    if report is None:
        parts.append(f"`results/{REPRO_ROOT}/paired.json` is {why}.")
    else:
        parts += [f"`results/{REPRO_ROOT}/paired.json`:", "", paired_markdown(report)]
    return "\n".join(parts)


# --------------------------------------------------------------------------- other studies


def stability_section(results: Path, copy: list[Path]) -> str:
    """Which recipes train DDA: one row per variant of ``results/stability/stability.json``."""
    path = results / "stability" / "stability.json"
    table, why = load_json(path)
    head = "## Which recipes train DDA (`results/stability/`)"
    if table is None:
        return f"{head}\n\n`results/stability/stability.json` is {why}.\n"
    minority = minority_digits(table.get("profile", {}))
    digits = " / ".join(str(d) for d in minority)
    header = ["variant", "DDA scaling", "lr", "clipping", "init", "outcome", "test %"]
    header += [f"digits {digits} %", "last mean |x|"]
    rows = []
    for name, r in table.get("variants", {}).items():
        clip = "none" if r.get("grad_clip") is None else f"{r['grad_clip']:g}"
        scaling = r.get("scaling", "?") if r.get("gamma") else "–"
        history = r.get("history") or []
        norm = fmt(history[-1].get("feature_norm"), 1) if history else "–"
        if r.get("status") == "ok":
            per = r.get("test_per_class_acc") or []
            outcome, acc = f"trained {r.get('epochs', '?')} epochs", fmt(r.get("test_acc"))
            minor = " / ".join(fmt(per[d], 1) for d in minority if d < len(per))
        else:
            outcome, acc, minor = diverged_at(r), "–", "–"
        rows.append([name, scaling, f"{r.get('lr', 0):g}", clip, r.get("init", "?"), outcome])
        rows[-1] += [acc, minor, norm]
    parts = [
        head,
        "",
        f"`results/stability/stability.json`: seed {table.get('seed', '?')}; each variant "
        f"changes one setting of {describe_profile(table.get('profile', {}))}. "
        f"{machine_line(table)}.",
        "",
        md_table(header, rows),
        "",
    ]
    what = "mean feature norm and softmax loss per epoch (× marks a divergence)"
    parts.append(figure(results, "stability/stability.png", what, copy))
    return "\n".join(parts)


def scale_section(results: Path, copy: list[Path]) -> str:
    """Accuracy against W-MNIST size: one row per run of ``results/wmnist-scale/scale.json``."""
    table, why = load_json(results / "wmnist-scale" / "scale.json")
    head = "## Accuracy against W-MNIST size (`results/wmnist-scale/`)"
    if table is None:
        return f"{head}\n\n`results/wmnist-scale/scale.json` is {why}.\n"
    header = ["arm", "loss", "seed", "per digit (maj / min)", "images", "epochs", "steps"]
    header += ["passes", "test %", "digits 2/5/8 %", "NCM %", "NCM 2/5/8 %", "paper %", "s"]
    paper = table.get("paper_table1", {})
    rows = []
    for r in table.get("runs", {}).values():
        c = r.get("recipe", {})
        row = [r.get("arm"), r.get("loss"), r.get("seed")]
        row += [f"{c.get('majority')} / {c.get('minority')}", f"{c.get('n_train', 0):,}"]
        row += [c.get("epochs"), c.get("steps"), f"{c.get('passes', 0):g}"]
        if r.get("status") == "ok":
            row += [fmt(r.get("test_acc")), fmt(r.get("minority_acc"))]
            row += [fmt(r.get("ncm_acc")), fmt(r.get("ncm_minority_acc"))]
        else:
            row += [diverged_at(r), "–", "–", "–"]
        row += [fmt(paper.get(r.get("loss"))), fmt(r.get("seconds"), 0)]
        rows.append(row)
    base = table.get("base_profile", {})
    base_line = describe_profile(base) if isinstance(base, Mapping) else f"profile `{base}`"
    parts = [
        head,
        "",
        f"`results/wmnist-scale/scale.json`: {base_line}; seeds {table.get('seeds', '?')}, "
        f"W-MNIST drawn with seed {table.get('wmnist_seed', '?')}. Arm `steps` keeps the number "
        "of SGD steps, arm `epochs` the number of epochs, as the size grows.",
        "",
        md_table(header, rows),
        "",
    ]
    what = "accuracy against training-set size"
    parts.append(figure(results, "wmnist-scale/scale.png", what, copy))
    return "\n".join(parts)


def standin_section(results: Path) -> str:
    """The FER runs on the synthetic stand-in: one row per ``results/standin/*.json``."""
    head = "## Facial expressions on the synthetic stand-in (`results/standin/`)"
    runs = []
    for path in sorted((results / "standin").glob("*.json")):
        data, _ = load_json(path)
        if data is not None and "run" in data and "dataset" in data:
            runs.append((path, data))
    if not runs:
        return f"{head}\n\nNo run in `results/standin/` yet.\n"
    classes = runs[0][1].get("classes", [])
    header = ["file", "run", "λ", "γ", "DDA scaling", "seed", "accuracy %", "average per-class %"]
    header += list(classes)
    rows = []
    for path, r in runs:
        scaling = r.get("scaling", "?") if r.get("gamma") else "–"
        row = [f"`{path.name}`", r.get("run"), fmt(r.get("lam"), 2), fmt(r.get("gamma"), 0)]
        row += [scaling, r.get("seed")]
        if r.get("status") == "ok":
            row += [fmt(r.get("accuracy")), fmt(r.get("mean_class_accuracy"))]
            row += [fmt(a, 1) for a in r.get("per_class_accuracy", [])]
        else:
            row += [diverged_at(r), "–"] + ["–"] * len(classes)
        rows.append(row)
    first = runs[0][1]
    p = flat_profile(first.get("profile", {}))
    data_line = (
        f"{first.get('dataset', '?')}: drawn faces of {p.get('standin_size', '?')} pixels at "
        f"{p.get('standin_scale', '?')}× RAF-DB's counts, crop {p.get('crop', '?')}, ResNet-18 "
        f"{'ImageNet-initialised' if p.get('pretrained') else 'from scratch'}"
    )
    return "\n".join(
        [
            head,
            "",
            ":::{warning}",
            "**Synthetic stand-in, not RAF-DB.** These faces are drawn by "
            "`ferlib.data.make_standin` in RAF-DB's layout and class imbalance; the numbers "
            "test the pipeline and must not be compared with the paper's Table 2.",
            ":::",
            "",
            f"{data_line}; {describe_profile(first.get('profile', {}))}. {machine_line(first)}.",
            "",
            md_table(header, rows),
        ]
    )


def results_page(results: Path, out: Path) -> list[Path]:
    """Write the Results page (Markdown) to ``out`` from the files in ``results``; return the
    figures it shows, which the caller copies to ``out.parent / <their path under results>``.
    Missing studies are named, never fatal."""
    copy: list[Path] = []
    published = {}
    for folder in CPU_STUDIES:
        table, _ = load_json(results / folder / "table1.json")
        if table is not None and table.get("scaling") == "published":
            published[int(table.get("seed", 0))] = table
    parts = [
        "# Results",
        "",
        "Every table on this page is generated from the JSON files in `results/` when the site "
        "is built, and each says which file, profile, DDA scaling and seed it comes from; the "
        "figures are the ones the experiments saved beside them. Accuracies are MNIST test "
        "accuracies in %; the *paper* column is Farzaneh & Qi's Table 1.",
        "",
        "## W-MNIST: Table 1 by seed (`cpu` profile, published scaling)",
        "",
    ]
    if published:
        first = next(iter(published.values()))
        absent = [f"`results/{f}/`" for f in CPU_STUDIES if not (results / f).is_dir()]
        parts += [
            f"{describe_profile(first.get('profile', {}))}; published DDA scaling; seeds "
            f"{sorted(published)}. The classifier is the network's last layer (as in Table 1); "
            "NCM assigns each test feature to the nearest class mean of the training features.",
            "",
            by_seed_markdown(published),
            "",
        ]
        if absent:
            parts += [f"Not found: {', '.join(absent)}.", ""]
    else:
        parts += ["No published-scaling `cpu` study in `results/` yet.", ""]
    parts += ["## W-MNIST: each study", ""]
    for folder in CPU_STUDIES:
        figures = [name for name, _ in STUDY_FIGURES]
        parts += [study_section(results, folder, "###", figures, copy), ""]
    parts += [repro_section(results, copy), ""]
    parts += [stability_section(results, copy), ""]
    parts += [scale_section(results, copy), ""]
    parts += [standin_section(results), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts))
    return copy


# --------------------------------------------------------------------------- other pages


def cell_seconds(notebook: Mapping[str, Any]) -> float | None:
    """How long a notebook's stored run took: the sum of its code cells' execution times
    (the ``execution`` metadata Jupyter records), or ``None`` when it recorded none."""
    total, found = 0.0, False
    for cell in notebook.get("cells", []):
        times = cell.get("metadata", {}).get("execution", {})
        start, end = times.get("iopub.execute_input"), times.get("iopub.status.idle")
        if start and end:
            a = datetime.fromisoformat(start.replace("Z", "+00:00"))
            b = datetime.fromisoformat(end.replace("Z", "+00:00"))
            total += (b - a).total_seconds()
            found = True
    return total if found else None


def duration(seconds: float | None) -> str:
    """``8 s``, ``1 min 4 s`` or ``not recorded``."""
    if seconds is None:
        return "not recorded"
    s = round(seconds)
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60} s"


def profile_rows_of(notebook: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The rows of notebook 00's table ``| notebook | `full` profile | `quick` profile |``:
    ``{"01": (full, quick), ...}``; empty when the table is not there."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        text = "".join(cell.get("source", ""))
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("| notebook |") and "`full`" in line and "`quick`" in line:
                rows = {}
                for row in lines[i + 2 :]:
                    if not row.startswith("|"):
                        break
                    cells = [c.strip() for c in row.strip().strip("|").split("|")]
                    if len(cells) >= 3:
                        rows[cells[0]] = (cells[1], cells[2])
                return rows
    return {}


def notebooks_table(notebooks: Sequence[Path], overview: Path) -> str:
    """Markdown: per notebook, what the ``full`` and ``quick`` profiles run (from the table in
    ``overview``, notebook 00) and how long the committed ``quick`` run took."""
    rows_of = profile_rows_of(json.loads(overview.read_text())) if overview.is_file() else {}
    rows = []
    for path in notebooks:
        nb = json.loads(path.read_text())
        number = path.name[:2]
        full, quick = rows_of.get(number, ("–", "–"))
        link = f"[{path.stem}](notebooks/{path.name})"
        rows.append([link, full, quick, duration(cell_seconds(nb))])
    header = ["notebook", "`full` profile", "`quick` profile", "committed `quick` run took"]
    note = (
        "The profiles' columns are the table of notebook 00; the last column adds up the "
        "execution times stored in each notebook by its last run (the outputs shown here)."
    )
    if not rows_of:
        note = f"(The per-profile table was not found in `{overview.name}`.) " + note
    return md_table(header, rows) + "\n\n" + note + "\n"


def profiles_table() -> str:
    """Markdown: every profile of ``ferlib.experiments.wmnist`` and ``...fer``, its data and
    its recipe (imports ferlib, hence PyTorch)."""
    from ferlib.experiments import fer, wmnist

    rows = []
    for experiment, profiles in (("W-MNIST (Table 1)", wmnist.PROFILES), ("FER", fer.PROFILES)):
        for name, prof in profiles.items():
            record = asdict(prof) if is_dataclass(prof) else dict(prof)
            p = flat_profile(record)
            if p.get("counts"):
                data = f"W-MNIST, {sum(n for _, n in dict(p['counts']).items()):,} images"
                if p.get("test_subset"):
                    data += f", {p['test_subset']} test images"
            else:
                data = "ImageNet-initialised" if p.get("pretrained") else "from scratch"
                data += f"; crop {p.get('crop') or 'the dataset default'}"
                if p.get("standin_scale", 1.0) != 1.0:
                    data += f"; stand-in at {p['standin_scale']:g}× RAF-DB, "
                    data += f"{p.get('standin_size')} px"
            clip = p.get("grad_clip")
            clip_text = "none" if clip is None else f"{clip:g}"
            epochs, batch = p.get("epochs"), p.get("batch_size")
            rows.append([experiment, f"`{name}`", data, epochs, lr_schedule(p), batch, clip_text])
    header = ["experiment", "profile", "data", "epochs", "learning rate", "batch", "clipping"]
    return md_table(header, rows) + "\n"


def public_modules(package: Path) -> list[str]:
    """Dotted names of the public modules under ``package`` (no part starting with ``_``
    other than ``__init__``, which stands for the package)."""
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts):
            continue
        names.append(".".join(parts))
    return sorted(n for n in names if n != package.name)


def api_pages(out: Path, package: Path = ROOT / "ferlib") -> list[str]:
    """One Markdown page per public module of ``package`` under ``out``; each documents the
    members defined in that module (not those it re-exports). Returns the module names."""
    out.mkdir(parents=True, exist_ok=True)
    names = public_modules(package)
    for name in names:
        (out / f"{name}.md").write_text(
            f"# `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n   :members:\n"
            "   :ignore-module-all:\n```\n"
        )
    return names
