"""Claims the course makes about center loss, DDA loss and the center step (Eq. 3, 5, 9-10).

Each test names the claim it proves; ../shared/reference/losses.md lists the mistakes
(paper errata, the published code's departures, numerical pitfalls) they would catch.
"""

from __future__ import annotations

import math
import os
import re
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from ferlib.losses import CenterDDALoss, center_loss, dda_loss, squared_distances

K, D, M = 5, 3, 12


def batch(seed: int = 0, m: int = M, k: int = K, d: int = D, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, d, generator=g, dtype=dtype)
    c = torch.randn(k, d, generator=g, dtype=dtype)
    y = torch.randint(0, k, (m,), generator=g)
    return x, y, c


def closed_form_grads(x, y, c):
    """(1/m)(sum_k p_ik c_k - c_{y_i}) and (1/m) sum_i W_ik (c_k - x_i)."""
    m = x.shape[0]
    p = torch.softmax(-squared_distances(x, c), dim=1)
    w = F.one_hot(y, c.shape[0]).to(x.dtype) - p
    gx = (p @ c - c[y]) / m
    gc = (w.sum(0)[:, None] * c - w.T @ x) / m
    return gx, gc


# ---------------------------------------------------------------- values


def test_center_loss_hand_computed():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    c = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    # squared distances to own center: 1, 1 + 1, 0  -> sum 3, divided by 2m = 6
    assert center_loss(x, y, c).item() == pytest.approx(0.5)


def test_dda_loss_hand_computed():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    c = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    # sample 0: d = (0, 1) -> -log p = log(1 + e^-1); sample 1: d = (4, 1) -> log(1 + e^-3)
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-3))) / (2 * 2)
    assert dda_loss(x, y, c).item() == pytest.approx(expected, rel=1e-12)


def test_dda_loss_is_half_cross_entropy_of_negative_distances():
    x, y, c = batch(1)
    d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    ref = -(torch.log_softmax(-d, 1)[torch.arange(M), y]).sum() / (2 * M)
    assert torch.allclose(dda_loss(x, y, c), ref, rtol=1e-12, atol=0)


def test_dda_equals_log_k_over_two_when_all_centers_coincide():
    x, y, _ = batch(2, k=7)
    c = torch.full((7, D), 0.3, dtype=torch.float64)
    assert dda_loss(x, y, c).item() == pytest.approx(math.log(7) / 2, rel=1e-12)


def test_published_scaling_is_paper_divided_by_batch_size():
    for m in (1, 7, 64):
        x, y, c = batch(3, m=m)
        paper = dda_loss(x, y, c, scaling="paper")
        published = dda_loss(x, y, c, scaling="published")
        assert published.item() == pytest.approx(paper.item() / m, rel=1e-12)


# ---------------------------------------------------------------- gradients


def test_gradcheck_center_loss_float64():
    x, y, c = batch(4)
    x.requires_grad_(), c.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: center_loss(a, y, b), (x, c))


def test_gradcheck_dda_loss_float64():
    x, y, c = batch(5)
    x.requires_grad_(), c.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: dda_loss(a, y, b), (x, c))


def test_dda_gradients_match_closed_forms():
    x, y, c = batch(6)
    x.requires_grad_(), c.requires_grad_()
    gx, gc = torch.autograd.grad(dda_loss(x, y, c), (x, c))
    fx, fc = closed_form_grads(x.detach(), y, c.detach())
    assert torch.allclose(gx, fx, rtol=1e-10, atol=1e-12)
    assert torch.allclose(gc, fc, rtol=1e-10, atol=1e-12)


def test_paper_eq8_and_eq10_are_wrong():
    """ferlib's gradients are not the printed ones: the feature gradient (autograd through
    dda_loss) and the DDA part of the center step (center_delta minus Wen's term) both
    differ from the printed Eq. 8 and Eq. 10 by far more than rounding."""
    x, y, c = batch(7)
    m = x.shape[0]
    p = torch.softmax(-squared_distances(x, c), dim=1)
    w = F.one_hot(y, K).to(x.dtype) - p
    eq8 = (w[torch.arange(m), y][:, None] * (x - c[y])) / m  # keeps only k = y_i
    eq10 = (w.T @ (c[y] - x)) / m  # (c_{y_i} - x_i) instead of (c_k - x_i)
    xx = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(dda_loss(xx, y, c), xx)
    mod = make_module(gamma=1.0, centers=c)
    gc = mod.center_delta(x, y) - wen_delta_by_loop(x, y, c)
    assert (eq8 - gx).abs().max() > 1e-2
    assert (eq10 - gc).abs().max() > 1e-2
    fx, fc = closed_form_grads(x, y, c)  # while ferlib's match the derivation
    assert torch.allclose(gx, fx, rtol=1e-10, atol=1e-12)
    assert torch.allclose(gc, fc, rtol=1e-10, atol=1e-12)


