"""The course's losses: center loss (Eq. 3) and DDA loss (Eq. 5), plus the centers they share.

Equation numbers refer to Farzaneh & Qi, "Discriminant Distribution-Agnostic Loss for
Facial Expression Recognition in the Wild", CVPR Workshops 2020. The softmax loss
(Eq. 1-2) is ``torch.nn.functional.cross_entropy`` on the classifier's logits.

Notation (shapes in brackets):
    features  x  (m, D)   deep features of a mini-batch of m samples
    labels    y  (m,)     integer class indices in [0, K)
    centers   c  (K, D)   one center per class
    d_ik = ||x_i - c_k||^2,  p_ik = softmax_k(-d_ik),  W_ik = [k = y_i] - p_ik

Two departures from the paper's text are deliberate and tested:
  * the gradients are the correct ones; the paper's Eq. 8 drops the push away from
    the other centers and Eq. 10 uses c_{y_i} where c_k is needed;
  * ``scaling="published"`` reproduces the authors' released code, whose DDA term is
    the paper's divided once more by the batch size m.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ferlib.paper import ALPHA, LAMBDA
from ferlib.runtime import is_distributed

Scaling = Literal["paper", "published"]
SCALINGS: tuple[str, ...] = ("paper", "published")


def _check_inputs(features: Tensor, labels: Tensor, centers: Tensor) -> None:
    """Raise a clear error for anything the losses cannot take."""
    if not isinstance(features, Tensor) or not features.is_floating_point():
        raise TypeError(
            f"features must be a floating-point tensor of shape (m, D); got {features!r:.60}"
        )
    if not isinstance(centers, Tensor) or not centers.is_floating_point():
        raise TypeError(
            f"centers must be a floating-point tensor of shape (K, D); got {centers!r:.60}"
        )
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor of shape (m,); got {labels!r:.60}")
    if features.ndim != 2:
        raise ValueError(f"features must have shape (m, D); got shape {tuple(features.shape)}")
    if centers.ndim != 2:
        raise ValueError(f"centers must have shape (K, D); got shape {tuple(centers.shape)}")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"labels must have shape (m,) = ({features.shape[0]},) to match features; "
            f"got shape {tuple(labels.shape)}"
        )
    if features.shape[0] == 0:
        raise ValueError("the batch is empty: features has shape (0, D)")
    if features.shape[1] != centers.shape[1]:
        raise ValueError(
            f"feature dimension D={features.shape[1]} does not match the centers' "
            f"dimension {centers.shape[1]} (centers have shape {tuple(centers.shape)})"
        )
    num_classes = centers.shape[0]
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}); found values from {lo} to {hi}")
    for name, t in (("features", features), ("centers", centers)):
        if not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).any(dim=1).sum())
            raise ValueError(f"{name} contain NaN or Inf ({bad} of {t.shape[0]} rows)")


def squared_distances(features: Tensor, centers: Tensor) -> Tensor:
    """Exact squared Euclidean distances d_ik = ||x_i - c_k||^2, shape (m, K).

    Computed from broadcast differences, never as ||x||^2 + ||c||^2 - 2 x.c: that
    expansion (and ``torch.cdist``'s matmul path) cancels catastrophically when the
    norms are large, and a square root followed by a square has a NaN gradient at x = c.
    """
    diff = features[:, None, :] - centers[None, :, :]  # (m, K, D)
    return diff.pow(2).sum(dim=-1)  # (m, K)


def center_loss(features: Tensor, labels: Tensor, centers: Tensor, *, check: bool = True) -> Tensor:
    """Center loss, paper Eq. 3: L_C = 1/(2m) sum_i ||x_i - c_{y_i}||^2.

    Args:
        features: (m, D) deep features.
        labels: (m,) class indices in [0, K).
        centers: (K, D) class centers.
        check: validate shapes, label range and finiteness (callers that already did
            may skip it: each check synchronises with the GPU).

    Returns:
        A scalar tensor, differentiable w.r.t. ``features`` and ``centers``.
    """
    if check:
        _check_inputs(features, labels, centers)
    diff = features - centers[labels]  # (m, D)
    return diff.pow(2).sum() / (2 * features.shape[0])


def dda_loss(
    features: Tensor,
    labels: Tensor,
    centers: Tensor,
    scaling: Scaling = "paper",
    *,
    check: bool = True,
) -> Tensor:
    """DDA loss, paper Eq. 5: L_DDA = -1/(2m) sum_i log softmax_k(-d_ik)[y_i].

    A softmax over negative squared distances to the class centers, evaluated as a
    log-softmax (``cross_entropy(-d, y) / 2``) so that distances of 1e4 and more
    neither overflow nor produce NaN. It always runs in float32 or wider, also under
    autocast (half-precision squared distances overflow).

    Args:
        features: (m, D) deep features.
        labels: (m,) class indices in [0, K).
        centers: (K, D) class centers.
        scaling: ``"paper"`` (Eq. 5) or ``"published"``, the authors' released code,
            whose value is the paper's divided by m.
        check: as in :func:`center_loss`.

    Returns:
        A scalar tensor, differentiable w.r.t. ``features`` and ``centers``.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}; got {scaling!r}")
    if check:
        _check_inputs(features, labels, centers)
    with torch.autocast(device_type=features.device.type, enabled=False):
        dtype = _wide(torch.promote_types(features.dtype, centers.dtype))
        d = squared_distances(features.to(dtype), centers.to(dtype))  # (m, K)
        loss = F.cross_entropy(-d, labels) / 2
    return loss / features.shape[0] if scaling == "published" else loss


