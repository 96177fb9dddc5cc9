"""Checks for the notebooks' exercise cells.

Each helper prints one friendly line when the answer is right and raises
``AssertionError`` with a specific message when it is not, so an exercise cell fails
loudly (and a notebook test with it). Gradient checks follow the CS231n habit: compare
against a reference and print the relative error

    rel_error(a, b) = max |a - b| / max(|a| + |b|, 1e-8)   (elementwise, then the max)

which is ~1e-16..1e-12 for a correct float64 gradient, ~1e-7 in float32, and 1e-2 or
more for a wrong one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "check_close",
    "check_differentiable",
    "check_grad_matches",
    "check_gradient",
    "check_inputs_unchanged",
    "check_new_tensor",
    "check_shape",
    "rel_error",
]


def _as_tensor(x, name: str) -> Tensor:
    if x is None:
        raise AssertionError(f"{name}: got None. Did the function forget to `return` its result?")
    if isinstance(x, Tensor):
        return x.detach().to(torch.float64)
    try:
        return torch.as_tensor(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise AssertionError(
            f"{name}: expected a number or an array, got {type(x).__name__}"
        ) from err


def rel_error(a, b) -> float:
    """Largest elementwise relative error ``|a - b| / max(|a| + |b|, 1e-8)`` (CS231n style)."""
    a, b = _as_tensor(a, "a"), _as_tensor(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    return float(((a - b).abs() / (a.abs() + b.abs()).clamp_min(1e-8)).max())


def check_shape(tensor, shape: Sequence[int | None], name: str) -> None:
    """Assert ``tensor.shape == shape``; ``None`` in ``shape`` matches any size."""
    got = tuple(getattr(tensor, "shape", ()))
    want = tuple(shape)
    ok = len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want, strict=False))
    if not ok:
        pretty = "(" + ", ".join("any" if w is None else str(w) for w in want) + ")"
        raise AssertionError(
            f"{name}: expected shape {pretty}, got {got}. Check which dimension you summed or "
            "indexed over."
        )
    print(f"✓ {name}: shape {got}")


def check_close(actual, expected, name: str, rtol: float = 1e-6, atol: float = 1e-8) -> None:
    """Assert ``actual ≈ expected`` elementwise (``|a - e| <= atol + rtol |e|``)."""
    a, e = _as_tensor(actual, name), _as_tensor(expected, f"{name} (expected)")
    if a.shape != e.shape:
        raise AssertionError(
            f"{name}: expected shape {tuple(e.shape)}, got {tuple(a.shape)}; the values "
            "cannot be compared."
        )
    if not torch.isfinite(a).all():
        raise AssertionError(f"{name}: contains NaN or Inf; look for a log of 0 or an overflow.")
    err = (a - e).abs()
    bad = err > atol + rtol * e.abs()
    if bad.any():
        i = int(torch.argmax(err.flatten()))
        where = "" if a.ndim == 0 else f" at flat index {i}"
        raise AssertionError(
            f"{name}: not close enough{where}: got {a.flatten()[i].item():.6g}, expected "
            f"{e.flatten()[i].item():.6g} ({int(bad.sum())} of {bad.numel()} values off; "
            f"max abs diff {err.max().item():.2e}, rtol={rtol:g}, atol={atol:g})."
        )
    print(f"✓ {name}: matches (max abs diff {err.max().item():.1e})")


def check_grad_matches(fn_grad, reference_grad, name: str, tol: float = 1e-6) -> None:
    """Assert a hand-derived gradient equals a reference (e.g. autograd's) up to ``tol``.

    Prints the relative error (see :func:`rel_error`).
    """
    g, r = _as_tensor(fn_grad, name), _as_tensor(reference_grad, f"{name} (reference)")
    if g.shape != r.shape:
        raise AssertionError(
            f"{name}: the gradient must have the shape of what it differentiates, "
            f"{tuple(r.shape)}; got {tuple(g.shape)}."
        )
    err = rel_error(g, r)
    if not err <= tol:  # also catches NaN
        raise AssertionError(
            f"{name}: relative error {err:.2e} > {tol:g}. For scale: a flipped sign gives 1, a "
            "factor of 2 gives 0.33, a missing term typically 1e-2 to 1e-1, and a right "
            "formula evaluated in float32 about 1e-7."
        )
    print(f"✓ {name}: relative error {err:.1e}")


def check_gradient(fn: Callable[..., Tensor], inputs, name: str, eps: float = 1e-6) -> None:
    """Check ``fn``'s autograd gradient numerically in float64.

    Runs ``torch.autograd.gradcheck`` on float64 copies of ``inputs`` (a tensor or a tuple
    of tensors; integer tensors such as labels are passed through untouched) and prints the
    relative error between autograd's gradient of ``fn(*inputs).sum()`` and central
    finite differences.
    """
    inputs = inputs if isinstance(inputs, tuple | list) else (inputs,)
    args = tuple(
        t.detach().to(torch.float64).requires_grad_(True)
        if isinstance(t, Tensor) and t.is_floating_point()
        else t
        for t in inputs
    )
    wrt = [t for t in args if isinstance(t, Tensor) and t.requires_grad]
    if not wrt:
        raise AssertionError(f"{name}: no floating-point tensor among the inputs to check.")
    ok = torch.autograd.gradcheck(fn, args, eps=eps, atol=1e-5, rtol=1e-3, raise_exception=False)
    analytic = torch.autograd.grad(fn(*args).sum(), wrt, allow_unused=True)
    errors = []
    with torch.no_grad():
        for t, a in zip(wrt, analytic, strict=True):
            a = torch.zeros_like(t) if a is None else a
            numeric = torch.zeros_like(t)
            flat, num = t.view(-1), numeric.view(-1)
            for j in range(flat.numel()):
                old = flat[j].item()
                flat[j] = old + eps
                up = fn(*args).sum().item()
                flat[j] = old - eps
                down = fn(*args).sum().item()
                flat[j] = old
                num[j] = (up - down) / (2 * eps)
            errors.append(rel_error(a, numeric))
    err = max(errors)
    if not ok:
        raise AssertionError(
            f"{name}: gradcheck failed: autograd's gradient and finite differences disagree "
            f"(relative error {err:.2e}). Is the function smooth at this point, and does it use "
            "only torch operations (no .item(), .numpy() or in-place tricks)?"
        )
    print(f"✓ {name}: gradcheck passed, relative error {err:.1e}")


def _same(a: Tensor, b: Tensor) -> bool:
    """Equal shape and values, NaN equal to NaN."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point():
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


def check_inputs_unchanged(fn: Callable[..., object], inputs, name: str) -> None:
    """Assert that ``fn(*inputs)`` leaves its tensor arguments as they were.

    ``fn`` is called on copies, so the caller's tensors stay intact even when it fails: an
    in-place operation inside ``fn`` (``x -= ...``, ``x.sub_(...)``, ``x[...] = ...``)
    would otherwise change the caller's data behind its back.
    """
    inputs = inputs if isinstance(inputs, tuple | list) else (inputs,)
    copies = [t.detach().clone() if isinstance(t, Tensor) else t for t in inputs]
    fn(*copies)
    for i, (t, c) in enumerate(zip(inputs, copies, strict=True), start=1):
        if isinstance(t, Tensor) and not _same(t.detach(), c):
            raise AssertionError(
                f"{name} changed its argument {i} (shape {tuple(t.shape)}) in place: an "
                "in-place operation (x -= ..., x.sub_(...), x[...] = ...) edits the caller's "
                "tensor. Compute a new one instead, e.g. shifted = x - ..."
            )
    print(f"✓ {name}: leaves its inputs unchanged")


def check_differentiable(fn: Callable[..., Tensor], inputs, name: str) -> None:
    """Assert that autograd can differentiate ``fn(*inputs)`` with respect to its
    floating-point tensor inputs: the result is a tensor attached to the graph, and every
    such input gets a finite gradient (integer tensors such as labels are passed as they are).

    A result made with ``.detach()``, ``.item()``, ``torch.tensor(...)`` or under
    ``torch.no_grad()`` has the right value and teaches a network nothing.
    """
    inputs = inputs if isinstance(inputs, tuple | list) else (inputs,)
    leaves: list[Tensor] = []
    args = []
    for t in inputs:
        if isinstance(t, Tensor) and t.is_floating_point():
            leaves.append(t.detach().clone().requires_grad_(True))
            args.append(leaves[-1] * 1)  # not a leaf: an in-place edit inside fn is allowed
        else:
            args.append(t)
    if not leaves:
        raise AssertionError(f"{name}: no floating-point tensor among the inputs to check.")
    out = fn(*args)
    if not isinstance(out, Tensor):
        raise AssertionError(
            f"{name}: returned a {type(out).__name__}, not a tensor; autograd can only "
            "differentiate tensors (no .item() or float() on the result)."
        )
    if not out.requires_grad or out.grad_fn is None:
        raise AssertionError(
            f"{name}: the result is detached from autograd's graph, so a network trained with "
            "it would not learn: no .detach(), .item(), .numpy(), torch.tensor(...) or "
            "torch.no_grad() on the way from the inputs to the result."
        )
    try:
        grads = torch.autograd.grad(out.sum(), leaves, allow_unused=True)
    except RuntimeError as err:
        raise AssertionError(f"{name}: autograd cannot differentiate the result: {err}") from err
    for i, g in enumerate(grads, start=1):
        if g is None or not torch.isfinite(g).all():
            what = "does not depend on" if g is None else "has a NaN or infinite gradient for"
            raise AssertionError(f"{name}: the result {what} floating-point input {i}.")
    print(f"✓ {name}: differentiable, gradients reach its inputs")


def check_new_tensor(result, source: Tensor, name: str, source_name: str) -> None:
    """Assert that ``result`` is a tensor of its own, not ``source`` changed in place.

    ``x.mul_(...)``, ``x *= ...`` and the like return ``x`` itself: ``result`` and
    ``source`` then share their memory, and every later use of ``source`` sees the change.
    """
    if not isinstance(result, Tensor):
        raise AssertionError(f"{name}: expected a tensor, got {type(result).__name__}")
    if result.untyped_storage().data_ptr() == source.untyped_storage().data_ptr():
        raise AssertionError(
            f"{name} shares its memory with {source_name}: an in-place operation (mul_, "
            f"add_, *=, +=) changed {source_name} itself, and every later cell would see "
            f"the change. Compute {name} as a new tensor, with * and + instead."
        )
    print(f"✓ {name}: a new tensor, {source_name} untouched")