def test_translation_invariance():
    x, y, c = batch(8)
    shift = torch.tensor([3.0, -2.0, 5.0], dtype=torch.float64)
    assert torch.allclose(dda_loss(x + shift, y, c + shift), dda_loss(x, y, c), rtol=1e-12)
    assert torch.allclose(center_loss(x + shift, y, c + shift), center_loss(x, y, c), rtol=1e-12)
    x.requires_grad_(), c.requires_grad_()
    gx, gc = torch.autograd.grad(dda_loss(x, y, c), (x, c))
    assert torch.allclose(gx.sum(0) + gc.sum(0), torch.zeros(D, dtype=torch.float64), atol=1e-14)


def test_no_nan_gradient_at_x_equal_c():
    _, y, c = batch(9)
    for loss in (center_loss, dda_loss):
        x = c[y].clone().requires_grad_()
        cc = c.clone().requires_grad_()
        gx, gc = torch.autograd.grad(loss(x, y, cc), (x, cc))
        assert torch.isfinite(gx).all() and torch.isfinite(gc).all()
    assert center_loss(c[y], y, c).item() == 0.0


# ---------------------------------------------------------------- numerics


def test_stable_at_squared_distances_of_1e4():
    x, y, c = batch(10, dtype=torch.float32)
    x = x * 60  # squared distances of order 1e4
    d = squared_distances(x, c)
    assert d.max() > 1e4
    naive = -torch.log(torch.exp(-d)[torch.arange(M), y] / torch.exp(-d).sum(1)).mean() / 2
    assert not torch.isfinite(naive)  # what an exp/sum softmax would give
    x.requires_grad_()
    loss = dda_loss(x, y, c)
    ref = dda_loss(x.detach().double(), y, c.double())
    assert torch.isfinite(loss) and loss.item() == pytest.approx(ref.item(), rel=1e-5)
    (g,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(g).all()


def test_exact_distances_at_large_norms():
    x, y, c = batch(11)
    offset = 1e8
    expanded = (
        ((x + offset) ** 2).sum(1, keepdim=True)
        + ((c + offset) ** 2).sum(1)
        - 2 * (x + offset) @ (c + offset).T
    )
    exact = squared_distances(x, c)
    assert (expanded - exact).abs().max() > 1e-2  # the expansion loses the answer
    assert torch.allclose(squared_distances(x + offset, c + offset), exact, rtol=1e-6, atol=1e-6)
    assert dda_loss(x + offset, y, c + offset).item() == pytest.approx(
        dda_loss(x, y, c).item(), rel=1e-6
    )


def test_fp32_under_autocast():
    x, y, c = batch(12, dtype=torch.float32)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        feats = torch.nn.functional.linear(x, torch.eye(D))  # bf16 under autocast
        assert feats.dtype == torch.bfloat16
        loss = dda_loss(feats, y, c)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(dda_loss(feats.float(), y, c).item(), rel=1e-6)


# ---------------------------------------------------------------- the module and its center step


def make_module(gamma=1.0, lam=0.01, alpha=0.5, scaling="paper", centers=None):
    mod = CenterDDALoss(K, D, lam=lam, gamma=gamma, alpha=alpha, scaling=scaling).double()
    if centers is not None:
        mod.centers.copy_(centers)
    return mod


def wen_delta_by_loop(x, y, c):
    """Wen et al.'s Δc_k written sample by sample, as in their paper."""
    delta = torch.zeros_like(c)
    for k in range(c.shape[0]):
        members = [i for i in range(len(y)) if y[i] == k]
        for i in members:
            delta[k] += c[k] - x[i]
        delta[k] /= 1 + len(members)
    return delta


def test_module_returns_weighted_parts():
    x, y, c = batch(13)
    mod = make_module(gamma=3.0, lam=0.2, centers=c)
    parts = mod(x, y)
    assert torch.allclose(parts.center, center_loss(x, y, c))
    assert torch.allclose(parts.dda, dda_loss(x, y, c))
    assert torch.allclose(parts.total, 0.2 * parts.center + 3.0 * parts.dda)


def test_module_gradient_flows_to_features_only():
    x, y, c = batch(14)
    mod = make_module(centers=c)
    x.requires_grad_()
    mod(x, y).total.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not mod.centers.requires_grad and list(mod.parameters()) == []


def test_center_step_is_wen_plus_true_dda_gradient():
    x, y, c = batch(15)
    mod = make_module(gamma=5.0, alpha=0.5, centers=c)
    cc = c.clone().requires_grad_()
    (gc,) = torch.autograd.grad(dda_loss(x, y, cc), cc)
    mod.center_step(x, y)
    expected = c - 0.5 * (wen_delta_by_loop(x, y, c) + gc)
    assert torch.allclose(mod.centers, expected, rtol=1e-12, atol=1e-12)


def test_center_step_without_dda_is_wen_and_handles_repeated_labels():
    x, y, c = batch(16)
    # heavy repetition; classes 1, 3 and 4 absent
    y = torch.tensor([2, 2, 2, 2, 0, 0, 2, 2, 0, 2, 2, 2])
    mod = make_module(gamma=0.0, alpha=0.5, centers=c)
    mod.center_step(x, y)
    expected = c - 0.5 * wen_delta_by_loop(x, y, c)
    assert torch.allclose(mod.centers, expected, rtol=1e-12, atol=1e-12)
    naive = c.clone()
    naive[y] -= 0.5 * (c[y] - x)  # indexed assignment keeps only one write per class
    assert not torch.allclose(naive, expected)


def test_absent_classes_do_not_move_under_wen_step():
    x, y, c = batch(17)
    y = torch.where(y == 3, torch.zeros_like(y), y)
    mod = make_module(gamma=0.0, centers=c)
    mod.center_step(x, y)
    assert torch.equal(mod.centers[3], c[3])
    assert not torch.equal(mod.centers[0], c[0])


def test_absent_classes_move_only_by_the_dda_gradient():
    x, y, c = batch(18)
    y = torch.where(y == 3, torch.zeros_like(y), y)
    mod = make_module(gamma=1.0, alpha=0.5, centers=c)
    cc = c.clone().requires_grad_()
    (gc,) = torch.autograd.grad(dda_loss(x, y, cc), cc)
    mod.center_step(x, y)
    assert torch.allclose(mod.centers[3], c[3] - 0.5 * gc[3], rtol=1e-12, atol=1e-14)


def test_center_step_independent_of_lambda_gamma_weight_and_loss_scale():
    x, y, c = batch(19)
    results = []
    for lam, scale in ((0.01, 1.0), (1.0, 2.0**16), (0.0, 1.0)):
        mod = make_module(gamma=2.0, lam=lam, centers=c)
        feats = x.clone().requires_grad_()
        (mod(feats, y).total * scale).backward()  # as a GradScaler would
        mod.center_step(feats, y)
        results.append(mod.centers.clone())
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])
    other_gamma = make_module(gamma=7.0, centers=c)
    other_gamma.center_step(x, y)
    assert torch.allclose(other_gamma.centers, results[0], rtol=1e-12)  # Eq. 10 has no γ


