"""The W-MNIST study and its command line, end to end in the quick profile."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

import pytest

from ferlib.cli import main
from ferlib.data import WMNIST_COUNTS
from ferlib.experiments.stability import Variant, format_stability, run_stability
from ferlib.experiments.table1 import checkpoint_name, format_table, run_study
from ferlib.experiments.wmnist import PROFILES, RUNS, StudyProfile, load_outputs
from ferlib.metrics import accuracy


def quick(out, mnist_root) -> int:
    """``python -m ferlib study --profile quick`` into ``out``; returns the exit code."""
    args = ["study", "--profile", "quick", "--out", str(out), "--data-root", str(mnist_root)]
    return main([*args, "--no-progress"])


@pytest.fixture(scope="module")
def quick_study(mnist_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return quick(out, mnist_root), out


def test_quick_study_writes_table_and_figures(quick_study, capsys):
    code, out = quick_study
    assert code == 0
    table = json.loads((out / "table1.json").read_text())
    assert list(table["runs"]) == list(RUNS)
    assert table["profile"]["name"] == "quick" and table["scaling"] == "paper"
    assert table["wall_seconds"] > 0 and table["machine"]["torch"]
    for name, run in table["runs"].items():
        assert run["status"] == "ok", name
        # the quick profile is short, but it learns: chance is 10% on the balanced test set
        # (±1.3 points on 500 images). The features separate in every run (NCM 35-68% here);
        # the classifier of a DDA run under the paper's scaling may still sit near chance
        # after 3 epochs (dda-7: 26.4% on 2 threads, 10.0% on 1 thread, same machine)
        assert run["ncm_acc"] > 20, (name, run["ncm_acc"])
        if not name.startswith("dda"):
            assert run["test_acc"] > 20, (name, run["test_acc"])
        history = run["history"]
        assert len(history) == PROFILES["quick"].train.epochs
        assert history[-1]["train_softmax"] < history[0]["train_softmax"], name
        per_class = run["test_per_class_acc"]
        assert len(per_class) == 10 and all(math.isfinite(a) for a in per_class)
        # the overall accuracy on the (near-balanced) test subset is close to the class mean
        assert abs(run["test_acc"] - sum(per_class) / 10) < 5
        assert len(run["ncm_per_class_acc"]) == 10
    rows = list(csv.DictReader((out / "table1.csv").open()))
    assert [r["run"] for r in rows] == list(RUNS)
    for row, run in zip(rows, table["runs"].values(), strict=True):
        assert float(row["test_acc"]) == run["test_acc"]
        assert float(row["ncm_acc"]) == run["ncm_acc"]
        assert [float(row[f"acc_digit_{k}"]) for k in range(10)] == run["test_per_class_acc"]
    figures = ["fig2a_distribution.png", "fig2_features.png", "accuracy_vs_gamma.png"]
    for fig in [*figures, "fig2_features_zoom.png", "per_class_accuracy.png"]:
        assert (out / fig).stat().st_size > 10_000
    text = (out / "table1.txt").read_text()
    assert "paper %" in text and "NCM %" in text


def test_quick_study_saves_each_runs_test_outputs(quick_study):
    """Every finished run's test features and the predictions of its three rules, image by
    image, for paired tests between runs; they reproduce the table's accuracies."""
    _, out = quick_study
    table = json.loads((out / "table1.json").read_text())
    for name, run in table["runs"].items():
        outputs = load_outputs(out / f"{name}-test.npz")
        labels = outputs["labels"]
        assert outputs["features"].shape == (500, 2) and labels.shape == (500,)
        for rule, key in (("classifier", "test_acc"), ("ncm", "ncm_acc")):
            assert accuracy(outputs[rule], labels) == pytest.approx(run[key], abs=0.006), name
        assert accuracy(outputs["cosine_ncm"], labels) == pytest.approx(
            run["cosine_ncm_acc"], abs=0.006
        )
        assert len(run["cosine_ncm_per_class_acc"]) == 10


