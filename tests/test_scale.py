"""The paper-scale W-MNIST of the ``paper`` profile, and the scale experiment (issue 12)."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import replace

import pytest
import torch

import ferlib.runner
from ferlib.cli import main
from ferlib.data import (
    WMNIST_COUNTS,
    StreamLoader,
    TensorLoader,
    class_counts,
    load_mnist,
    wmnist_indices,
)
from ferlib.data.mnist import WMNIST_PAPER_COUNTS, wmnist_scale_counts
from ferlib.experiments.scale import run_scale
from ferlib.experiments.scale_report import merge_scale, plot_scale
from ferlib.experiments.table1 import run_study
from ferlib.experiments.wmnist import PAPER_TABLE1, PROFILES
from ferlib.training import TrainConfig

# sha256 of the paper-scale W-MNIST's sorted MNIST training indices (int64 little-endian)
# followed by their labels (int64 little-endian), drawn from the real MNIST with WMNIST_SEED
PAPER_WMNIST_SHA256 = "af9e87a2eb4d61af3a740c9ece546a2050a9a923ffa96d748ce62e39e62bac8c"
PAPER_WMNIST_INDEX_SUM = 1_354_535_039


def test_paper_profile_is_the_paper_recipe_on_a_paper_scale_wmnist():
    paper = PROFILES["paper"]
    recipe = paper.train
    assert (recipe.epochs, recipe.lr, recipe.lr_step, paper.batch_size) == (100, 0.001, 20, 128)
    assert recipe.lr_decay == pytest.approx(1 / 1.25) and recipe.grad_clip is None
    assert recipe == TrainConfig(eval_every=10)  # TrainConfig's defaults are the paper's recipe
    counts = dict(paper.counts)
    assert counts == dict(WMNIST_PAPER_COUNTS) == wmnist_scale_counts(5840)
    assert sum(counts.values()) == 45_260 and paper.minority == [2, 5, 8]
    assert all(counts[d] == 4 * counts[2] for d in range(10) if d not in (2, 5, 8))
    # the cpu and quick profiles keep today's W-MNIST
    assert dict(PROFILES["cpu"].counts) == dict(WMNIST_COUNTS)
    assert dict(PROFILES["quick"].counts) == {k: n // 10 for k, n in WMNIST_COUNTS.items()}


def test_paper_scale_wmnist_is_pinned_and_contains_todays(mnist_root):
    _, labels = load_mnist(mnist_root, train=True, download=False)
    idx = wmnist_indices(labels, WMNIST_PAPER_COUNTS)
    assert class_counts(labels[idx], 10).tolist() == [WMNIST_PAPER_COUNTS[d] for d in range(10)]
    assert int(idx.sum()) == PAPER_WMNIST_INDEX_SUM
    raw = idx.numpy().astype("<i8").tobytes() + labels[idx].numpy().astype("<i8").tobytes()
    assert hashlib.sha256(raw).hexdigest() == PAPER_WMNIST_SHA256
    # nested: every smaller 4:1 set drawn with the same seed lies inside it
    for majority in (600, 1500, 3000):
        small = wmnist_indices(labels, wmnist_scale_counts(majority))
        assert bool(torch.isin(small, idx).all()), majority
    assert torch.equal(wmnist_indices(labels, wmnist_scale_counts(600)), wmnist_indices(labels))


def test_wmnist_scale_counts_rejects_what_is_not_4_to_1_or_too_large():
    assert wmnist_scale_counts(600) == dict(WMNIST_COUNTS)
    assert wmnist_scale_counts(8) == {d: 2 if d in (2, 5, 8) else 8 for d in range(10)}
    for bad in (0, 601, 5844, -4):
        with pytest.raises(ValueError, match="multiple of 4"):
            wmnist_scale_counts(bad)
    with pytest.raises(TypeError):
        wmnist_scale_counts(600.0)  # type: ignore[arg-type]


def test_stream_loader_is_tensor_loader_when_an_epoch_is_one_pass():
    x, y = torch.randn(100, 2), torch.arange(100) % 10
    plain = TensorLoader(x, y, 16, shuffle=True, seed=5)
    stream = StreamLoader(x, y, 16, steps_per_epoch=len(plain), seed=5)
    for epoch in range(3):
        plain.set_epoch(epoch)
        stream.set_epoch(epoch)
        pairs = list(zip(plain, stream, strict=True))
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in pairs)


def test_stream_loader_cuts_a_stream_of_passes_into_equal_epochs():
    x, y = torch.arange(50.0).unsqueeze(1), torch.arange(50) % 10
    stream = StreamLoader(x, y, 8, steps_per_epoch=3, seed=0)  # 7 batches a pass
    seen = []
    for epoch in range(7):  # 21 batches: exactly 3 passes
        stream.set_epoch(epoch)
        batches = list(stream)
        assert len(batches) == len(stream) == 3
        seen += [int(v) for xb, _ in batches for v in xb[:, 0]]
    assert len(seen) == 150 and sorted(seen) == sorted(list(range(50)) * 3)
    assert seen[:50] != seen[50:100]  # each pass reshuffled
    with pytest.raises(ValueError, match="steps_per_epoch"):
        StreamLoader(x, y, 8, steps_per_epoch=0)


@pytest.fixture(scope="module")
def tiny_scale(mnist_root, tmp_path_factory):
    """The scale experiment on a tiny base: 2 epochs of 10 steps (150 images, batch 16)."""
    base = replace(
        PROFILES["quick"].with_train(epochs=2, lr_step=1), counts=wmnist_scale_counts(20)
    )
    base = replace(base, test_subset=300)
    out = tmp_path_factory.mktemp("scale")
    kwargs = dict(base=base, sizes=(20, 40), epoch_sizes=(20,), epochs=1, root=mnist_root)
    table = run_scale(out, progress=False, **kwargs)
    return table, out, kwargs


def test_scale_experiment_trains_the_grid_and_writes_its_results(tiny_scale):
    table, out, _ = tiny_scale
    runs = table["runs"]
    assert sorted(runs) == sorted(
        [f"steps-{loss}-{m}-seed0" for loss in ("softmax", "dda-7") for m in (20, 40)]
        + [f"epochs-{loss}-20-seed0" for loss in ("softmax", "dda-7")]
    )
    for key, r in runs.items():
        c = r["recipe"]
        assert r["status"] == "ok", key
        assert c["n_train"] == 7 * c["majority"] + 3 * c["minority"]
        assert c["minority"] * 4 == c["majority"]
        if r["arm"] == "steps":  # the base's 2 epochs of ceil(150 / 16) = 10 steps
            assert (c["epochs"], c["steps_per_epoch"], c["steps"]) == (2, 10, 20)
        else:  # one pass over 150 images
            assert (c["epochs"], c["steps"], c["passes"]) == (1, 10, 1)
        assert len(r["history"]) == c["epochs"]
        per_class = r["test_per_class_acc"]
        assert r["minority_acc"] == pytest.approx(sum(per_class[k] for k in (2, 5, 8)) / 3, 0.01)
        assert 0 <= r["ncm_acc"] <= 100 and 0 <= r["test_acc"] <= 100
        assert r["seconds"] > 0
    # 20 steps are 2 passes over 150 images, 1 pass over 310 (20 batches, the last of 6)
    assert runs["steps-softmax-20-seed0"]["recipe"]["passes"] == 2
    assert runs["steps-softmax-40-seed0"]["recipe"]["passes"] == 1
    # the DDA runs use γ = 7 with the published scaling, the softmax runs no DDA term
    assert runs["steps-dda-7-20-seed0"]["recipe"]["scaling"] == "published"
    assert runs["steps-softmax-20-seed0"]["recipe"]["gamma"] == 0
    assert table["seeds"] == [0] and table["wmnist_seed"] == 2020
    rows = list(csv.DictReader((out / "scale.csv").open()))
    assert [r["run"] for r in rows] == list(runs)
    for row in rows:
        assert float(row["test_acc"]) == runs[row["run"]]["test_acc"]
        assert float(row["paper_acc"]) == PAPER_TABLE1[runs[row["run"]]["loss"]]
    assert json.loads((out / "scale.json").read_text()) == table
    assert (out / "scale.png").stat().st_size > 10_000
    assert "steps" in (out / "scale.txt").read_text()


def test_scale_experiment_reuses_finished_runs_and_keeps_other_seeds(
    tiny_scale, monkeypatch, tmp_path
):
    table, out, kwargs = tiny_scale

    def no_training(*args, **kw):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(ferlib.runner, "train", no_training)
    again = run_scale(out, progress=False, **kwargs)
    assert again["runs"] == table["runs"]
    # a call for one more size keeps the finished runs in the table
    monkeypatch.undo()
    more = run_scale(
        out, progress=False, **(kwargs | {"sizes": (20,), "epoch_sizes": (), "seeds": (1,)})
    )
    assert set(table["runs"]) < set(more["runs"])
    assert "steps-softmax-20-seed1" in more["runs"] and more["seeds"] == [0, 1]
    # same data and schedule, another shuffling and initialisation: another result
    assert (
        more["runs"]["steps-softmax-20-seed1"]["history"]
        != (table["runs"]["steps-softmax-20-seed0"]["history"])
    )


def test_scale_figure_has_a_panel_per_loss_and_arm_with_the_paper_line(tiny_scale):
    fig = plot_scale(tiny_scale[0])
    axes = fig.axes
    assert len(axes) == 4
    titles = [ax.get_title() for ax in axes]
    assert titles[0].startswith("softmax: equal SGD steps (20 each)")
    assert titles[3].startswith("DDA γ=7: equal epochs (1 each)")
    for ax, loss in zip(axes, ("softmax", "softmax", "dda-7", "dda-7"), strict=True):
        ys = [tuple(line.get_ydata()) for line in ax.get_lines()]
        assert (PAPER_TABLE1[loss], PAPER_TABLE1[loss]) in ys
        assert ax.get_xlabel() or ax in axes[:2]
    assert "4:1" in fig._suptitle.get_text()


def test_scale_bad_input_fails_clearly(mnist_root, tmp_path, capsys):
    with pytest.raises(ValueError, match="multiple of 4"):
        run_scale(tmp_path, sizes=(601,), root=mnist_root, progress=False)
    with pytest.raises(ValueError, match="unknown losses"):
        run_scale(tmp_path, losses=("center",), root=mnist_root, progress=False)
    with pytest.raises(ValueError, match="epochs must be"):
        run_scale(tmp_path, epochs=0, root=mnist_root, progress=False)
    args = ["scale", "--sizes", "5844", "--out", str(tmp_path), "--no-progress"]
    assert main([*args, "--data-root", str(mnist_root)]) == 2
    assert "5,842" in capsys.readouterr().err
    assert not (tmp_path / "scale.json").exists()


def test_equal_steps_runs_at_the_base_size_are_the_studys_runs_and_can_be_reused(
    tiny_scale, tmp_path, monkeypatch
):
    table, _, kwargs = tiny_scale
    base = kwargs["base"]
    studied = run_study(
        base,
        tmp_path / "study",
        root=kwargs["root"],
        scaling="published",
        runs=["softmax", "dda-7"],
        progress=False,
    )
    # the same batches, initialisation and schedule: the same run
    for loss in ("softmax", "dda-7"):
        mine, theirs = table["runs"][f"steps-{loss}-20-seed0"], studied["runs"][loss]
        assert [h["train_loss"] for h in theirs["history"]] == pytest.approx(
            [h["train_loss"] for h in mine["history"]], rel=1e-5
        )
        assert (theirs["test_acc"], theirs["ncm_acc"]) == (mine["test_acc"], mine["ncm_acc"])

    def no_training(*args, **kw):
        raise AssertionError("a reused run was trained")

    monkeypatch.setattr(ferlib.runner, "train", no_training)
    reuse = (tmp_path / "study" / "table1.json",)
    args = kwargs | {"sizes": (20,), "epoch_sizes": (), "reuse": reuse}
    reused = run_scale(tmp_path / "scale", progress=False, **args)
    row, trained = reused["runs"]["steps-dda-7-20-seed0"], table["runs"]["steps-dda-7-20-seed0"]
    assert row["source"] == str(reuse[0]) and row["recipe"] == trained["recipe"]
    for key in ("test_acc", "minority_acc", "ncm_acc", "ncm_minority_acc", "test_per_class_acc"):
        assert row[key] == trained[key], key
    with pytest.raises(ValueError, match="base profile"):
        run_scale(tmp_path / "other", progress=False, **(args | {"base": base.with_train(lr=0.5)}))


def test_merge_scale_joins_arms_trained_by_two_processes(tiny_scale, tmp_path, capsys):
    table = tiny_scale[0]
    for name, arm in (("a", "steps"), ("b", "epochs")):
        part = table | {"runs": {k: r for k, r in table["runs"].items() if r["arm"] == arm}}
        (tmp_path / name).mkdir()
        (tmp_path / name / "scale.json").write_text(json.dumps(part))
    args = ["scale", "--out", str(tmp_path / "a"), "--merge", str(tmp_path / "b" / "scale.json")]
    assert main(args) == 0
    merged = json.loads((tmp_path / "a" / "scale.json").read_text())
    assert merged["runs"].keys() == table["runs"].keys()
    assert merged["train_seconds_all_runs"] == pytest.approx(table["train_seconds_all_runs"], 0.01)
    assert len(merged["merged_from"]) == 2 and "epochs" in capsys.readouterr().out
    assert (tmp_path / "a" / "scale.png").exists() and (tmp_path / "a" / "scale.csv").exists()
    # a second table whose equal-epochs runs are longer, or whose run differs, is refused
    longer = json.loads((tmp_path / "b" / "scale.json").read_text()) | {"epochs_arm_epochs": 9}
    (tmp_path / "b" / "longer.json").write_text(json.dumps(longer))
    with pytest.raises(ValueError, match="cannot share a figure"):
        merge_scale(tmp_path / "a", (tmp_path / "b" / "longer.json",))
    other = json.loads((tmp_path / "b" / "scale.json").read_text())
    key = next(iter(other["runs"]))
    other["runs"][key]["recipe"] = other["runs"][key]["recipe"] | {"lr": 1.0}
    (tmp_path / "b" / "other.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="differs"):
        merge_scale(tmp_path / "a", (tmp_path / "b" / "other.json",))
