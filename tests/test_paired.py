"""ferlib.experiments.paired: paired tests between a study's runs, on hand-made outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scipy import stats

from ferlib.cli import main
from ferlib.experiments.paired import GROUPS, REPRO_RUNS, compare, format_paired, paired_report
from ferlib.experiments.wmnist import save_outputs

LABELS = torch.arange(10).repeat_interleave(20)  # 20 test images per digit, 200 in all


def outputs(wrong: dict[int, int]) -> dict[str, torch.Tensor]:
    """Test outputs whose three rules all miss the first ``wrong[d]`` images of digit d."""
    preds = LABELS.clone()
    for digit, n in wrong.items():
        idx = (LABELS == digit).nonzero().flatten()[:n]
        preds[idx] = (digit + 1) % 10
    feats = torch.zeros(len(LABELS), 2)
    return {"features": feats, "labels": LABELS, "classifier": preds, "ncm": preds} | {
        "cosine_ncm": preds
    }


def as_numpy(run: dict[str, torch.Tensor]) -> dict:
    return {k: v.numpy() for k, v in run.items()}


def test_compare_counts_discordant_images_within_the_group() -> None:
    a = as_numpy(outputs({2: 2}))  # A misses 2 images of digit 2
    b = as_numpy(outputs({2: 10, 3: 5}))  # B misses 10 of digit 2 and 5 of digit 3
    minority = compare(a, b, "classifier", GROUPS["minority"], n_resamples=200)
    assert minority["n"] == 60
    assert (minority["only_a"], minority["only_b"]) == (8, 0)
    assert minority["a_acc"] == pytest.approx(100 * 58 / 60, abs=0.01)
    assert minority["b_acc"] == pytest.approx(100 * 50 / 60, abs=0.01)
    assert minority["diff"] == pytest.approx(100 * 8 / 60, abs=0.01)
    assert minority["p_value"] == pytest.approx(stats.binomtest(8, 8, 0.5).pvalue, rel=1e-3)
    low, high = minority["diff_ci"]
    assert 0 <= low <= minority["diff"] <= high
    # average per-class accuracy over 2, 5, 8: (90 - 50) / 3 points
    assert minority["mean_class_diff"] == pytest.approx(40 / 3, abs=0.01)
    majority = compare(a, b, "classifier", GROUPS["majority"], n_resamples=200)
    assert (majority["only_a"], majority["only_b"], majority["n"]) == (5, 0, 140)
    assert majority["diff"] == pytest.approx(100 * 5 / 140, abs=0.01)


def test_compare_refuses_runs_scored_on_different_images() -> None:
    a = as_numpy(outputs({}))
    b = dict(a, labels=a["labels"][::-1].copy())
    with pytest.raises(ValueError, match="same test labels"):
        compare(a, b, "classifier", GROUPS["all"])
    with pytest.raises(KeyError, match="no 'knn' predictions"):
        compare(a, a, "knn", GROUPS["all"])


def write_study(root: Path, seed: int, wrong: dict[str, dict[int, int]]) -> None:
    for name, template in REPRO_RUNS.items():
        save_outputs(root / template.format(seed=seed), outputs(wrong.get(name, {})))


def test_report_counts_the_seeds_on_which_a_difference_is_significant(tmp_path: Path) -> None:
    # DDA beats softmax on the minority digits by 10 images of digit 5 on seeds 0 and 1
    # (McNemar p = 0.002) and by 1 image on seed 2 (p = 1: not significant)
    for seed, n in ((0, 10), (1, 10), (2, 1)):  # softmax misses n images of digit 5
        write_study(tmp_path, seed, {"softmax": {5: n}})
    report = paired_report(tmp_path, (0, 1, 2), n_resamples=200, out=tmp_path / "p.json")
    assert (tmp_path / "p.json").is_file()
    row = next(
        c
        for c in report["comparisons"]
        if (c["a"], c["b"], c["rule"], c["group"])
        == ("dda-7 published", "softmax", "ncm", "minority")
    )
    assert [s["only_a"] for s in row["seeds"]] == [10, 10, 1]
    assert (row["a_better"], row["b_better"], row["not_significant"]) == (2, 0, 1)
    assert row["diff_range"] == [
        pytest.approx(100 / 60, abs=0.01),
        pytest.approx(1000 / 60, abs=0.01),
    ]
    # on the majority digits the two runs agree everywhere
    same = next(
        c
        for c in report["comparisons"]
        if (c["a"], c["b"], c["rule"], c["group"])
        == ("dda-7 published", "softmax", "ncm", "majority")
    )
    assert (same["a_better"], same["b_better"], same["not_significant"]) == (0, 0, 3)
    text = format_paired(report)
    assert "dda-7 published vs softmax" in text and "+16.67*" in text and "+1.67 " in text
    noise = report["mean_class_acc_noise"]["softmax"][0]
    assert noise["ci"][0] <= noise["value"] <= noise["ci"][1] < 100


def test_missing_outputs_are_a_clear_cli_error(tmp_path: Path, capsys) -> None:
    write_study(tmp_path, 0, {})
    code = main(["paired", "--root", str(tmp_path), "--seeds", "0", "1", "--resamples", "100"])
    err = capsys.readouterr().err
    assert code == 2
    assert "python -m ferlib paired: error: paired: no test outputs at" in err
    assert "paper-seed1/softmax-test.npz" in err


def test_cli_writes_the_report(tmp_path: Path, capsys) -> None:
    write_study(tmp_path, 0, {"center": {8: 6}})
    assert main(["paired", "--root", str(tmp_path), "--seeds", "0", "--resamples", "100"]) == 0
    assert "center vs softmax" in capsys.readouterr().out
    text = (tmp_path / "paired.txt").read_text()
    assert "-10.00*" in text  # center misses 6 of the 60 minority images: p = 0.03
