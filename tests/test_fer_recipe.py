"""The FER runs follow the paper's recipe, and the FER path keeps what keeps DDA stable.

The paper's constants (Sec. 4.2) are written here as literals, so that a change to a profile
or to ``ferlib.paper`` that drifts from the paper fails a test (comparing a profile with
``ferlib.paper`` alone would not notice both changing together). The profiles sized for the
stand-in (``cpu``, ``quick``) are not pinned here: their numbers are the course's to choose.
"""

from __future__ import annotations

import pytest
import torch

from ferlib import paper
from ferlib.experiments.fer import CROPS, PROFILES, load_data, run_fer, train_config
from ferlib.runtime import pick_device


def test_rafdb_paper_profile_is_the_papers_recipe():
    """RAF-DB: random 90 x 90 crops of the 100 x 100 aligned faces; 60 epochs, batch 64,
    lr 0.01 divided by 10 every 20 epochs; γ = 5, λ = 0.01, α = 0.5; ImageNet weights."""
    raf = PROFILES["rafdb-paper"]
    assert CROPS["rafdb"] == (100, 90) and raf.crop is None  # None: the dataset's crop
    t = raf.train
    assert (t.epochs, raf.batch_size, t.lr, t.lr_decay, t.lr_step) == (60, 64, 0.01, 0.1, 20)
    assert (t.gamma, t.lam, t.alpha) == (5.0, 0.01, 0.5) and raf.pretrained
    assert (paper.GAMMA_RAFDB, paper.LAMBDA, paper.ALPHA) == (5.0, 0.01, 0.5)


def test_affectnet_paper_profile_is_the_papers_recipe():
    """AffectNet: γ = 4 at batch 128, lr 0.01 divided by 10, λ = 0.01."""
    aff = PROFILES["affectnet-paper"]
    assert (aff.train.gamma, aff.batch_size) == (4.0, 128) and paper.GAMMA_AFFECTNET == 4.0
    assert (aff.train.lr, aff.train.lr_decay, aff.train.lam) == (0.01, 0.1, 0.01)
    assert aff.crop is None


@pytest.mark.parametrize("loss", ["softmax", "center", "dda"])
def test_every_fer_run_keeps_its_profiles_gradient_clipping(loss):
    for name, profile in PROFILES.items():
        for scaling in ("paper", "published"):
            config = train_config(profile, loss, scaling, 0)
            assert config.grad_clip == profile.train.grad_clip, (name, loss, scaling)


def test_a_fer_run_clips_its_gradients_at_every_step(tmp_path, monkeypatch):
    """End to end on the quick stand-in: run_fer -> train -> every step clips at the
    profile's norm (the W-MNIST loop's clipping is tested in test_training.py)."""
    profile = PROFILES["quick"].with_train(epochs=1)
    assert profile.train.grad_clip is not None
    root = tmp_path / "standin"
    data = load_data("standin", profile, pick_device("cpu"), root, progress=False)
    norms: list[float] = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def spy_clip(parameters, max_norm, *args, **kwargs):
        norms.append(max_norm)
        return real_clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy_clip)
    result = run_fer(
        "standin", "dda", profile, root=root, out_dir=tmp_path / "out", progress=False, data=data
    )
    assert result["status"] == "ok"
    assert norms == [profile.train.grad_clip] * len(data[0])
