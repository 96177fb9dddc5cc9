"""The one runner (ferlib.runner.run) and checkpoints written before profiles held a
TrainConfig (issue 16)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace

import pytest
import torch
from fixtures.old_checkpoint import HERE, SETTINGS, Tiny, data, fit

import ferlib.runner
from ferlib.runner import run
from ferlib.training import TrainConfig

CONFIG = TrainConfig(epochs=2, **SETTINGS)


def test_a_finished_run_has_its_record_scores_history_and_provenance():
    written = []
    built = []

    def build():
        built.append(Tiny())
        return built[-1]

    def score(model, result):
        assert model is built[0] and len(result.history) == 2
        return {"answer": 42.0}

    out = run(
        build,
        data(),
        None,
        CONFIG,
        checkpoint=None,
        record={"name": "tiny"},
        score=score,
        write=written.append,
        progress=False,
    )
    assert out["name"] == "tiny" and out["status"] == "ok" and out["answer"] == 42.0
    assert [h["epoch"] for h in out["history"]] == [1, 2]
    assert out["seconds"] >= 0 and out["world_size"] == 1
    assert out["machine"]["device"] == "cpu" and out["machine"]["torch"] == torch.__version__
    assert written == [out]


def test_the_model_is_built_from_the_configs_seed():
    first = run(Tiny, data(), None, CONFIG, checkpoint=None, progress=False)
    again = run(Tiny, data(), None, CONFIG, checkpoint=None, progress=False)
    other = run(Tiny, data(), None, replace(CONFIG, seed=1), checkpoint=None, progress=False)
    assert first["history"][-1]["train_loss"] == again["history"][-1]["train_loss"]
    assert first["history"][-1]["train_loss"] != other["history"][-1]["train_loss"]


def test_a_diverged_run_is_recorded_and_never_scored(tmp_path):
    def score(*_):
        raise AssertionError("a diverged run was scored")

    wild = replace(CONFIG, lr=1e12, scaling="paper", gamma=50.0)
    written = []
    out = run(
        Tiny,
        data(),
        None,
        wild,
        checkpoint=tmp_path / "wild.pt",
        record={"name": "wild"},
        score=score,
        write=written.append,
        progress=False,
    )
    assert out["status"] == "diverged" and out["name"] == "wild"
    assert out["epoch"] >= 1 and out["step"] >= 1 and "NaN or infinite" in out["error"]
    assert isinstance(out["history"], list) and written == [out]
    assert "use scaling='published'" in out["error"] and "or gamma" in out["error"]


@pytest.mark.parametrize(
    ("changes", "absent", "present"),
    [
        ({"scaling": "published"}, "use scaling=", "or gamma"),  # already the published one
        ({"gamma": 0.0, "lam": 0.0}, "gamma;", "grad_clip"),  # softmax: no DDA advice
        ({"grad_clip": 1e12}, "add gradient clipping", "lower grad_clip"),
    ],
)
def test_the_divergence_message_only_suggests_what_the_run_does_not_do(changes, absent, present):
    wild = replace(CONFIG, **({"lr": 1e12, "scaling": "paper", "gamma": 50.0} | changes))
    out = run(Tiny, data(), None, wild, checkpoint=None, progress=False)
    assert out["status"] == "diverged", out
    assert absent not in out["error"] and present in out["error"], out["error"]


def test_only_rank_0_writes(monkeypatch):
    monkeypatch.setattr(ferlib.runner, "is_main", lambda: False)
    written = []
    out = run(Tiny, data(), None, CONFIG, checkpoint=None, write=written.append, progress=False)
    assert out["status"] == "ok" and written == []


# ----------------------------------------------------------------------------- old checkpoints

OLD = json.loads((HERE / "old_checkpoint.json").read_text())["history"]


@pytest.fixture
def old_checkpoint(tmp_path):
    """A copy of the checkpoint that the loop wrote after epoch 1 before issue 16."""
    path = tmp_path / "old.pt"
    shutil.copy(HERE / "old_checkpoint.pt", path)
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 0 and state["config"]["extra"] == {}  # the old form
    return path


def _same(got: list[dict], want: list[dict]) -> None:
    """Epoch 1 is read back from the checkpoint (exact); epoch 2 is trained again: exact on
    the machine that made it, within float32 rounding elsewhere (6 steps of a 4-2-3 network
    from the same state cannot amplify a rounding)."""
    assert {k: v for k, v in got[0].items() if k != "seconds"} == OLD[0]
    for key, value in OLD[1].items():
        assert got[1][key] == pytest.approx(value, rel=1e-6), key


def test_a_checkpoint_from_before_issue_16_resumes_to_the_same_epoch_2(old_checkpoint):
    history = fit(2, old_checkpoint)
    _same(history, OLD)
    resumed = torch.load(old_checkpoint, weights_only=True)
    assert resumed["epoch"] == 1 and "extra" not in resumed["config"]  # now in today's form


def test_the_runner_resumes_it_too(old_checkpoint):
    out = run(Tiny, data(), None, CONFIG, checkpoint=old_checkpoint, progress=False)
    _same(out["history"], OLD)


def test_it_is_refused_for_another_configuration(old_checkpoint):
    with pytest.raises(ValueError, match="different configuration"):
        run(Tiny, data(), None, replace(CONFIG, gamma=2.0), checkpoint=old_checkpoint)
    state = torch.load(old_checkpoint, weights_only=True)
    state["config"]["extra"] = {"note": "a setting that no longer exists"}
    torch.save(state, old_checkpoint)
    with pytest.raises(ValueError, match="different configuration"):
        run(Tiny, data(), None, CONFIG, checkpoint=old_checkpoint, progress=False)


class Slow:
    """A loader whose every batch takes 20 ms: training time that reading a run back lacks."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __getattr__(self, name: str):
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            time.sleep(0.02)
            yield batch


def test_a_rerun_says_it_read_the_run_back_and_keeps_its_training_time(tmp_path, capsys):
    """Rerunning a finished run reads it back: it prints so, and its ``seconds`` still count
    the training of the epochs it read back instead of the moment it took to read them."""
    slow = replace(CONFIG, epochs=3)
    loader = Slow(data())
    first = run(Tiny, loader, None, slow, checkpoint=tmp_path / "t.pt", desc="tiny", progress=False)
    assert "read back" not in capsys.readouterr().out
    epochs = sum(h["seconds"] for h in first["history"])
    assert epochs >= 3 * len(loader) * 0.02  # the time a read-back must not forget
    again = run(Tiny, loader, None, slow, checkpoint=tmp_path / "t.pt", desc="tiny", progress=False)
    printed = capsys.readouterr().out
    assert f"tiny: finished run read back from {tmp_path / 't.pt'} (3 of 3 epochs done)" in printed
    assert again["history"] == first["history"]
    assert again["seconds"] >= round(epochs, 1)
    longer = run(
        Tiny, loader, None, replace(slow, epochs=4), checkpoint=tmp_path / "t.pt", progress=False
    )
    assert "resuming from" in capsys.readouterr().out and len(longer["history"]) == 4