class LossParts(NamedTuple):
    """What :class:`CenterDDALoss` returns: ``total = lam * center + gamma * dda``."""

    total: Tensor
    center: Tensor
    dda: Tensor


class CenterDDALoss(nn.Module):
    """λ·L_C + γ·L_DDA (the non-softmax part of Eq. 6) with the class centers it owns.

    The centers are a buffer, not a parameter: no optimiser touches them. They move
    only through :meth:`center_step` (Eq. 9-10, Algorithm 1 line 7)::

        c_k <- c_k - alpha * (dc_k + [gamma > 0] * dL_DDA/dc_k)
        dc_k = sum_{i: y_i = k} (c_k - x_i) / (1 + n_k)          (Wen et al.)
        dL_DDA/dc_k = 1/m sum_i W_ik (c_k - x_i)                  (corrected Eq. 10)

    The step is computed from the features themselves, never from ``.grad``: it does
    not depend on ``lam`` nor on a mixed-precision loss scale. With ``gamma = 0`` the
    step is Wen et al.'s alone, and a class absent from the batch does not move; with
    ``gamma > 0`` the DDA gradient also pushes absent centers away from the batch, as
    the true gradient says. As in Eq. 10, that gradient enters unweighted by ``gamma``.

    Initialisation ("He", as the paper states): centers ~ N(0, 2/D), i.e. Kaiming-normal
    with fan-in D, the convention of a linear layer mapping D features to K classes.
    (The authors' code applies it to the transposed matrix, std sqrt(2/K).)

    Under ``torch.distributed`` the per-class sums and counts are summed over all ranks
    before dividing, so every rank applies exactly the single-process update of the
    global batch; centers are broadcast from rank 0 before the first step.

    Args:
        num_classes: K.
        feat_dim: D.
        lam: weight λ of the center loss.
        gamma: weight γ of the DDA loss.
        alpha: center learning rate α.
        scaling: ``"paper"`` or ``"published"`` (see :func:`dda_loss`).
        validate: check shapes, label range and finiteness on every call. Each check waits
            for the GPU; the training loop turns it off on CUDA, where it checks the loss
            on the device instead.
    """

    centers: Tensor

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        lam: float = LAMBDA,
        gamma: float = 0.0,
        alpha: float = ALPHA,
        scaling: Scaling = "paper",
        validate: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 2 or feat_dim < 1:
            raise ValueError(
                f"need num_classes >= 2 and feat_dim >= 1; got {num_classes}, {feat_dim}"
            )
        if scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}; got {scaling!r}")
        for name, value in (("lam", lam), ("gamma", gamma), ("alpha", alpha)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0; got {value}")
        self.num_classes, self.feat_dim = num_classes, feat_dim
        self.lam, self.gamma, self.alpha, self.scaling = lam, gamma, alpha, scaling
        self.validate = validate
        centers = torch.randn(num_classes, feat_dim) * math.sqrt(2.0 / feat_dim)
        self.register_buffer("centers", centers)
        self._synced = False

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, lam={self.lam}, "
            f"gamma={self.gamma}, alpha={self.alpha}, scaling={self.scaling!r}"
        )

    def forward(self, features: Tensor, labels: Tensor) -> LossParts:
        """Return ``LossParts(total, center, dda)`` for features (m, D) and labels (m,)."""
        self._sync_centers()
        centers = self.centers.detach()
        if self.validate:
            _check_inputs(features, labels, centers)  # once for both terms
        lc = center_loss(features.to(_wide(features.dtype)), labels, centers, check=False)
        ldda = dda_loss(features, labels, centers, scaling=self.scaling, check=False)
        if self.scaling == "published" and is_distributed():
            # divide by the global batch size m, not this rank's share of it: DDP averages
            # the ranks' gradients, so the step then equals one process on the global batch
            ldda = ldda / dist.get_world_size()
        return LossParts(self.lam * lc + self.gamma * ldda, lc, ldda)

    @torch.no_grad()
    def _sync_centers(self) -> None:
        """Under torch.distributed, copy rank 0's initial centers to every rank (once)."""
        if is_distributed() and not self._synced:
            dist.broadcast(self.centers, src=0)
        self._synced = True

    @torch.no_grad()
    def center_delta(self, features: Tensor, labels: Tensor) -> Tensor:
        """Δc*_k of Eq. 10 (corrected) for every class, shape (K, D), before the α step."""
        centers = self.centers.to(_wide(self.centers.dtype))
        if self.validate:
            _check_inputs(features, labels, centers)
        x = features.detach().to(centers.dtype)  # (m, D)
        num_classes, dim = centers.shape
        # Per-class statistics of the batch, packed to be summed over ranks in one call.
        stats = torch.zeros(num_classes, 2 * dim + 2, dtype=centers.dtype, device=centers.device)
        stats[:, 0].index_add_(0, labels, torch.ones_like(x[:, 0]))  # n_k
        stats[:, 1 : dim + 1].index_add_(0, labels, x)  # sum_{y_i=k} x_i
        use_dda = self.gamma > 0
        if use_dda:
            with torch.autocast(device_type=x.device.type, enabled=False):
                w = F.one_hot(labels, num_classes).to(x.dtype) - torch.softmax(
                    -squared_distances(x, centers), dim=1
                )  # W_ik, (m, K)
            stats[:, dim + 1] = w.sum(dim=0)  # sum_i W_ik
            stats[:, dim + 2 :] = w.T @ x  # sum_i W_ik x_i, (K, D)
        batch = torch.tensor([float(x.shape[0])], dtype=centers.dtype, device=centers.device)
        if is_distributed():
            flat = torch.cat([stats.flatten(), batch])
            dist.all_reduce(flat)
            stats, batch = flat[:-1].view_as(stats), flat[-1:]
        counts, sums = stats[:, :1], stats[:, 1 : dim + 1]
        delta = (counts * centers - sums) / (1 + counts)  # Wen et al.'s Δc_k
        if use_dda:
            m = batch * batch if self.scaling == "published" else batch
            delta = delta + (stats[:, dim + 1 : dim + 2] * centers - stats[:, dim + 2 :]) / m
        return delta

    @torch.no_grad()
    def center_step(self, features: Tensor, labels: Tensor) -> None:
        """Apply Eq. 9, c_k <- c_k - α Δc*_k, with the features of the current batch.

        Call it once per training step with the same features as :meth:`forward`
        (Algorithm 1 computes Δc* from the centers the loss was computed with).
        """
        self._sync_centers()
        delta = self.center_delta(features, labels)
        self.centers.sub_((self.alpha * delta).to(self.centers.dtype))


def _wide(dtype: torch.dtype) -> torch.dtype:
    """float32, or the input's dtype when it is wider (float64 for gradient checks)."""
    return torch.promote_types(dtype, torch.float32)
