"""Claims about the training loop (Algorithm 1): it learns, resumes exactly, stops on NaN."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from ferlib.data import TensorLoader
from ferlib.training import NonFiniteLossError, TrainConfig, predict, seed_everything, train

K = 3


class TinyNet(nn.Module):
    """A small stand-in for LeNets++: (B, 1, 4, 4) images -> 2-D features -> K logits."""

    def __init__(self, num_classes: int = K, feat_dim: int = 2) -> None:
        super().__init__()
        self.num_classes, self.feat_dim = num_classes, feat_dim
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.PReLU(), nn.Linear(32, 2))
        self.classifier = nn.Linear(feat_dim, num_classes, bias=False)
        self.poison_at: int | None = None  # training step at which features turn NaN
        self.calls = 0

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.calls += self.training
        f = self.features(x)
        if self.training and self.poison_at is not None and self.calls >= self.poison_at:
            f = f * float("nan")
        return f, self.classifier(f)


def blobs(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """K Gaussian blobs in 16-D, shaped as 4x4 images; class 2 is a minority."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(K, 16, generator=g) * 2
    y = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    y = torch.cat([y, torch.full((n // 4,), 2)])
    x = means[y] + torch.randn(len(y), 16, generator=g)
    return x.view(-1, 1, 4, 4), y


def loaders(seed: int = 0):
    xtr, ytr = blobs(200, seed)
    xte, yte = blobs(100, seed + 1)
    return TensorLoader(xtr, ytr, 32, shuffle=True, seed=seed), TensorLoader(xte, yte, 128)


def config(**kw) -> TrainConfig:
    base = dict(epochs=4, lr=0.05, lr_step=2, lr_decay=0.5, device="cpu", seed=0)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(lam=0.01),
        dict(lam=0.01, gamma=1.0),
        dict(lam=0.01, gamma=1.0, scaling="published"),
    ],
)
def test_loop_decreases_loss_and_beats_chance(kw):
    seed_everything(0)
    model = TinyNet()
    train_loader, test_loader = loaders()
    result = train(model, train_loader, test_loader, config(**kw), progress=False)
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < first["train_loss"]
    assert last["test_acc"] > 100 / K + 30
    assert len(last["test_per_class_acc"]) == K
    assert (result.centers is None) == (config(**kw).loss_name == "softmax")
    assert [h["lr"] for h in result.history] == pytest.approx([0.05, 0.05, 0.025, 0.025])


def test_centers_follow_the_features():
    seed_everything(0)
    model = TinyNet()
    train_loader, _ = loaders()
    result = train(model, train_loader, None, config(lam=0.01, gamma=1.0), progress=False)
    feats, _, labels = predict(model, train_loader)
    means = torch.stack([feats[labels == k].mean(0) for k in range(K)])
    spread = (feats - means[labels]).norm(dim=1).mean()
    assert (result.centers.centers - means).norm(dim=1).max() < spread


def run(epochs: int, checkpoint, **kw):
    seed_everything(0)
    model = TinyNet()
    train_loader, test_loader = loaders()
    result = train(
        model,
        train_loader,
        test_loader,
        config(epochs=epochs, lam=0.01, gamma=1.0, **kw),
        checkpoint=checkpoint,
        progress=False,
    )
    return model, result


def strip_time(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_resume_is_bit_identical(tmp_path):
    straight_model, straight = run(4, tmp_path / "straight.pt")
    run(2, tmp_path / "resumed.pt")  # "interrupted" after two epochs
    resumed_model, resumed = run(4, tmp_path / "resumed.pt")  # a new process would do this
    for (name, a), b in zip(
        straight_model.state_dict().items(), resumed_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.equal(straight.centers.centers, resumed.centers.centers)
    assert strip_time(straight.history) == strip_time(resumed.history)
    saved = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert saved["epoch"] == 3 and set(saved["centers"]) == {"centers"}


def test_resume_refuses_a_different_configuration(tmp_path):
    run(1, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="different configuration"):
        run(2, tmp_path / "ckpt.pt", lr=0.1)


def test_scaling_does_not_matter_to_resume_without_dda(tmp_path):
    seed_everything(0)
    train_loader, _ = loaders()
    path = tmp_path / "center.pt"
    train(
        TinyNet(),
        train_loader,
        None,
        config(epochs=1, lam=0.01, scaling="published"),
        checkpoint=path,
        progress=False,
    )
    result = train(
        TinyNet(), train_loader, None, config(epochs=2, lam=0.01), checkpoint=path, progress=False
    )
    assert len(result.history) == 2
    with pytest.raises(ValueError, match="different configuration"):
        train(
            TinyNet(),
            train_loader,
            None,
            config(epochs=3, lam=0.01, gamma=1.0),
            checkpoint=path,
            progress=False,
        )


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    seed_everything(0)
    model = TinyNet()
    train_loader, test_loader = loaders()
    model.poison_at = len(train_loader) + 3  # third step of the second epoch
    path = tmp_path / "ckpt.pt"
    with pytest.raises(NonFiniteLossError) as info:
        train(
            model,
            train_loader,
            test_loader,
            config(lam=0.01, gamma=1.0),
            checkpoint=path,
            progress=False,
        )
    message = str(info.value)
    assert "epoch 2, step 3" in message and str(path) in message and "learning rate" in message
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 0 and len(saved["history"]) == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_divergence_of_a_real_loss_is_caught():
    seed_everything(0)
    model = TinyNet()
    train_loader, _ = loaders()
    with pytest.raises(NonFiniteLossError, match="NaN or infinite"):
        train(model, train_loader, None, config(lr=1e6, lam=0.01, gamma=7.0), progress=False)


def test_runaway_loss_above_max_loss_counts_as_divergence():
    seed_everything(0)
    model = TinyNet()
    train_loader, _ = loaders()
    with pytest.raises(NonFiniteLossError, match=r"exceeded max_loss=0\.5 at epoch 1, step 1"):
        train(model, train_loader, None, config(lam=0.01, gamma=1.0, max_loss=0.5), progress=False)


def test_warmup_and_step_schedule():
    seed_everything(0)
    model = TinyNet()
    train_loader, _ = loaders()
    steps = len(train_loader)
    result = train(
        model,
        train_loader,
        None,
        config(epochs=3, warmup_steps=2 * steps, lr_step=1),
        progress=False,
    )
    # the rate each epoch starts with: warm-up ramps linearly over two epochs, and the step
    # decay halves it every epoch
    lrs = [h["lr"] for h in result.history]
    assert lrs == pytest.approx(
        [0.05 / (2 * steps), 0.05 * 0.5 * (steps + 1) / (2 * steps), 0.0125]
    )


def test_eval_every_tests_on_schedule_and_after_the_last_epoch_without_changing_training():
    every, sparse = run(5, None, eval_every=1)[1], run(5, None, eval_every=2)[1]
    assert ["test_acc" in h for h in sparse.history] == [False, True, False, True, True]
    assert sparse.history[-1]["test_acc"] == every.history[-1]["test_acc"]
    assert [h["train_loss"] for h in sparse.history] == [h["train_loss"] for h in every.history]
    with pytest.raises(ValueError, match="eval_every must be an integer >= 1"):
        run(1, None, eval_every=0)
