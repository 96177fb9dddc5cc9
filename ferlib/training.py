"""One training loop for every experiment of the course: Algorithm 1 of the paper.

    L = L_S + lam * L_C + gamma * L_DDA                          (Eq. 6)

``lam = gamma = 0`` is the softmax loss alone (Eq. 2), ``gamma = 0`` the center loss
(Eq. 4), ``gamma > 0`` the DDA loss. The model must return ``(features, logits)`` and
expose ``num_classes`` and ``feat_dim``. Network weights follow SGD with momentum and
weight decay; the class centers follow their own step (Eq. 9-10), never the optimiser.

Everything needed to continue a run exactly is checkpointed after every epoch (model,
optimiser, schedule, centers, gradient scaler, RNG state, history), together with the
configuration and a fingerprint of the training data, written atomically and read back
with ``weights_only=True``. A checkpoint only resumes the same configuration on the same
data.
"""

from __future__ import annotations

import os
import pickle
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ferlib.losses import CenterDDALoss, Scaling
from ferlib.metrics import accuracy, mean_class_accuracy, per_class_accuracy


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


@dataclass
class TrainConfig:
    """Hyper-parameters of one run. Defaults are the paper's W-MNIST recipe (Sec. 4.1)."""

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
    lam: float = 0.0  # λ, weight of the center loss
    gamma: float = 0.0  # γ, weight of the DDA loss
    alpha: float = 0.5  # α, the centers' learning rate
    scaling: Scaling = "paper"  # DDA scaling: "paper" or "published" (paper / m)
    seed: int = 0
    device: str = "auto"  # "auto" = cuda, then mps, then cpu
    amp: bool = True  # float16 autocast + gradient scaling, on CUDA only
    channels_last: bool = True  # NHWC memory layout: faster convolutions (benchmarks/)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept with the run

    @property
    def loss_name(self) -> str:
        if self.gamma > 0:
            return "dda"
        return "center" if self.lam > 0 else "softmax"


@dataclass
class TrainResult:
    """What :func:`train` returns. ``centers`` is None for the softmax loss alone."""

    history: list[dict[str, Any]]
    centers: CenterDDALoss | None
    device: torch.device


def seed_everything(seed: int) -> None:
    """Seed Python's and PyTorch's generators (call it before building the model)."""
    random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple's MPS, then the CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@torch.no_grad()