def test_quick_study_resumes_from_its_checkpoints(quick_study, mnist_root):
    _, out = quick_study
    for run in RUNS:
        assert (out / "checkpoints" / checkpoint_name(run, "paper")).exists()
    first = json.loads((out / "table1.json").read_text())
    code = quick(out, mnist_root)
    again = json.loads((out / "table1.json").read_text())
    assert code == 0
    for name in RUNS:  # finished runs are read back, not trained again
        assert again["runs"][name]["test_acc"] == first["runs"][name]["test_acc"]
        assert again["runs"][name]["history"] == first["runs"][name]["history"]


def test_softmax_and_center_checkpoints_are_shared_between_scalings():
    assert checkpoint_name("softmax", "paper") == checkpoint_name("softmax", "published")
    assert checkpoint_name("dda-7", "paper") != checkpoint_name("dda-7", "published")


def test_cli_train_one_run(mnist_root, tmp_path, capsys):
    history = tmp_path / "history.json"
    code = main(
        [
            "train",
            "--profile",
            "quick",
            "--gamma",
            "1",
            "--data-root",
            str(mnist_root),
            "--no-progress",
            "--json",
            str(history),
        ]
    )
    assert code == 0
    assert "dda: test accuracy" in capsys.readouterr().out
    assert len(json.loads(history.read_text())) == PROFILES["quick"].train.epochs


