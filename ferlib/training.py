"""One training loop for every experiment of the course: Algorithm 1 of the paper.

    L = L_S + lam * L_C + gamma * L_DDA                          (Eq. 6)

``lam = gamma = 0`` is the softmax loss alone (Eq. 2), ``gamma = 0`` the center loss
(Eq. 4), ``gamma > 0`` the DDA loss. The model must return ``(features, logits)`` and
expose ``num_classes`` and ``feat_dim``. Network weights follow SGD with momentum and
weight decay; the class centers follow their own step (Eq. 9-10), never the optimiser.

Everything needed to continue a run exactly is checkpointed after every epoch (model,
optimiser, schedule, centers, gradient scaler, RNG state, history), together with the
configuration and a fingerprint of the training data, written atomically and read back
with ``weights_only=True`` (:mod:`ferlib.checkpoint`). A checkpoint only resumes the same
configuration on the same data.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ferlib.checkpoint import comparable, config_differences, load_checkpoint, save_atomic
from ferlib.losses import CenterDDALoss, Scaling
from ferlib.metrics import accuracy, mean_class_accuracy, per_class_accuracy
from ferlib.paper import ALPHA
from ferlib.runtime import is_distributed, is_main, pick_device, seed_everything

__all__ = [
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "data_fingerprint",
    "evaluate",
    "pick_device",  # re-exported from ferlib.runtime, where it lives
    "predict",
    "seed_everything",  # re-exported from ferlib.runtime
    "train",
]


class BatchLoader(Protocol):
    """What the loop needs from a loader: batches of (images, labels), a length, and
    optionally ``set_epoch(e)`` and a ``fingerprint`` of its data (see
    :func:`data_fingerprint`)."""

    def __iter__(self): ...
    def __len__(self) -> int: ...


def data_fingerprint(loader: BatchLoader) -> str | None:
    """The identity of a loader's data: ``loader.fingerprint``, else the fingerprint of
    ``loader.dataset`` (a ``torch.utils.data.DataLoader`` over a ferlib dataset), else None."""
    for source in (loader, getattr(loader, "dataset", None)):
        value = getattr(source, "fingerprint", None)
        if value is not None:
            return str(value)
    return None


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN, infinite or runaway loss; the run stopped before using it.

    ``epoch`` and ``step`` (1-based) say where; ``history`` holds the completed epochs.
    """

    def __init__(
        self, message: str, epoch: int = 0, step: int = 0, history: list | None = None
    ) -> None:
        super().__init__(message)
        self.epoch, self.step, self.history = epoch, step, list(history or [])


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run: the only place their defaults live.

    The defaults are the paper's W-MNIST recipe (Sec. 4.1: SGD, momentum 0.9, weight decay
    5e-4, 100 epochs, lr 0.001 ÷1.25 every 20 epochs) with the softmax loss alone
    (λ = γ = 0) and α of :data:`ferlib.paper.ALPHA`. A profile embeds one (its recipe); a run
    changes only what it varies, ``dataclasses.replace(profile.train, gamma=7.0)``. Frozen,
    so that a profile's recipe cannot be changed behind its back.
    """

    epochs: int = 100
    lr: float = 0.001  # μ in Algorithm 1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_step: int = 20  # decay the learning rate every lr_step epochs ...
    lr_decay: float = 1 / 1.25  # ... by this factor (the paper: ÷1.25 on W-MNIST, ÷10 on RAF-DB)
    warmup_steps: int = 0  # linear learning-rate warm-up over the first steps
    grad_clip: float | None = None  # max global gradient norm, None = no clipping
    max_loss: float | None = None  # stop as diverged when a batch loss exceeds this
    eval_every: int = 1  # test every n epochs (and always after the last one)
    sync_every: int | None = None  # read the divergence flag every n steps (None: 1 on the
    # CPU, where reading is free, 16 on a GPU, where each read waits for the device)
    lam: float = 0.0  # λ, weight of the center loss
    gamma: float = 0.0  # γ, weight of the DDA loss
    alpha: float = ALPHA  # α, the centers' learning rate (Eq. 9)
    scaling: Scaling = "paper"  # DDA scaling: "paper" or "published" (paper / m)
    seed: int = 0
    device: str = "auto"  # "auto" = cuda, then mps, then cpu
    amp: bool = True  # float16 autocast + gradient scaling, on CUDA only
    channels_last: bool = True  # NHWC memory layout: faster convolutions (benchmarks/)
    sync_bn: bool = False  # under DistributedDataParallel: batch-norm statistics over all ranks

    @property
    def loss_name(self) -> str:
        if self.gamma > 0:
            return "dda"
        return "center" if self.lam > 0 else "softmax"


@dataclass
class TrainResult:
    """What :func:`train` returns. ``centers`` is None for the softmax loss alone;
    ``resumed_epochs`` counts the epochs read back from the checkpoint (0 for a fresh run)."""

    history: list[dict[str, Any]]
    centers: CenterDDALoss | None
    device: torch.device
    resumed_epochs: int = 0


@torch.no_grad()
def predict(
    model: nn.Module, loader: BatchLoader, device: torch.device | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Run the model over a loader: ``(features (N, D), predictions (N,), labels (N,))`` on CPU.

    Under torch.distributed, with a loader sharded over ranks (``loader.world_size > 1``),
    every rank gets the predictions of all shards."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    feats, preds, labels = [], [], []
    for x, y in loader:
        f, logits = model(x.to(device, non_blocking=True))
        feats.append(f.float().cpu())
        preds.append(logits.argmax(1).cpu())
        labels.append(y.cpu())
    model.train(was_training)
    out = [torch.cat(feats), torch.cat(preds), torch.cat(labels)]
    if is_distributed() and getattr(loader, "world_size", 1) > 1:  # each rank saw a shard
        shards: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(shards, out)
        out = [torch.cat([shard[i] for shard in shards]) for i in range(3)]
    return out[0], out[1], out[2]


def evaluate(
    model: nn.Module, loader: BatchLoader, num_classes: int, device: torch.device | None = None
) -> dict[str, Any]:
    """Accuracy, average per-class accuracy and per-class accuracy (all in %)."""
    _, preds, labels = predict(model, loader, device)
    per_class = per_class_accuracy(preds, labels, num_classes)
    return {
        "acc": accuracy(preds, labels),
        "mean_class_acc": mean_class_accuracy(preds, labels, num_classes),
        "per_class_acc": [float(a) for a in per_class],
    }


def _lr_factor(config: TrainConfig, steps_per_epoch: int):
    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
        return warm * config.lr_decay ** ((step // steps_per_epoch) // config.lr_step)

    return factor


@dataclass
class _Run:
    """Everything one call of :func:`train` carries from setup to the last checkpoint.

    ``model`` is what the step calls (the DistributedDataParallel wrapper under torchrun);
    ``core`` is the network itself, whose state a checkpoint holds.
    """

    model: nn.Module
    core: nn.Module
    config: TrainConfig
    device: torch.device
    layout: torch.memory_format
    head: CenterDDALoss | None
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    use_amp: bool
    path: Path | None
    data_id: str | None
    desc: str | None
    check_every: int  # steps between host checks of the device-side divergence flag
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0


def train(
    model: nn.Module,
    train_loader: BatchLoader,
    test_loader: BatchLoader | None,
    config: TrainConfig,
    *,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> TrainResult:
    """Train ``model`` with Algorithm 1 and return the per-epoch history.

    Args:
        model: returns ``(features (B, D), logits (B, K))``; has ``num_classes``, ``feat_dim``.
        train_loader: yields ``(images, labels)``; its ``set_epoch(e)``, if any, is called
            before epoch ``e`` so that shuffling is reproducible on resume.
        test_loader: evaluated every ``config.eval_every`` epochs and after the last one
            (None to skip).
        config: the run's hyper-parameters.
        checkpoint: file written after every epoch; if it exists, training resumes from it
            (the configuration and the training data must match) and continues exactly
            where it stopped.
        progress: show a tqdm progress bar (terminal or notebook).
        desc: label of the progress bar.

    The loop never waits for the device on a step: the loss terms, the statistics of the
    epoch and a divergence flag stay on the device. On the CPU the flag is read every step
    (reading is free there), so a divergence stops the run before the bad step is used; on
    a GPU it is read every 16 steps (``config.sync_every``), so a divergence stops the run
    within 16 steps. Either way the message names the first bad step and the checkpoint
    keeps the last completed epoch.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite (or exceeded
            ``config.max_loss``); the message gives the step, the loss terms and the last
            checkpoint, which is left untouched.
        ValueError: ``config.eval_every`` is not a positive integer, or the checkpoint was
            written by another configuration or on other training data (its fingerprint,
            :func:`data_fingerprint`, differs), or it is not a ferlib checkpoint.
    """
    run = _setup(model, train_loader, config, checkpoint, desc)
    if run.start_epoch and is_main():
        done = min(run.start_epoch, config.epochs)
        what = "finished run read back" if done == config.epochs else "resuming"
        print(
            f"{desc or config.loss_name}: {what} from {run.path} "
            f"({done} of {config.epochs} epochs done)"
        )
    bar = tqdm(
        total=config.epochs * len(train_loader),
        initial=run.start_epoch * len(train_loader),
        desc=desc or config.loss_name,
        disable=not progress or not is_main(),
        dynamic_ncols=True,
        leave=True,
    )
    try:
        for epoch in range(run.start_epoch, config.epochs):
            record = _train_epoch(run, train_loader, epoch, bar)
            if test_loader is not None and (
                (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
            ):
                result = evaluate(run.core, test_loader, int(run.core.num_classes), run.device)
                record.update({f"test_{k}": v for k, v in result.items()})
            run.history.append(record)
            bar.set_postfix(
                loss=f"{record['train_loss']:.3f}",
                acc=f"{record.get('test_acc', record['train_acc']):.2f}",
            )
            if run.path is not None:
                _save_checkpoint(run, epoch)
    finally:
        bar.close()
    return TrainResult(run.history, run.head, run.device, run.start_epoch)


def _setup(
    model: nn.Module,
    train_loader: BatchLoader,
    config: TrainConfig,
    checkpoint: str | Path | None,
    desc: str | None,
) -> _Run:
    """Place the model, build the center head, optimiser, schedule and scaler, and resume
    from ``checkpoint`` when it exists."""
    for name in ("eval_every", "sync_every"):
        value = getattr(config, name)
        if not (value is None and name == "sync_every") and (
            not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
    device = pick_device(config.device)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    core = model
    if is_distributed() and config.sync_bn:
        core = nn.SyncBatchNorm.convert_sync_batchnorm(core)
    core.to(device, memory_format=layout)
    if is_distributed():  # one process per GPU (or per CPU share, with gloo)
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(core, device_ids=ids)
    # how often the host reads the device-side divergence flag (see `train`); when it does
    # not read every step, the center head must not validate its inputs on every step either
    check_every = config.sync_every or (1 if device.type == "cpu" else 16)
    head = None
    if config.loss_name != "softmax":
        head = CenterDDALoss(
            int(core.num_classes),
            int(core.feat_dim),
            config.lam,
            config.gamma,
            config.alpha,
            config.scaling,
            validate=check_every == 1,
        ).to(device)
    optimizer = torch.optim.SGD(
        core.parameters(), config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config, len(train_loader)))
    use_amp = config.amp and device.type == "cuda"
    run = _Run(
        model=model,
        core=core,
        config=config,
        device=device,
        layout=layout,
        head=head,
        optimizer=optimizer,
        schedule=schedule,
        scaler=torch.amp.GradScaler(device.type, enabled=use_amp),
        use_amp=use_amp,
        path=Path(checkpoint) if checkpoint is not None else None,
        data_id=data_fingerprint(train_loader),
        desc=desc,
        check_every=check_every,
    )
    if run.path is not None and run.data_id is None and is_main():
        warnings.warn(
            f"train(): the training loader ({type(train_loader).__name__}) has no "
            "`fingerprint`, so a resume from the checkpoint cannot check that it is the same "
            "data; give the loader (or its dataset) a `fingerprint` attribute",
            stacklevel=3,
        )
    if run.path is not None and run.path.exists():
        _resume(run)
    return run


def _resume(run: _Run) -> None:
    """Restore everything a checkpoint holds, after checking its configuration and data."""
    path, config = run.path, run.config
    state = load_checkpoint(path, run.device)
    differ = config_differences(state["config"], comparable(config), comparable(TrainConfig()))
    if differ:
        settings = "; ".join(f"{k}: {was!r} there, {now!r} now" for k, (was, now) in differ.items())
        raise ValueError(
            f"checkpoint {path} was written by a different configuration ({settings}); "
            "delete it or pass another checkpoint path"
        )
    if state.get("data") != run.data_id:
        raise ValueError(
            f"checkpoint {path} was trained on different data: its training set has "
            f"fingerprint {state.get('data')!r}, this loader's is {run.data_id!r} (another "
            "subset, other counts, another order or other preprocessing). Resuming would "
            "mix two runs; delete the checkpoint or pass another checkpoint path"
        )
    run.core.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.load_state_dict(state["schedule"])
    run.scaler.load_state_dict(state["scaler"])
    if run.head is not None:
        run.head.load_state_dict(state["centers"])
    torch.set_rng_state(state["rng_cpu"])
    if run.device.type == "cuda" and "rng_cuda" in state:
        torch.cuda.set_rng_state(state["rng_cuda"])
    run.history, run.start_epoch = state["history"], state["epoch"] + 1


def _train_epoch(run: _Run, loader: BatchLoader, epoch: int, bar: tqdm) -> dict[str, Any]:
    """One pass over ``loader``; returns the epoch's record (means of the loss terms,
    training accuracy, mean feature norm, learning rate, seconds)."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    run.model.train()
    lr_at_start = run.optimizer.param_groups[0]["lr"]
    tic = time.perf_counter()
    wide = torch.float32 if run.device.type == "mps" else torch.float64
    # on the device: loss, L_S, L_C, L_DDA, correct, |x| (sums over samples), samples seen
    sums = torch.zeros(7, dtype=wide, device=run.device)
    # on the device: the first bad step (-1: none yet) and its loss terms
    first_bad = torch.full((), -1, dtype=torch.long, device=run.device)
    bad_terms = torch.zeros(4, dtype=wide, device=run.device)
    for step, (x, y) in enumerate(loader):
        stats, bad, terms = _step(run, x, y)
        sums += stats
        fresh = bad & (first_bad < 0)
        first_bad = torch.where(fresh, torch.full_like(first_bad, step), first_bad)
        bad_terms = torch.where(fresh, terms, bad_terms)
        if (step + 1) % run.check_every == 0 or step + 1 == len(loader):
            _stop_if_diverged(run, epoch, first_bad, bad_terms)
        bar.update()
    if is_distributed():  # the epoch's statistics over every rank's shard
        dist.all_reduce(sums)
        _average_buffers(run.core)
    means = (sums[:6] / sums[6]).tolist()  # the one host synchronisation of the epoch
    return {
        "epoch": epoch + 1,
        "lr": lr_at_start,
        "train_loss": means[0],
        "train_softmax": means[1],
        "train_center": means[2],
        "train_dda": means[3],
        "train_acc": 100.0 * means[4],
        "feature_norm": means[5],
        "seconds": time.perf_counter() - tic,
    }