def predict(
    model: nn.Module, loader: BatchLoader, device: torch.device | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Run the model over a loader: ``(features (N, D), predictions (N,), labels (N,))`` on CPU."""
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
    return torch.cat(feats), torch.cat(preds), torch.cat(labels)


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


def _save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` so that an interrupted save leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic on POSIX and Windows: old file or new, never half
    finally:
        tmp.unlink(missing_ok=True)


def _load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: tensors and plain data only, never
    arbitrary pickled code."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"checkpoint {path} cannot be read as a ferlib checkpoint (tensors and plain data, "
            f"loaded with weights_only=True): {type(err).__name__}: {str(err)[:300]}. "
            "Delete it or pass another checkpoint path; never load a checkpoint you do not "
            "trust with weights_only=False."
        ) from err


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
            (the configuration must match) and continues exactly where it stopped.
        progress: show a tqdm progress bar (terminal or notebook).
        desc: label of the progress bar.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite; the message gives the step, the
            loss terms and the last checkpoint, which is left untouched.
        ValueError: ``config.eval_every`` is not a positive integer, or the checkpoint was
            written by another configuration or on other training data (its fingerprint,
            :func:`data_fingerprint`, differs), or it is not a ferlib checkpoint.
    """
    if not isinstance(config.eval_every, int) or config.eval_every < 1:
        raise ValueError(
            f"TrainConfig.eval_every must be an integer >= 1, got {config.eval_every!r}"
        )
    device = pick_device(config.device)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device, memory_format=layout)
    num_classes, feat_dim = int(model.num_classes), int(model.feat_dim)
    head = None
    if config.loss_name != "softmax":
        head = CenterDDALoss(
            num_classes, feat_dim, config.lam, config.gamma, config.alpha, config.scaling
        ).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    steps_per_epoch = len(train_loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config, steps_per_epoch))
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    path = Path(checkpoint) if checkpoint is not None else None
    data_id = data_fingerprint(train_loader)
    if path is not None and data_id is None:
        warnings.warn(
            f"train(): the training loader ({type(train_loader).__name__}) has no "
            "`fingerprint`, so a resume from the checkpoint cannot check that it is the same "
            "data; give the loader (or its dataset) a `fingerprint` attribute",
            stacklevel=2,
        )
    if path is not None and path.exists():
        state = _load_checkpoint(path, device)
        if not _same_config(state["config"], _comparable(config)):
            raise ValueError(
                f"checkpoint {path} was written by a different configuration:\n"
                f"  saved: {state['config']}\n  now:   {_comparable(config)}\n"
                "delete it or pass another checkpoint path"
            )
        if state.get("data") != data_id:
            raise ValueError(
                f"checkpoint {path} was trained on different data: its training set has "
                f"fingerprint {state.get('data')!r}, this loader's is {data_id!r} (another "
                "subset, other counts, another order or other preprocessing). Resuming would "
                "mix two runs; delete the checkpoint or pass another checkpoint path"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        if head is not None:
            head.load_state_dict(state["centers"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"])
        history, start_epoch = state["history"], state["epoch"] + 1

    bar = tqdm(
        total=config.epochs * steps_per_epoch,
        initial=start_epoch * steps_per_epoch,
        desc=desc or config.loss_name,
        disable=not progress,
        dynamic_ncols=True,
        leave=True,
    )
    try:
        for epoch in range(start_epoch, config.epochs):
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(epoch)
            model.train()
            lr_at_start = optimizer.param_groups[0]["lr"]
            tic = time.perf_counter()
            sums = torch.zeros(6, dtype=torch.float64)  # loss, L_S, L_C, L_DDA, correct, |x|
            seen = 0
            for step, (x, y) in enumerate(train_loader):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if x.ndim == 4:
                    x = x.contiguous(memory_format=layout)
                # Algorithm 1, line 2: the joint loss L = L_S + λ L_C + γ L_DDA (Eq. 6)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    features, logits = model(x)
                if not (torch.isfinite(features).all() and torch.isfinite(logits).all()):
                    raise NonFiniteLossError(
                        _divergence(config, desc, epoch, step, path, schedule, "features"),
                        epoch + 1,
                        step + 1,
                        history,
                    )
                loss_s = F.cross_entropy(logits.float(), y)
                if head is not None:
                    parts = head(features, y)
                    loss = loss_s + parts.total
                    lc, ldda = parts.center.detach(), parts.dda.detach()
                else:
                    loss, lc, ldda = loss_s, torch.zeros(()), torch.zeros(())
                if not torch.isfinite(loss) or (
                    config.max_loss is not None and loss.item() > config.max_loss
                ):
                    terms = (
                        f"loss (L_S={loss_s.item():.4g}, L_C={lc.item():.4g}, "
                        f"L_DDA={ldda.item():.4g})"
                    )
                    raise NonFiniteLossError(
                        _divergence(config, desc, epoch, step, path, schedule, terms),
                        epoch + 1,
                        step + 1,
                        history,
                    )
                # line 3: gradients of the network parameters
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                # lines 4 and 7: Δc*_k (Eq. 10) from this batch, then c_k -= α Δc*_k (Eq. 9)
                if head is not None:
                    head.center_step(features.detach(), y)
                # lines 6 and 8: update W and θ_C
                scaler.step(optimizer)
                scaler.update()
                schedule.step()

                with torch.no_grad():
                    b = y.shape[0]
                    sums += (
                        torch.stack(
                            [
                                loss.detach() * b,
                                loss_s.detach() * b,
                                lc * b,
                                ldda * b,
                                (logits.argmax(1) == y).sum(),
                                features.detach().float().norm(dim=1).sum(),
                            ]
                        )
                        .double()
                        .cpu()
                    )
                    seen += b
                bar.update()
            means = (sums / seen).tolist()
            record: dict[str, Any] = {
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
            if test_loader is not None and (
                (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
            ):
                result = evaluate(model, test_loader, num_classes, device)
                record.update({f"test_{k}": v for k, v in result.items()})
            history.append(record)
            bar.set_postfix(
                loss=f"{record['train_loss']:.3f}",
                acc=f"{record.get('test_acc', record['train_acc']):.2f}",
            )
            if path is not None:
                state = {
                    "config": _comparable(config),
                    "data": data_id,
                    "epoch": epoch,
                    "history": history,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "scaler": scaler.state_dict(),
                    "centers": head.state_dict() if head is not None else {},
                    "rng_cpu": torch.get_rng_state(),
                }
                if device.type == "cuda":
                    state["rng_cuda"] = torch.cuda.get_rng_state()
                _save_atomic(state, path)
    finally:
        bar.close()
    return TrainResult(history, head, device)


def _divergence(config, desc, epoch, step, path, schedule, what: str) -> str:
    """The message of a NonFiniteLossError: where it happened and what to try."""
    limit = "" if config.max_loss is None else f" or exceeded max_loss={config.max_loss:g}"
    return (
        f"{desc or config.loss_name}: the {what} became NaN or infinite{limit} at epoch "
        f"{epoch + 1}, "
        f"step {step + 1} (lr={schedule.get_last_lr()[0]:.3g}, gamma={config.gamma}, "
        f"scaling={config.scaling!r}); training stopped before using it. Lower the learning "
        "rate or gamma, add warm-up (warmup_steps) or gradient clipping (grad_clip), or use "
        "scaling='published'."
        + (f" The last completed epoch is saved in {path}." if path is not None else "")
    )


def _comparable(config: TrainConfig) -> dict[str, Any]:
    """The settings a resumed run must share with its checkpoint: all but ``epochs`` (a run
    may be extended), ``max_loss`` (a guard that never changes a finished epoch) and
    ``eval_every`` (testing never changes training)."""
    saved = asdict(config)
    del saved["epochs"], saved["max_loss"], saved["eval_every"]
    return saved


def _same_config(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Equal settings; a setting missing from an older checkpoint had its default value, and
    the DDA scaling is irrelevant when there is no DDA term (gamma = 0)."""
    defaults = _comparable(TrainConfig())
    keys = set(saved | now) - ({"scaling"} if now.get("gamma") == 0 else set())
    return all(saved.get(k, defaults.get(k)) == now.get(k, defaults.get(k)) for k in keys)
