"""Claims about the training loop (Algorithm 1): it learns, resumes exactly, stops on NaN."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from ferlib.data import TensorLoader
from ferlib.losses import CenterDDALoss
from ferlib.training import NonFiniteLossError, TrainConfig, predict, seed_everything, train

K = 3


class TinyNet(nn.Module):
    """A small stand-in for LeNets++: (B, 1, 4, 4) images -> 2-D features -> K logits."""

    def __init__(self, num_classes: int = K, feat_dim: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes, self.feat_dim = num_classes, feat_dim
        self.features = nn.Sequential(
            nn.Flatten(), nn.Linear(16, 32), nn.PReLU(), nn.Dropout(dropout), nn.Linear(32, 2)
        )
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


def run(epochs: int, checkpoint, seed: int = 0, dropout: float = 0.0, loss=None, **kw):
    """Train TinyNet (built after ``seed_everything(seed)``) with center + DDA loss by
    default; ``loss=dict(lam=..., gamma=...)`` picks another loss."""
    seed_everything(seed)
    model = TinyNet(dropout=dropout)
    train_loader, test_loader = loaders()
    result = train(
        model,
        train_loader,
        test_loader,
        config(epochs=epochs, **(loss or dict(lam=0.01, gamma=1.0)), **kw),
        checkpoint=checkpoint,
        progress=False,
    )
    return model, result


def strip_time(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.parametrize(
    "loss", [dict(lam=0.01, gamma=1.0), dict(lam=0.0, gamma=0.0)], ids=["dda", "softmax"]
)
def test_resume_is_bit_identical(tmp_path, loss):
    """Interrupted after two epochs and resumed in a "new process" (another seed, so that a
    run that ignored the checkpoint and restarted would differ), the run ends bit-identical
    to an uninterrupted one. Dropout draws random numbers every step, so the saved RNG state
    must be restored too."""
    straight_model, straight = run(4, tmp_path / "straight.pt", dropout=0.1, loss=loss)
    run(2, tmp_path / "resumed.pt", dropout=0.1, loss=loss)  # "interrupted" after two epochs
    resumed_model, resumed = run(4, tmp_path / "resumed.pt", seed=123, dropout=0.1, loss=loss)
    assert resumed_model.calls == 2 * len(loaders()[0]), "the resumed run must train 2 epochs"
    for (name, a), b in zip(
        straight_model.state_dict().items(), resumed_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    if loss["gamma"]:
        assert torch.equal(straight.centers.centers, resumed.centers.centers)
    else:
        assert straight.centers is None and resumed.centers is None
    assert strip_time(straight.history) == strip_time(resumed.history)
    saved = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert saved["epoch"] == 3
    assert set(saved["centers"]) == ({"centers"} if loss["gamma"] else set())


def test_resume_reads_the_checkpoint_with_weights_only(tmp_path):
    """A checkpoint that carries pickled code is refused, and the code never runs."""
    path = tmp_path / "ckpt.pt"
    run(1, path)
    marker = tmp_path / "code-ran"
    state = torch.load(path, weights_only=True)
    state["history"] = [Trap(str(marker))]
    torch.save(state, path)
    with pytest.raises(ValueError, match="weights_only=True") as info:
        run(2, path)
    assert str(path) in str(info.value)
    assert not marker.exists(), "train() unpickled arbitrary code from a checkpoint"


class Trap:
    """Unpickling this object creates a file: the sign that a loader ran pickled code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoint_refuses_other_data_and_extends_on_the_same(tmp_path):
    path = tmp_path / "ckpt.pt"

    def fit(loader: TensorLoader, epochs: int):
        cfg = config(epochs=epochs, lam=0.01, gamma=1.0)
        return train(TinyNet(), loader, None, cfg, checkpoint=path, progress=False)

    seed_everything(0)
    x, y = blobs(200, 0)
    fit(TensorLoader(x, y, 32, shuffle=True), epochs=1)
    for other in (
        TensorLoader(x[:-1], y[:-1], 32, shuffle=True),  # one image fewer
        TensorLoader(x.flip(0), y.flip(0), 32, shuffle=True),  # another order
        TensorLoader(x + 1e-3, y, 32, shuffle=True),  # other preprocessing
        TensorLoader(*blobs(200, 5), 32, shuffle=True),  # another draw
    ):
        with pytest.raises(ValueError, match="trained on different data") as info:
            fit(other, epochs=2)
        assert str(path) in str(info.value)
    same = TensorLoader(x.clone(), y.clone(), 32, shuffle=True)  # equal data, new tensors
    assert [h["epoch"] for h in fit(same, epochs=2).history] == [1, 2]