def test_center_step_under_published_scaling():
    x, y, c = batch(20)
    mod = make_module(gamma=1.0, alpha=0.5, scaling="published", centers=c)
    cc = c.clone().requires_grad_()
    (gc,) = torch.autograd.grad(dda_loss(x, y, cc, scaling="published"), cc)
    mod.center_step(x, y)
    assert torch.allclose(mod.centers, c - 0.5 * (wen_delta_by_loop(x, y, c) + gc), rtol=1e-12)
    moved = mod.centers.clone()
    assert mod(x, y).dda.item() == pytest.approx(dda_loss(x, y, moved).item() / M, rel=1e-12)


def test_center_step_accepts_half_precision_features_and_keeps_fp32_centers():
    x, y, _ = batch(21, dtype=torch.float32)
    mod = CenterDDALoss(K, D, gamma=1.0)
    ref = CenterDDALoss(K, D, gamma=1.0)
    ref.load_state_dict(mod.state_dict())
    mod.center_step(x.bfloat16(), y)
    ref.center_step(x.bfloat16().float(), y)
    assert mod.centers.dtype == torch.float32
    assert torch.equal(mod.centers, ref.centers)


def test_he_initialisation_scale():
    torch.manual_seed(0)
    mod = CenterDDALoss(1000, 512)
    assert mod.centers.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.02)
    assert mod.centers.mean().abs().item() < 1e-3


