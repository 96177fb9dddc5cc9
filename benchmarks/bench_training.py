"""Training speed of ferlib, measured side by side in one run; prints ratios.

    python benchmarks/bench_training.py            # about three minutes on a 2-core CPU
    python benchmarks/bench_training.py --quick    # a smoke run

(a) ferlib's ``train`` against a minimal hand-written PyTorch loop, same model, same
    batches (target: ratio >= 0.95);
(b) the center + DDA step against softmax alone, both through ``train`` (target <= 1.05x);
(c) images per second of a W-MNIST-sized epoch, data handling included;
(d) what makes CPU training faster: channels_last, thread count, bfloat16 autocast.

Each pair is timed alternately, several times, and the median is reported, so that
background load hits both sides alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ferlib.data import WMNIST_COUNTS, TensorLoader
from ferlib.models import LeNetsPP
from ferlib.training import TrainConfig, train


def batches(n_batches: int, batch_size: int = 128) -> TensorLoader:
    g = torch.Generator().manual_seed(0)
    n = n_batches * batch_size
    return TensorLoader(
        torch.randn(n, 1, 28, 28, generator=g),
        torch.randint(0, 10, (n,), generator=g),
        batch_size,
        shuffle=True,
    )


def ferlib_epoch(loader: TensorLoader, **kw) -> Callable[[], float]:
    def run() -> float:
        torch.manual_seed(0)
        model = LeNetsPP()
        config = TrainConfig(epochs=1, lr=0.01, device="cpu", **kw)
        tic = time.perf_counter()
        train(model, loader, None, config, progress=False)
        return time.perf_counter() - tic

    return run


def handwritten_epoch(
    loader: TensorLoader, channels_last: bool = True, bf16: bool = False
) -> Callable[[], float]:
    """The smallest honest loop: forward, cross-entropy, backward, SGD step."""

    def run() -> float:
        torch.manual_seed(0)
        model = LeNetsPP()
        layout = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=layout)
        opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
        tic = time.perf_counter()
        loader.set_epoch(0)
        for x, y in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                _, logits = model(x.contiguous(memory_format=layout))
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - tic

    return run


def compare(name: str, a: Callable[[], float], b: Callable[[], float], repeats: int) -> float:
    """Median time of b / median time of a, timed alternately."""
    a(), b()  # warm-up
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(a())
        tb.append(b())
    ratio = statistics.median(tb) / statistics.median(ta)
    print(
        f"{name:<58} {statistics.median(ta):7.2f} s  {statistics.median(tb):7.2f} s  {ratio:6.3f}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few batches, one repeat")
    args = parser.parse_args()
    n_batches, repeats = (3, 1) if args.quick else (20, 3)
    loader = batches(n_batches)
    images = n_batches * 128
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {images} images per timing"
    )
    print(f"{'comparison (time of A, time of B, B/A)':<58} {'A':>9}  {'B':>9}  {'B/A':>6}")

    hand = handwritten_epoch(loader)
    ratio_a = compare(
        "(a) hand-written loop (A) vs ferlib train, softmax (B)",
        hand,
        ferlib_epoch(loader),
        repeats,
    )
    ratio_b = compare(
        "(b) ferlib softmax (A) vs ferlib center + DDA γ=1 (B)",
        ferlib_epoch(loader),
        ferlib_epoch(loader, lam=0.01, gamma=1.0),
        repeats,
    )
    cl = compare(
        "(d) channels_last (A) vs contiguous NCHW (B)",
        handwritten_epoch(loader, channels_last=True),
        handwritten_epoch(loader, channels_last=False),
        repeats,
    )
    bf16 = compare(
        "(d) float32 (A) vs bfloat16 autocast (B)",
        handwritten_epoch(loader),
        handwritten_epoch(loader, bf16=True),
        repeats,
    )
    threads = torch.get_num_threads()

    def with_threads(n: int) -> Callable[[], float]:
        def run() -> float:
            torch.set_num_threads(n)
            try:
                return hand()
            finally:
                torch.set_num_threads(threads)

        return run

    th = compare(
        f"(d) {threads} threads (A) vs 1 thread (B)",
        with_threads(threads),
        with_threads(1),
        repeats,
    )

    wmnist_batches = -(-sum(WMNIST_COUNTS.values()) // 128)  # one W-MNIST epoch, batch 128
    epoch_loader = batches(max(n_batches, wmnist_batches))
    seconds = ferlib_epoch(epoch_loader, lam=0.01, gamma=1.0)()
    rate = len(epoch_loader) * 128 / seconds
    print(f"(c) one W-MNIST-sized epoch through ferlib (center + DDA): {rate:.0f} images/s")
    print()
    print(f"throughput ratio ferlib / hand-written: {1 / ratio_a:.3f}  (target >= 0.95)")
    print(f"center + DDA overhead over softmax:     {ratio_b:.3f}x (target <= 1.05)")
    print(f"speed-up of channels_last:              {cl:.2f}x")
    print(f"speed-up of bfloat16 autocast:          {1 / bf16:.2f}x")
    print(f"speed-up of {threads} threads over 1:          {th:.2f}x")


if __name__ == "__main__":
    main()
