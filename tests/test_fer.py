"""The FER experiment (ferlib.experiments.fer) end to end on the quick stand-in."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from ferlib.data.synthetic import make_standin
from ferlib.experiments.fer import (
    PROFILES,
    STANDIN_LABEL,
    find_rafdb,
    load_data,
    load_test_outputs,
    run_fer,
    save_test_outputs,
    train_config,
)
from ferlib.metrics import confusion_matrix
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
    assert len(result["history"]) == PROFILES["quick"].train.epochs
    saved = json.loads((out / "quick-dda-5-paper-seed0.json").read_text())
    assert saved["accuracy"] == result["accuracy"]
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert rows[0]["run"] == "dda-5-paper" and float(rows[0]["accuracy"]) == result["accuracy"]
    assert STANDIN_LABEL in rows[0]["dataset"]
    assert STANDIN_LABEL in (out / "table.txt").read_text()
    # the test outputs beside the JSON give back the same confusion matrix
    feats, preds, labels = load_test_outputs(out / "quick-dda-5-paper-seed0-test.npz")
    assert feats.shape == (test_loader.num_samples, 512) and feats.dtype == torch.float32
    assert torch.equal(labels, test_loader.labels.cpu())
    assert confusion_matrix(preds, labels, k).tolist() == cm
    # the nearest-class-mean rules (notebook 04) on the 512-D features: the saved class means
    # are those of the training features under the test view, and each rule's predictions
    # are the nearest mean; recomputed here from the saved arrays
    with np.load(out / "quick-dda-5-paper-seed0-test.npz") as z:
        means = torch.from_numpy(z["class_means"])
        ncm, cosine = torch.from_numpy(z["ncm"]).long(), torch.from_numpy(z["cosine_ncm"]).long()
    assert means.shape == (k, 512)
    # (the features were saved as float16: allow a rare near-tie to flip)
    nearest = torch.cdist(feats.double(), means.double()).argmin(1)
    assert (ncm == nearest).double().mean() >= 0.95
    assert result["ncm_accuracy"] == pytest.approx(
        100 * (ncm == labels).double().mean().item(), abs=0.01
    )
    assert result["cosine_ncm_accuracy"] == pytest.approx(
        100 * (cosine == labels).double().mean().item(), abs=0.01
    )
    assert len(result["ncm_per_class_accuracy"]) == k


def test_a_diverged_run_is_recorded_without_accuracies(standin, tmp_path):
    root, data = standin
    wild = replace(PROFILES["quick"].with_train(lr=1e6, grad_clip=None), name="wild")
    result = run_fer("standin", "dda", wild, root=root, out_dir=tmp_path, progress=False, data=data)
    assert result["status"] == "diverged" and "accuracy" not in result
    assert "NaN or infinite" in result["error"]
    assert "diverged" in (tmp_path / "table.txt").read_text()


def test_a_run_resumes_from_its_checkpoint(standin, tmp_path):
    root, data = standin
    short = PROFILES["quick"].with_train(epochs=1)
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
    assert (
        prof.train.epochs,
        prof.batch_size,
        prof.train.lr,
        prof.train.lr_step,
        prof.train.gamma,
    ) == (
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
    args = ["fer", "--dataset", "rafdb", "--profile", "quick", "--loss", "dda"]
    args += ["--data-root", str(empty)]
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "RAF-DB not found" in err and str(empty) in err


def test_test_outputs_round_trip_and_reject_bad_shapes(tmp_path):
    feats = torch.randn(6, 4)
    preds, labels = torch.tensor([0, 1, 2, 3, 4, 6]), torch.tensor([0, 1, 1, 3, 5, 6])
    path = save_test_outputs(tmp_path / "a" / "run-test.npz", feats, preds, labels)
    f, p, y = load_test_outputs(path)
    assert torch.allclose(f, feats, atol=1e-2)  # stored as float16
    assert torch.equal(p, preds) and torch.equal(y, labels)
    with np.load(path) as z:
        assert z["features"].dtype == np.float16 and z["labels"].dtype == np.uint8
    with pytest.raises(ValueError, match="features \\(N, D\\)"):
        save_test_outputs(tmp_path / "b.npz", feats[:5], preds, labels)
    with pytest.raises(FileNotFoundError, match="run_fer writes"):
        load_test_outputs(tmp_path / "missing.npz")


def _official_layout(folder):
    (folder / "basic" / "EmoLabel").mkdir(parents=True)
    (folder / "basic" / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 1")


def test_find_rafdb_looks_in_the_usual_places_and_skips_a_standin(tmp_path):
    assert find_rafdb(tmp_path) is None
    make_standin(tmp_path / "RAF-DB", scale=0.01, size=16, progress=False)
    assert find_rafdb(tmp_path) is None  # a stand-in is never taken for the real dataset
    _official_layout(tmp_path / "rafdb")
    assert find_rafdb(tmp_path) == tmp_path / "rafdb"
    other = tmp_path / "other"
    (other / "DATASET" / "train").mkdir(parents=True)
    assert find_rafdb(other) == other  # the re-upload layout, at the root itself


def test_find_rafdb_reads_the_data_root(tmp_path, monkeypatch):
    _official_layout(tmp_path / "RAF-DB")
    monkeypatch.setenv("FERLIB_DATA", str(tmp_path))
    assert find_rafdb() == tmp_path / "RAF-DB"


def test_cli_refuses_a_negative_gamma_and_an_unwritable_out_before_any_work(tmp_path, capsys):
    from ferlib.cli import main

    base = ["fer", "--dataset", "standin", "--profile", "quick", "--loss", "dda", "--no-progress"]
    assert main([*base, "--gamma", "-1", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m ferlib fer: error: --gamma: expected values >= 0")
    blocked = tmp_path / "file"
    blocked.write_text("a file where the output folder should be")
    assert main([*base, "--out", str(blocked / "out")]) == 2
    err = capsys.readouterr().err
    assert f"--out {blocked / 'out'}: cannot write there" in err and "Traceback" not in err


def test_cli_refuses_sync_bn_without_a_gpu(tmp_path, capsys, monkeypatch):
    from ferlib.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["fer", "--dataset", "standin", "--profile", "quick", "--loss", "dda", "--sync-bn"]
    assert main([*args, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "--sync-bn: SyncBatchNorm" in capsys.readouterr().err


def test_fer_help_explains_each_choice_and_default(capsys):
    from ferlib.cli import main

    with pytest.raises(SystemExit):
        main(["fer", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in (
        "(default: standin)",
        "(default: cpu)",
        "for a GPU",
        "--loss {softmax,center,dda} [{softmax,center,dda} ...]",
        "authors' released code",
        "λ = 0.01",
    ):
        assert words in text, words
