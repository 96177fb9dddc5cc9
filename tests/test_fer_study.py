"""ferlib.experiments.fer_study: the stand-in FER study read back, on hand-made runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ferlib.cli import main
from ferlib.experiments.fer_data import save_test_outputs
from ferlib.experiments.fer_study import (
    GROUPS,
    STUDY_RUNS,
    center_lag,
    convergence,
    format_study,
    study_report,
    wen_prediction,
)
from ferlib.experiments.paired import format_paired

K = 7
LABELS = torch.arange(K).repeat_interleave(10)  # 10 test faces per expression, 70 in all


def history(accs: list[float]) -> list[dict]:
    return [
        {"epoch": e + 1, "test_acc": a, "test_mean_class_acc": a - 5, "feature_norm": 3.0}
        for e, a in enumerate(accs)
    ]


def test_convergence_compares_the_last_two_evaluations_with_one_evaluations_noise() -> None:
    n = 1534
    half = 100 * 1.96 * (0.8 * 0.2 / n) ** 0.5  # 2.00 points at 80% on 1,534 faces
    flat = convergence({"history": history([60.0, 79.0, 80.0])}, n)
    assert flat["half_width"] == pytest.approx(half, abs=0.01)
    assert flat["flat"] and flat["diff"] == 1.0 and flat["epochs"] == [2, 3]
    rising = convergence({"history": history([60.0, 75.3, 80.0])}, n)
    assert not rising["flat"] and rising["diff"] == pytest.approx(4.7)
    # epochs without a test evaluation are skipped, not read as zero
    sparse = history([70.0, 80.0, 80.5])
    del sparse[1]["test_acc"]
    assert convergence({"history": sparse}, n)["epochs"] == [1, 3]
    with pytest.raises(ValueError, match="fewer than two"):
        convergence({"history": history([80.0])}, n)


def test_wen_prediction_matches_the_binomial_by_hand_and_the_batches_drawn() -> None:
    # batch of 2, a class with half the data: n ~ Bin(2, 1/2) = 0, 1, 2 w.p. 1/4, 1/2, 1/4;
    # alpha n / (1 + n) = 0, 1/4, 1/3 -> mean step 1/2 * 1/4 + 1/4 * 1/3 = 5/24
    two = wen_prediction([0, 1] * 50, batch_size=2, alpha=0.5, num_classes=2)
    assert two[0]["p_absent"] == pytest.approx(0.25, abs=1e-4)
    assert two[0]["mean_step"] == pytest.approx(5 / 24, abs=1e-4)
    assert two[0]["mean_count"] == 1.0
    # a rare class (2%) in batches of 64: absent from (0.98)^64 = 27% of them, and the
    # shuffled batches really drawn (without replacement) agree within sampling noise
    labels = np.r_[np.zeros(640, int), np.ones(31_360, int)]
    rows = wen_prediction(labels, batch_size=64, alpha=0.5, epochs=2, num_classes=2)
    rare, common = rows
    assert rare["p_absent"] == pytest.approx(0.98**64, abs=1e-3)
    assert rare["steps"] == 1000
    assert abs(rare["measured_p_absent"] - rare["p_absent"]) < 0.04
    assert abs(rare["measured_mean_step"] - rare["mean_step"]) < 0.02
    assert common["p_absent"] < 1e-9 and common["measured_p_absent"] == 0.0
    assert rare["mean_step"] < 0.5 * common["mean_step"]


def test_center_lag_is_the_distance_to_the_class_mean_relative_to_its_norm() -> None:
    means = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    centers = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert center_lag(centers, means) == [0.0, 0.5]
    with pytest.raises(ValueError, match="differ"):
        center_lag(centers[:1], means)


def misses(wrong: dict[int, int]) -> torch.Tensor:
    """Predictions that miss the first ``wrong[k]`` test faces of class k."""
    preds = LABELS.clone()
    for k, n in wrong.items():
        idx = (LABELS == k).nonzero().flatten()[:n]
        preds[idx] = (k + 1) % K
    return preds


def write_run(root: Path, ckpts: Path, stem: str, seed: int, wrong: dict[int, int] | None):
    """A result JSON (and, when it finished, outputs and a checkpoint with centers)."""
    center = "softmax" not in stem
    record = {"seed": seed, "lam": 0.01 if center else 0.0, "seconds": 60.0}
    record["profile"] = {"batch_size": 4, "train": {"alpha": 0.5, "epochs": 2}}
    if wrong is None:
        record |= {"status": "diverged", "error": "loss nan at epoch 1", "history": history([])}
    else:
        preds = misses(wrong)
        per_class = [100 * float((preds[LABELS == k] == k).double().mean()) for k in range(K)]
        cm = np.zeros((K, K), int)
        np.add.at(cm, (LABELS.numpy(), preds.numpy()), 1)
        acc = 100 * float((preds == LABELS).double().mean())
        record |= {
            "status": "ok",
            "accuracy": round(acc, 2),
            "mean_class_accuracy": round(float(np.mean(per_class)), 2),
            "per_class_accuracy": per_class,
            "ncm_per_class_accuracy": per_class,
            "cosine_ncm_per_class_accuracy": per_class,
            "confusion_matrix": cm.tolist(),
            "history": history([acc - 10, acc]),
        }
        means = torch.ones(K, 512)
        save_test_outputs(
            root / f"{stem}-test.npz",
            torch.zeros(len(LABELS), 512),
            preds,
            LABELS,
            extra={"ncm": preds, "cosine_ncm": preds, "class_means": means},
        )
        if center:
            ckpts.mkdir(parents=True, exist_ok=True)
            centers = means.clone()
            centers[1] *= 1.5  # Fear's center lags
            # as the loop saves them: the state dict of the loss module that holds them
            torch.save({"centers": {"centers": centers}}, ckpts / f"{stem}.pt")
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{stem}.json").write_text(json.dumps(record))


def write_study(root: Path, seeds=(0, 1)) -> None:
    fear = GROUPS["minority"][0]
    for s in seeds:
        runs = {
            "softmax": {fear: 1},
            "center": {fear: 3},
            "dda-5 paper": None if s == 1 else {fear: 10, 0: 2},  # diverged on seed 1
            "dda-5 published": {fear: 2},
        }
        for name, wrong in runs.items():
            stem = STUDY_RUNS[name].format(profile="cpu", seed=s)
            write_run(root, root / f"ck{s}", stem, s, wrong)


def test_study_report_reads_groups_skips_a_diverged_seed_and_measures_the_centers(tmp_path):
    write_study(tmp_path)
    labels = np.repeat(np.arange(K), [4, 1, 1, 10, 4, 1, 6])
    report = study_report(
        tmp_path,
        (0, 1),
        checkpoints=str(tmp_path / "ck{seed}"),
        train_labels=labels,
        n_resamples=200,
        out=tmp_path / "study.json",
    )
    assert json.loads((tmp_path / "study.json").read_text())["seeds"] == [0, 1]
    dda = report["runs"]["dda-5 paper"]
    assert dda[1]["status"] == "diverged" and dda[1]["epochs_run"] == 0
    # the minority group is the mean of Fear, Disgust and Anger: Fear 0% -> 200/3
    assert dda[0]["classifier"]["minority"] == pytest.approx(200 / 3, abs=0.01)
    assert dda[0]["classifier"]["rest"] == pytest.approx((80 + 300) / 4, abs=0.01)
    assert report["summary"]["dda-5 paper"] == report["summary"]["dda-5 paper"] | {
        "finished": 1,
        "diverged": 1,
    }
    center = report["summary"]["center"]["classifier_minority"]
    assert center["values"] == pytest.approx([100 * (0.7 + 1 + 1) / 3] * 2, abs=0.01)
    # paired: dda-5 paper vs softmax only on seed 0, 9 Fear faces only softmax gets right
    row = next(
        c
        for c in report["paired"]["comparisons"]
        if (c["a"], c["b"], c["rule"], c["group"])
        == ("dda-5 paper", "softmax", "classifier", "minority")
    )
    assert [s["seed"] for s in row["seeds"]] == [0]
    assert (row["seeds"][0]["only_a"], row["seeds"][0]["only_b"]) == (0, 9)
    assert row["b_better"] == 1
    assert report["paired"]["diverged"] == {"dda-5 paper": [1]}
    # the centers: Fear's ended 50% away from its mean, the others on theirs
    lags = report["center_lag"]["center"]
    assert [r["seed"] for r in lags] == [0, 1]
    assert lags[0]["lag"][1] == pytest.approx(0.5) and lags[0]["lag"][0] == 0.0
    assert "softmax" not in report["center_lag"]  # no centers without the center term
    # Wen-step statistics of the training labels and the profile's batch size
    fear = report["wen"][1]
    assert fear["share"] == pytest.approx(1 / 27, abs=1e-4)
    assert fear["p_absent"] == pytest.approx((26 / 27) ** 4, abs=1e-3)
    text = format_study(report)
    assert "SYNTHETIC STAND-IN" in text and "diverged after 0 epoch(s)" in text
    assert "NOT flat" in text  # 10 points between the last two evaluations
    assert "dda-5 paper diverged on seed(s) 1" in text
    # the notebook prints parts of the paired report: one rule, one group, no intervals
    part = format_paired(report["paired"], rules=("ncm",), groups=("minority",), noise=False)
    rows = [line for line in part.splitlines()[2:] if " vs " in line]
    assert len(rows) == 5 and all(" ncm " in r and "minority" in r for r in rows)
    assert "average per-class" not in part and "diverged on seed(s) 1" in part


def test_the_command_writes_the_report_and_fails_clearly_without_runs(tmp_path, capsys):
    write_study(tmp_path)
    assert main(["fer-report", "--root", str(tmp_path), "--seeds", "0", "1"]) == 0
    assert (tmp_path / "study.txt").read_text().startswith("SYNTHETIC STAND-IN")
    capsys.readouterr()
    assert main(["fer-report", "--root", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m ferlib fer-report: error: no result at ")
    assert "run_study.sh" in err and "Traceback" not in err