def test_cli_reports_divergence_instead_of_numbers(mnist_root, tmp_path, capsys):
    code = main(
        [
            "train",
            "--profile",
            "quick",
            "--gamma",
            "7",
            "--lr",
            "1000",
            "--data-root",
            str(mnist_root),
            "--no-progress",
        ]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert "NaN or infinite" in captured.err
    assert "test accuracy" not in captured.out  # no accuracy is printed for a diverged run


def test_format_table_marks_diverged_runs():
    table = {
        "runs": {
            "softmax": {
                "lam": 0.0,
                "gamma": 0.0,
                "status": "ok",
                "test_acc": 90.0,
                "test_per_class_acc": [90.0] * 10,
            },
            "dda-7": {"lam": 0.01, "gamma": 7.0, "status": "diverged", "error": "NaN"},
        }
    }
    text = format_table(table, minority=[2])
    assert "diverged" in text and "nan" not in text.lower()
    assert "97.34" in text  # the paper's number stands beside ours


def test_profiles_are_consistent():
    paper = PROFILES["paper"].train
    assert paper.epochs == 100 and paper.lr == 0.001 and PROFILES["paper"].batch_size == 128
    assert paper.lr_decay == pytest.approx(1 / 1.25) and paper.lr_step == 20
    assert dict(PROFILES["cpu"].counts) == WMNIST_COUNTS
    # the paper profile trains on the paper-scale W-MNIST (tests/test_scale.py pins it)
    assert sum(n for _, n in PROFILES["paper"].counts) == 45_260
    assert all(p.minority == [2, 5, 8] for p in PROFILES.values())


def test_repro_profile_is_the_documented_schedule():
    """Issue 17's reproduction profile: the paper-scale set, 4 epochs of 354 batches of 128,
    lr 0.01 for three epochs and 0.001 for the last, clipped at 10 like the cpu profile."""
    from ferlib.training import _lr_factor

    repro = PROFILES["repro"]
    assert dict(repro.counts) == dict(PROFILES["paper"].counts)
    assert repro.batch_size == 128 and -(-45_260 // 128) == 354
    t = repro.train
    assert (t.epochs, t.lr, t.grad_clip, t.max_loss) == (4, 0.01, 10.0, 1000.0)
    assert (t.momentum, t.weight_decay, t.warmup_steps) == (0.9, 5e-4, 0)
    lr = [t.lr * _lr_factor(t, 354)(step) for step in (0, 3 * 354 - 1, 3 * 354, 4 * 354 - 1)]
    assert lr == pytest.approx([0.01, 0.01, 0.001, 0.001])


def test_a_diverged_run_is_recorded_as_diverged_and_the_study_exits_1(
    mnist_root, tmp_path, monkeypatch, capsys
):
    wild = PROFILES["quick"].with_train(lr=1e4, grad_clip=None)  # every step explodes
    monkeypatch.setitem(PROFILES, "quick", wild)  # what `--profile quick` now runs
    out = tmp_path / "study"
    args = ["study", "--profile", "quick", "--runs", "softmax", "dda-7"]
    code = main([*args, "--out", str(out), "--data-root", str(mnist_root), "--no-progress"])
    assert code == 1
    table = json.loads((out / "table1.json").read_text())
    for name in ("softmax", "dda-7"):
        run = table["runs"][name]
        assert run["status"] == "diverged" and "test_acc" not in run
        assert "NaN or infinite" in run["error"]
    rows = {r["run"]: r for r in csv.DictReader((out / "table1.csv").open())}
    assert rows["dda-7"]["status"] == "diverged" and rows["dda-7"]["test_acc"] == ""
    text = (out / "table1.txt").read_text()
    assert text.count("diverged") == 2 and "nan" not in text.lower()
    assert "dda-7 diverged" in capsys.readouterr().err


def test_study_profile_takes_counts_as_a_mapping_or_pairs():
    harsh = {k: (20 if k in (2, 5, 8) else n) for k, n in WMNIST_COUNTS.items()}
    from_mapping = replace(PROFILES["cpu"], counts=harsh)
    from_pairs = StudyProfile("x", counts=tuple(reversed(harsh.items())))
    assert from_mapping.counts == from_pairs.counts == tuple(sorted(harsh.items()))
    assert from_mapping.minority == [2, 5, 8]
    hash(from_mapping)  # still a frozen, hashable profile
    with pytest.raises(TypeError, match="mapping"):
        StudyProfile("x", counts=[2, 5, 8])
    with pytest.raises(ValueError, match=r"0\.\.9"):
        StudyProfile("x", counts={10: 5})
    with pytest.raises(ValueError, match=">= 0"):
        StudyProfile("x", counts={1: -5})


def test_studies_on_other_counts_cannot_share_a_checkpoint(mnist_root, tmp_path):
    """Two W-MNIST count settings, one checkpoint folder: the second study stops with a
    clear error instead of reporting the first one's run as its own."""
    tiny = replace(
        PROFILES["quick"].with_train(epochs=1), counts={k: 8 for k in range(10)}, test_subset=100
    )
    ckpt = tmp_path / "checkpoints"
    run_study(
        tiny, tmp_path / "a", root=mnist_root, runs=["softmax"], checkpoints=ckpt, progress=False
    )
    other = replace(tiny, counts={**dict(tiny.counts), 2: 2})
    with pytest.raises(ValueError, match="trained on different data"):
        run_study(
            other,
            tmp_path / "b",
            root=mnist_root,
            runs=["softmax"],
            checkpoints=ckpt,
            progress=False,
        )
    longer = tiny.with_train(epochs=2)  # the same data, more epochs: resumes
    table = run_study(
        longer, tmp_path / "c", root=mnist_root, runs=["softmax"], checkpoints=ckpt, progress=False
    )
    assert [h["epoch"] for h in table["runs"]["softmax"]["history"]] == [1, 2]


def test_stability_experiment_records_each_recipe(mnist_root, tmp_path):
    variants = (
        Variant("fine", 1.0, "published", 0.01, 10.0),
        Variant("explodes", 7.0, "paper", 1e4, None),
    )
    tiny = replace(PROFILES["quick"].with_train(epochs=2), test_subset=100)
    table = run_stability(tiny, tmp_path, root=mnist_root, variants=variants, progress=False)
    fine, explodes = table["variants"]["fine"], table["variants"]["explodes"]
    assert fine["status"] == "ok" and len(fine["history"]) == 2 and "test_acc" in fine
    assert explodes["status"] == "diverged" and explodes["epoch"] == 1
    assert explodes["step"] >= 1 and explodes["history"] == []
    text = format_stability(table, [2, 5, 8])
    assert "trained 2 epochs" in text and "diverged ep 1 step" in text
    saved = json.loads((tmp_path / "stability.json").read_text())
    assert saved["variants"]["explodes"]["status"] == "diverged"
    assert (tmp_path / "stability.png").stat().st_size > 10_000