def test_resume_refuses_a_different_configuration_and_names_what_differs(tmp_path):
    run(1, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="different configuration") as info:
        run(2, tmp_path / "ckpt.pt", lr=0.1, seed=0, weight_decay=0.0)
    message = str(info.value)
    assert "lr: " in message and "0.1 now" in message and "weight_decay: 0.0005 there" in message
    assert "momentum" not in message  # only the settings that differ


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


def _one_batch_loader(seed: int = 0) -> TensorLoader:
    x, y = blobs(40, seed)
    return TensorLoader(x, y, batch_size=len(y))


def _hand_step(loader, lam, gamma, lr, clip=None):
    """One SGD step of Algorithm 1 written out: L = L_S + λ L_C + γ L_DDA, optional norm
    clipping, momentum 0.9, no weight decay. Returns the model after the step."""
    seed_everything(0)
    model = TinyNet()
    head = CenterDDALoss(K, 2, lam, gamma) if lam or gamma else None  # same RNG draws
    x, y = next(iter(loader))
    features, logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    if head is not None:
        loss = loss + head(features, y).total
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    return model


@pytest.mark.parametrize(
    ("lam", "gamma"), [(0.0, 0.0), (0.5, 0.0), (0.5, 3.0)], ids=["softmax", "center", "dda"]
)
def test_one_step_follows_the_whole_loss_of_eq_6(lam, gamma):
    """The network's gradient comes from L_S + λ L_C + γ L_DDA, every term counted (large
    λ and γ, so that a loop that dropped a term would move the weights elsewhere)."""
    loader = _one_batch_loader()
    seed_everything(0)
    model = TinyNet()
    cfg = config(epochs=1, lr=0.1, lam=lam, gamma=gamma, weight_decay=0.0)
    train(model, loader, None, cfg, progress=False)
    expected = _hand_step(loader, lam, gamma, lr=0.1)
    for (name, a), b in zip(
        model.state_dict().items(), expected.state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name
    if gamma:  # and the DDA term does matter here: without it the step is another one
        without = _hand_step(loader, lam, 0.0, lr=0.1)
        assert not torch.allclose(model.features[1].weight, without.features[1].weight)


def test_gradient_clipping_bounds_the_step():
    loader = _one_batch_loader()
    seed_everything(0)
    model = TinyNet()
    before = [p.detach().clone() for p in model.parameters()]
    cfg = config(epochs=1, lr=1.0, lam=0.5, gamma=3.0, weight_decay=0.0, grad_clip=0.01)
    train(model, loader, None, cfg, progress=False)
    step = torch.cat([(p - b).flatten() for p, b in zip(model.parameters(), before, strict=True)])
    assert step.norm().item() == pytest.approx(0.01, rel=1e-4)  # lr * clip: clipped to 0.01
    expected = _hand_step(loader, 0.5, 3.0, lr=1.0, clip=0.01)
    for a, b in zip(model.parameters(), expected.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_an_interrupted_save_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    import ferlib.training as training

    path = tmp_path / "ckpt.pt"
    run(1, path)
    before = path.read_bytes()

    def crash(state, file):  # dies half-way through writing, as a killed process would
        with open(file, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(training.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        run(2, path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path], "no half-written file is left behind"
    monkeypatch.undo()
    _, resumed = run(2, path)  # and the run resumes from it
    assert [h["epoch"] for h in resumed.history] == [1, 2]


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_predict_restores_the_mode(mode):
    model = TinyNet(dropout=0.5)
    model.train(mode == "train")
    _, test_loader = loaders()
    a = predict(model, test_loader)[0]
    b = predict(model, test_loader)[0]
    assert torch.equal(a, b), "predict must run in eval mode (no dropout)"
    assert model.training == (mode == "train")


def test_a_deferred_divergence_check_still_names_the_first_bad_step(tmp_path):
    """The GPU path: the divergence flag lives on the device and is read every sync_every
    steps. The error still names the first bad step, and the checkpoint stays clean."""
    seed_everything(0)
    model = TinyNet()
    train_loader, test_loader = loaders()
    model.poison_at = len(train_loader) + 3  # third step of the second epoch
    path = tmp_path / "ckpt.pt"
    cfg = config(lam=0.01, gamma=1.0, sync_every=4)
    with pytest.raises(NonFiniteLossError) as info:
        train(model, train_loader, test_loader, cfg, checkpoint=path, progress=False)
    message = str(info.value)
    assert "features became NaN" in message and "epoch 2, step 3" in message
    assert "within 4 steps" in message
    assert info.value.epoch == 2 and info.value.step == 3 and len(info.value.history) == 1
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 0 and all(torch.isfinite(v).all() for v in saved["model"].values())
    with pytest.raises(ValueError, match="sync_every must be an integer >= 1"):
        run(1, None, sync_every=0)


def test_the_loop_does_not_wait_for_the_device_on_every_step(monkeypatch):
    """With sync_every=n the loop reads a tensor on the host (Tensor.item, bool, int,
    tolist) about once every n steps, not once a step."""
    seed_everything(0)
    train_loader, _ = loaders()  # 9 steps an epoch
    reads = {"n": 0}
    for name in ("item", "tolist", "__bool__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, **kw):
            reads["n"] += 1
            return _original(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, counted)
    cfg = config(epochs=2, lam=0.01, gamma=1.0, sync_every=1000)
    train(TinyNet(), train_loader, None, cfg, progress=False)
    steps = 2 * len(train_loader)
    assert reads["n"] <= 3 * 2, f"{reads['n']} host reads in {steps} steps"


def _two_batch_loader(seed: int = 0) -> TensorLoader:
    x, y = blobs(40, seed)
    return TensorLoader(x, y, batch_size=len(y) // 2 + 1)  # two batches, in stored order


def _hand_sgd(loader, lr: float, momentum: float, weight_decay: float) -> TinyNet:
    """One epoch of the softmax loss under SGD written out as PyTorch defines it:
    d = g + wd w; v = d on the first step, v = μ v + d after; w -= lr v."""
    seed_everything(0)
    model = TinyNet()
    velocity: list[Tensor | None] = [None] * len(list(model.parameters()))
    for x, y in loader:
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x)[1], y).backward()
        with torch.no_grad():
            for i, p in enumerate(model.parameters()):
                d = p.grad + weight_decay * p
                velocity[i] = d.clone() if velocity[i] is None else momentum * velocity[i] + d
                p -= lr * velocity[i]
    return model


def test_sgd_follows_the_configured_momentum_and_weight_decay():
    """Two steps of the loop are two steps of SGD with momentum and weight decay (momentum
    shows from the second step on; large values, so that dropping either moves the weights
    elsewhere)."""
    loader = _two_batch_loader()
    assert len(loader) == 2
    seed_everything(0)
    model = TinyNet()
    cfg = config(epochs=1, lr=0.1, momentum=0.9, weight_decay=0.05)
    train(model, loader, None, cfg, progress=False)
    expected = _hand_sgd(loader, 0.1, 0.9, 0.05)
    for (name, a), b in zip(
        model.state_dict().items(), expected.state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name
    for other in (_hand_sgd(loader, 0.1, 0.0, 0.05), _hand_sgd(loader, 0.1, 0.9, 0.0)):
        assert not torch.allclose(model.features[1].weight, other.features[1].weight, atol=1e-5)


def test_resume_refuses_a_change_of_dda_scaling(tmp_path):
    """With a DDA term the scaling changes every step (the published one divides by the
    batch size), so a checkpoint of one scaling must not continue as the other."""
    seed_everything(0)
    train_loader, _ = loaders()
    path = tmp_path / "dda.pt"
    dda = dict(lam=0.01, gamma=1.0)
    train(TinyNet(), train_loader, None, config(epochs=1, **dda), checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="scaling: 'paper' there, 'published' now"):
        train(
            TinyNet(),
            train_loader,
            None,
            config(epochs=2, scaling="published", **dda),
            checkpoint=path,
            progress=False,
        )


@pytest.mark.parametrize("clip", [None, 1.0], ids=["no-clipping", "clipping"])
def test_every_step_goes_through_the_gradient_scaler_and_unscales_before_clipping(
    monkeypatch, clip
):
    """Mixed precision needs the scaler around every step: the loss scaled before backward,
    the gradients unscaled before they are clipped (else the clip would bound the scaled
    gradients), the step and the update through it. The scaler is disabled on the CPU, but
    the loop calls it all the same, so a spy records the order here."""
    calls: list[str] = []
    enabled: list[bool] = []

    class SpyScaler(torch.amp.GradScaler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            enabled.append(self.is_enabled())

        def scale(self, outputs):
            calls.append("scale")
            return super().scale(outputs)

        def unscale_(self, optimizer):
            calls.append("unscale_")
            return super().unscale_(optimizer)

        def step(self, optimizer, *args, **kwargs):
            calls.append("step")
            return super().step(optimizer, *args, **kwargs)

        def update(self, *args, **kwargs):
            calls.append("update")
            return super().update(*args, **kwargs)

    real_clip = torch.nn.utils.clip_grad_norm_

    def spy_clip(parameters, max_norm, *args, **kwargs):
        calls.append("clip")
        return real_clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.amp, "GradScaler", SpyScaler)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy_clip)
    seed_everything(0)
    train(TinyNet(), _two_batch_loader(), None, config(epochs=1, grad_clip=clip), progress=False)
    one_step = (
        ["scale", "unscale_", "clip", "step", "update"] if clip else ["scale", "step", "update"]
    )
    assert calls == one_step * 2
    assert enabled == [False]  # AMP runs on CUDA only