def test_state_dict_round_trip():
    torch.manual_seed(1)
    a = CenterDDALoss(K, D, gamma=1.0)
    x, y, _ = batch(22, dtype=torch.float32)
    a.center_step(x, y)
    torch.manual_seed(2)
    b = CenterDDALoss(K, D, gamma=1.0)
    assert not torch.equal(a.centers, b.centers)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "loss.pt")
        torch.save(a.state_dict(), path)
        b.load_state_dict(torch.load(path, weights_only=True))
    assert set(a.state_dict()) == {"centers"}
    assert torch.equal(a.centers, b.centers)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda x, y, c: (x, y + K, c), ValueError, "[0, 5)"),
        (lambda x, y, c: (x, y - 20, c), ValueError, "[0, 5)"),
        (lambda x, y, c: (x[None], y, c), ValueError, "(m, D)"),
        (lambda x, y, c: (x, y[:-1], c), ValueError, "labels must have shape"),
        (lambda x, y, c: (x, y, c[:, :2]), ValueError, "feature dimension D=3"),
        (lambda x, y, c: (x, y, c[0]), ValueError, "(K, D)"),
        (lambda x, y, c: (x, y.double(), c), TypeError, "integer"),
        (lambda x, y, c: (x.long(), y, c), TypeError, "floating-point"),
        (
            lambda x, y, c: (x.index_fill(0, torch.tensor([2]), float("nan")), y, c),
            ValueError,
            "NaN",
        ),
        (
            lambda x, y, c: (x, y, c.index_fill(0, torch.tensor([1]), float("inf"))),
            ValueError,
            "centers",
        ),
        (lambda x, y, c: (x[:0], y[:0], c), ValueError, "empty"),
        (lambda x, y, c: (x, y > 2, c), TypeError, "integer"),  # boolean labels
        (
            lambda x, y, c: (x.index_fill(0, torch.tensor([0]), float("-inf")), y, c),
            ValueError,
            "features contain NaN or Inf",
        ),
        (
            lambda x, y, c: (x, y, c.index_fill(0, torch.tensor([4]), float("nan"))),
            ValueError,
            "centers contain NaN or Inf",
        ),
    ],
)
def test_bad_inputs_raise_clear_errors(make, error, words):
    x, y, c = batch(23)
    args = make(x, y, c)
    for fn in (center_loss, dda_loss):
        with pytest.raises(error) as info:
            fn(*args)
        assert words in str(info.value)
    if args[2] is c:  # the module owns its centers: bad features and labels must fail there too
        module = make_module(centers=c)
        for call in (module, module.center_step):
            with pytest.raises(error, match=re.escape(words)):
                call(args[0], args[1])
        assert torch.equal(module.centers, c)  # nothing was lost


def test_bad_options_raise():
    with pytest.raises(ValueError, match="scaling"):
        dda_loss(*batch(24), scaling="authors")
    with pytest.raises(ValueError, match="gamma"):
        CenterDDALoss(K, D, gamma=-1.0)
    with pytest.raises(ValueError, match="scaling"):
        CenterDDALoss(K, D, scaling="paper/m")


# ---------------------------------------------------------------- torch.distributed


DIST_LABELS = torch.tensor([0, 1, 2, 0, 3, 4, 1, 4, 2, 2, 0, 4])  # class 4 only in rank 1's shard
DIST_SHARDS = (slice(0, 5), slice(5, M))  # unequal shards
DIST_STEPS = 3  # several steps: the centers each step starts from depend on every earlier one


def _dist_batches():
    """The global batches of the distributed test: other features, permuted labels."""
    for step in range(DIST_STEPS):
        x, _, _ = batch(25 + step)
        perm = torch.randperm(M, generator=torch.Generator().manual_seed(step))
        yield x, DIST_LABELS[perm] if step else DIST_LABELS


def _gloo_entry(rank: int, world: int, init_file: str, out_dir: str, scaling: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(100 + rank)  # different init per rank: the module must broadcast
        mod = CenterDDALoss(K, D, gamma=1.0, alpha=0.5, scaling=scaling).double()
        shard = DIST_SHARDS[rank]
        for x, y in _dist_batches():
            mod.center_step(x[shard], y[shard])
        torch.save(mod.centers, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("scaling", ["paper", "published"])
def test_two_process_gloo_steps_equal_single_process(scaling):
    """Under torch.distributed with unequal shards, every rank ends with the centers that one
    process gets from the global batches, for both DDA scalings (the published one divides
    by the square of the *global* batch size)."""
    torch.manual_seed(100)  # rank 0's init, which the broadcast hands to every rank
    single = CenterDDALoss(K, D, gamma=1.0, alpha=0.5, scaling=scaling).double()
    for x, y in _dist_batches():
        single.center_step(x, y)
    with tempfile.TemporaryDirectory() as tmp:
        args = (2, os.path.join(tmp, "init"), tmp, scaling)
        mp.spawn(_gloo_entry, args=args, nprocs=2, join=True)
        rank0 = torch.load(os.path.join(tmp, "rank0.pt"), weights_only=True)
        rank1 = torch.load(os.path.join(tmp, "rank1.pt"), weights_only=True)
    assert torch.equal(rank0, rank1)
    assert torch.allclose(rank0, single.centers, rtol=1e-12, atol=1e-12)
