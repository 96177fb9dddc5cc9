"""The FER experiment runner (ferlib.fer) end to end on the quick stand-in."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest

from ferlib.fer import PROFILES, STANDIN_LABEL, load_data, run_fer, train_config
from ferlib.runtime import pick_device


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """The quick profile's stand-in and its loaders, decoded once for the module."""
    root = tmp_path_factory.mktemp("standin")
    data = load_data("standin", PROFILES["quick"], pick_device("cpu"), root, progress=False)
    return root, data


def test_quick_run_writes_its_result_and_the_table(standin, tmp_path):
    root, data = standin
    out = tmp_path / "results"
    result = run_fer("standin", "dda", "quick", root=root, out_dir=out, progress=False, data=data)
    assert result["status"] == "ok" and result["run"] == "dda-5-paper"
    assert STANDIN_LABEL in result["dataset"]
    k = len(result["classes"])
    assert k == 7 and len(result["per_class_accuracy"]) == k
    cm = result["confusion_matrix"]
    test_loader = data[1]
    assert sum(map(sum, cm)) == test_loader.num_samples  # every test image counted once
    diagonal = [100 * cm[i][i] / sum(cm[i]) for i in range(k) if sum(cm[i])]
    assert result["mean_class_accuracy"] == pytest.approx(sum(diagonal) / len(diagonal), abs=0.01)
    assert result["accuracy"] == pytest.approx(
        100 * sum(cm[i][i] for i in range(k)) / sum(map(sum, cm)), abs=0.01
    )
    assert len(result["history"]) == PROFILES["quick"].epochs
    saved = json.loads((out / "quick-dda-5-paper-seed0.json").read_text())
    assert saved["accuracy"] == result["accuracy"]
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert rows[0]["run"] == "dda-5-paper" and float(rows[0]["accuracy"]) == result["accuracy"]
    assert STANDIN_LABEL in rows[0]["dataset"]
    assert STANDIN_LABEL in (out / "table.txt").read_text()


def test_a_diverged_run_is_recorded_without_accuracies(standin, tmp_path):
    root, data = standin
    wild = replace(PROFILES["quick"], lr=1e6, grad_clip=None, name="wild")
    result = run_fer("standin", "dda", wild, root=root, out_dir=tmp_path, progress=False, data=data)
    assert result["status"] == "diverged" and "accuracy" not in result
    assert "NaN or infinite" in result["error"]
    assert "diverged" in (tmp_path / "table.txt").read_text()


def test_a_run_resumes_from_its_checkpoint(standin, tmp_path):
    root, data = standin
    short = replace(PROFILES["quick"], epochs=1)
    first = run_fer(
        "standin", "softmax", short, root=root, out_dir=tmp_path, progress=False, data=data
    )
    longer = run_fer(
        "standin",
        "softmax",
        PROFILES["quick"],
        root=root,
        out_dir=tmp_path,
        progress=False,
        data=data,
    )
    assert longer["history"][0] == first["history"][0]  # epoch 1 read back, not retrained
    assert len(longer["history"]) == 2


def test_train_config_follows_the_profile_and_the_loss():
    prof = PROFILES["rafdb-paper"]
    assert (prof.epochs, prof.batch_size, prof.lr, prof.lr_step, prof.gamma) == (
        60,
        64,
        0.01,
        20,
        5.0,
    )
    assert prof.pretrained and not PROFILES["affectnet-paper"].pretrained
    softmax = train_config(prof, "softmax", "paper", 0)
    center = train_config(prof, "center", "paper", 0)
    dda = train_config(prof, "dda", "published", 0, gamma=3.0)
    assert (softmax.lam, softmax.gamma) == (0.0, 0.0)
    assert (center.lam, center.gamma) == (0.01, 0.0)
    assert (dda.lam, dda.gamma, dda.scaling) == (0.01, 3.0, "published")
    assert dda.lr_decay == 0.1 and dda.alpha == 0.5
    assert not softmax.channels_last  # no CUDA given: the CPU layout
    with pytest.raises(ValueError, match="loss must be one of"):
        train_config(prof, "arcface", "paper", 0)


def test_cli_trains_and_evaluates_on_the_standin(standin, tmp_path, capsys):
    from ferlib.cli import main

    root, _ = standin
    out = tmp_path / "standin"
    args = ["fer", "--dataset", "standin", "--profile", "quick", "--loss", "softmax", "dda"]
    code = main([*args, "--data-root", str(root), "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert STANDIN_LABEL in printed and "dda-5-paper" in printed and "softmax" in printed
    runs = sorted(p.name for p in out.glob("*.json"))
    assert runs == ["quick-dda-5-paper-seed0.json", "quick-softmax-seed0.json"]


def test_cli_says_where_it_looked_for_a_missing_dataset(tmp_path, capsys):
    from ferlib.cli import main

    empty = tmp_path / "nothing-here"
    empty.mkdir()
    args = ["fer", "--dataset", "rafdb", "--profile", "quick", "--data-root", str(empty)]
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "RAF-DB not found" in err and str(empty) in err
