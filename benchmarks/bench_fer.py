"""FER training speed, measured side by side in one run; prints ratios.

    python benchmarks/bench_fer.py                     # the device PyTorch picks (CUDA if any)
    python benchmarks/bench_fer.py --quick             # a smoke run
    python benchmarks/bench_fer.py --device cpu --size 48 --crop 43

(a) the data path against the model: images/s of the device loader alone (crop, flip,
    normalise on the training device) against images/s of ResNet-18 train steps on
    ready-made batches; the pipeline must not be the bottleneck (target: ratio >= 2);
(b) ferlib's ``train`` (center + DDA loss, on-device statistics) against a minimal
    hand-written loop of the same model, data and loss terms (target: ratio >= 0.95);
(c) channels-last against the default memory layout for ResNet-18 train steps.

Each pair is timed alternately, several times, and the median is reported, so that
background load hits both sides alike. Numbers are ratios measured in this one run; the
absolute images/s are printed for reference only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ferlib.data import DeviceLoader
from ferlib.losses import CenterDDALoss
from ferlib.models import ResNet18
from ferlib.paper import GAMMA_RAFDB, LAMBDA
from ferlib.runtime import pick_device
from ferlib.training import TrainConfig, train


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader(n: int, size: int, crop: int, batch: int, device: torch.device) -> DeviceLoader:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 7, (n,), generator=g)
    return DeviceLoader(images, labels, batch, train=True, crop=crop, device=device)


def pipeline(data: DeviceLoader, device: torch.device) -> Callable[[], float]:
    """Images per second of the data path alone."""

    def run() -> float:
        synchronize(device)
        tic = time.perf_counter()
        n = sum(len(y) for _, y in data)
        synchronize(device)
        return n / (time.perf_counter() - tic)

    return run


def model_steps(
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    layout: torch.memory_format,
    amp: bool,
) -> Callable[[], float]:
    """Images per second of ResNet-18 forward + backward + SGD on ready-made batches."""

    def run() -> float:
        torch.manual_seed(0)
        model = ResNet18(7).to(device, memory_format=layout)
        opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=amp)
        synchronize(device)
        tic = time.perf_counter()
        for x, y in batches:
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                _, logits = model(x.contiguous(memory_format=layout))
            opt.zero_grad(set_to_none=True)
            scaler.scale(F.cross_entropy(logits.float(), y)).backward()
            scaler.step(opt)
            scaler.update()
        synchronize(device)
        return sum(len(y) for _, y in batches) / (time.perf_counter() - tic)

    return run


def ferlib_loop(data: DeviceLoader, device: torch.device, amp: bool) -> Callable[[], float]:
    def run() -> float:
        torch.manual_seed(0)
        model = ResNet18(7)
        config = TrainConfig(
            epochs=1,
            lr=0.01,
            lam=LAMBDA,
            gamma=GAMMA_RAFDB,
            device=str(device),
            amp=amp,
            channels_last=device.type == "cuda",
        )
        synchronize(device)
        tic = time.perf_counter()
        train(model, data, None, config, progress=False)
        synchronize(device)
        return data.num_samples / (time.perf_counter() - tic)

    return run


def handwritten_loop(data: DeviceLoader, device: torch.device, amp: bool) -> Callable[[], float]:
    """The smallest honest loop with the same loss terms: softmax + λ L_C + γ L_DDA, the
    center step, SGD; no statistics, no checks."""

    def run() -> float:
        torch.manual_seed(0)
        layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        model = ResNet18(7).to(device, memory_format=layout)
        head = CenterDDALoss(7, 512, 0.01, 5.0, validate=False).to(device)
        opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=amp)
        synchronize(device)
        tic = time.perf_counter()
        for x, y in data:
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                features, logits = model(x.contiguous(memory_format=layout))
            loss = F.cross_entropy(logits.float(), y) + head(features, y).total
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            head.center_step(features.detach(), y)
            scaler.step(opt)
            scaler.update()
        synchronize(device)
        return data.num_samples / (time.perf_counter() - tic)

    return run


def compare(
    name_a: str, a: Callable[[], float], name_b: str, b: Callable[[], float], repeats: int
) -> float:
    """Median images/s of ``a`` and ``b`` timed alternately; prints and returns a / b."""
    a(), b()  # warm up both (allocator, kernels, caches)
    ra, rb = [], []
    for _ in range(repeats):
        ra.append(a())
        rb.append(b())
    ma, mb = statistics.median(ra), statistics.median(rb)
    print(f"  {name_a:<34} {ma:10.0f} images/s")
    print(f"  {name_b:<34} {mb:10.0f} images/s")
    print(f"  ratio {name_a} / {name_b}: {ma / mb:.2f}")
    return ma / mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=100, help="image side (RAF-DB: 100)")
    parser.add_argument("--crop", type=int, default=90, help="crop side (RAF-DB: 90)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--images", type=int, default=None, help="images per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    device = pick_device(args.device)
    amp = device.type == "cuda"
    n = args.images or (256 if args.quick else (4096 if device.type == "cuda" else 512))
    repeats = 1 if args.quick else args.repeats
    print(
        f"device {device}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}, "
        f"AMP {amp}; {n} images of {args.size}x{args.size} cropped to {args.crop}, "
        f"batch {args.batch}"
    )
    data = loader(n, args.size, args.crop, args.batch, device)
    batches = [(x.clone(), y.clone()) for x, y in data]
    best = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    print("(a) data path vs model train steps (target >= 2)")
    compare(
        "device loader",
        pipeline(data, device),
        "ResNet-18 train steps",
        model_steps(batches, device, best, amp),
        repeats,
    )
    print("(b) ferlib's train() vs a hand-written loop, center + DDA (target >= 0.95)")
    compare(
        "ferlib train()",
        ferlib_loop(data, device, amp),
        "hand-written loop",
        handwritten_loop(data, device, amp),
        repeats,
    )
    print("(c) memory layout of ResNet-18 train steps")
    compare(
        "channels_last",
        model_steps(batches, device, torch.channels_last, amp),
        "default (contiguous)",
        model_steps(batches, device, torch.contiguous_format, amp),
        repeats,
    )


if __name__ == "__main__":
    main()