@torch.no_grad()
def _average_buffers(module: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks, so
    that every rank evaluates and checkpoints the same network. (DDP hands rank 0's buffers
    to the others before each forward pass, but each rank's last pass updates its own.)"""
    world = dist.get_world_size()
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(world)


def _step(run: _Run, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Algorithm 1 on one batch, without waiting for the device.

    Returns the batch's statistics (7,) as sums, whether the step was bad (a 0-d bool
    tensor: a non-finite feature or loss, or a loss above ``max_loss``) and what the
    divergence message needs: (L_S, L_C, L_DDA, 1 if the features were bad else 0). On the
    CPU a bad step returns before anything is updated; on a GPU the loop learns of it at
    its next check, at most ``check_every`` steps later.
    """
    config, device = run.config, run.device
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if x.ndim == 4:
        x = x.contiguous(memory_format=run.layout)
    wide = torch.float32 if device.type == "mps" else torch.float64
    # Algorithm 1, line 2: the joint loss L = L_S + λ L_C + γ L_DDA (Eq. 6)
    with torch.autocast(device.type, dtype=torch.float16, enabled=run.use_amp):
        features, logits = run.model(x)
    bad_features = ~(torch.isfinite(features).all() & torch.isfinite(logits).all())
    if run.check_every == 1 and bool(bad_features):  # the CPU: stop before the losses
        nan = torch.full((3,), float("nan"), dtype=wide, device=device)
        terms = torch.cat([nan, torch.ones(1, dtype=wide, device=device)])
        return torch.zeros(7, dtype=wide, device=device), bad_features, terms
    loss_s = F.cross_entropy(logits.float(), y)
    zero = torch.zeros((), device=device)
    if run.head is not None:
        parts = run.head(features, y)
        loss, lc, ldda = loss_s + parts.total, parts.center.detach(), parts.dda.detach()
    else:
        loss, lc, ldda = loss_s, zero, zero
    bad = bad_features | ~torch.isfinite(loss)
    if config.max_loss is not None:
        bad = bad | (loss.detach() > config.max_loss)
    terms = torch.stack([loss_s.detach(), lc, ldda, bad_features.float()]).to(wide)
    if run.check_every == 1 and bool(bad):  # the CPU: a bad step is never taken
        return torch.zeros(7, dtype=wide, device=device), bad, terms
    # line 3: gradients of the network parameters
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if config.grad_clip is not None:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    # lines 4 and 7: Δc*_k (Eq. 10) from this batch, then c_k -= α Δc*_k (Eq. 9)
    if run.head is not None:
        run.head.center_step(features.detach(), y)
    # lines 6 and 8: update W and θ_C
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.schedule.step()
    with torch.no_grad():
        b = y.shape[0]
        stats = torch.stack(
            [
                loss.detach() * b,
                loss_s.detach() * b,
                lc * b,
                ldda * b,
                (logits.argmax(1) == y).sum(),
                features.detach().float().norm(dim=1).sum(),
                y.new_full((), b),
            ]
        ).to(wide)
    return stats, bad, terms


def _stop_if_diverged(run: _Run, epoch: int, first_bad: Tensor, terms: Tensor) -> None:
    """Read the device-side divergence flag; raise NonFiniteLossError if it is set."""
    step = int(first_bad)  # waits for the device: called every `check_every` steps only
    if is_distributed():  # all ranks stop together, whichever rank saw it
        flag = torch.tensor([float(step >= 0)], device=first_bad.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and step < 0:
            raise NonFiniteLossError(
                f"{run.desc or run.config.loss_name}: another rank's loss became NaN or "
                f"infinite in epoch {epoch + 1}; training stopped on every rank.",
                epoch + 1,
                0,
                run.history,
            )
    if step < 0:
        return
    ls, lc, ldda, features = terms.tolist()
    what = "features" if features else f"loss (L_S={ls:.4g}, L_C={lc:.4g}, L_DDA={ldda:.4g})"
    raise NonFiniteLossError(_divergence(run, epoch, step, what), epoch + 1, step + 1, run.history)


def _save_checkpoint(run: _Run, epoch: int) -> None:
    """Everything needed to continue exactly after ``epoch``, written atomically."""
    state = {
        "config": comparable(run.config),
        "data": run.data_id,
        "epoch": epoch,
        "history": run.history,
        "model": run.core.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "scaler": run.scaler.state_dict(),
        "centers": run.head.state_dict() if run.head is not None else {},
        "rng_cpu": torch.get_rng_state(),
    }
    if run.device.type == "cuda":
        state["rng_cuda"] = torch.cuda.get_rng_state()
    if is_main():  # one writer; every rank holds the same weights and centers
        save_atomic(state, run.path)


def _divergence(run: _Run, epoch: int, step: int, what: str) -> str:
    """The message of a NonFiniteLossError: where it happened and what to try."""
    config, path = run.config, run.path
    limit = "" if config.max_loss is None else f" or exceeded max_loss={config.max_loss:g}"
    when = (
        "training stopped before using it"
        if run.check_every == 1
        else f"training stopped within {run.check_every} steps of it"
    )
    dda = config.gamma > 0
    advice = ["lower the learning rate" + (" or gamma" if dda else "")]
    if not config.warmup_steps:
        advice.append("add warm-up (warmup_steps)")
    advice.append(
        "add gradient clipping (grad_clip)" if config.grad_clip is None else "lower grad_clip"
    )
    if dda and config.scaling == "paper":
        advice.append("use scaling='published'")
    return (
        f"{run.desc or config.loss_name}: the {what} became NaN or infinite{limit} at epoch "
        f"{epoch + 1}, step {step + 1} (lr={run.schedule.get_last_lr()[0]:.3g}, "
        f"gamma={config.gamma}, scaling={config.scaling!r}); {when}. Try: "
        + "; ".join(advice)
        + "."
        + (f" The last completed epoch is saved in {path}." if path is not None else "")
    )
