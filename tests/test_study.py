"""The W-MNIST study and its command line, end to end in the quick profile."""

from __future__ import annotations

import csv
import json
import math

import pytest

from ferlib.cli import main
from ferlib.data import WMNIST_COUNTS
from ferlib.study import PAPER_TABLE1, PROFILES, RUNS, checkpoint_name, format_table


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
        assert run["status"] == "ok"
        assert (run["lam"], run["gamma"]) == RUNS[name]
        assert 0 <= run["test_acc"] <= 100
        assert len(run["test_per_class_acc"]) == 10
        assert all(math.isfinite(a) for a in run["test_per_class_acc"])
        assert 0 <= run["ncm_acc"] <= 100 and len(run["ncm_per_class_acc"]) == 10
        assert len(run["history"]) == PROFILES["quick"].epochs
    rows = list(csv.DictReader((out / "table1.csv").open()))
    assert [r["run"] for r in rows] == list(RUNS)
    assert float(rows[0]["paper_acc"]) == PAPER_TABLE1["softmax"]
    assert [float(r["ncm_acc"]) for r in rows] == [r["ncm_acc"] for r in table["runs"].values()]
    figures = ["fig2a_distribution.png", "fig2_features.png", "accuracy_vs_gamma.png"]
    for fig in [*figures, "fig2_features_zoom.png", "per_class_accuracy.png"]:
        assert (out / fig).stat().st_size > 10_000
    text = (out / "table1.txt").read_text()
    assert "paper %" in text and "NCM %" in text


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
    assert len(json.loads(history.read_text())) == PROFILES["quick"].epochs


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
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and "test accuracy" not in err


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
    assert PROFILES["paper"].epochs == 100 and PROFILES["paper"].lr == 0.001
    assert PROFILES["paper"].lr_decay == pytest.approx(1 / 1.25) and PROFILES["paper"].lr_step == 20
    assert dict(PROFILES["cpu"].counts) == WMNIST_COUNTS == dict(PROFILES["paper"].counts)
    assert all(p.minority == [2, 5, 8] for p in PROFILES.values())
