"""Where the code runs: the device, the seeds, and the torch.distributed context.

The bottom layer of ferlib: it imports nothing from the rest of the library. Under
``torchrun`` every process (one per GPU, or a few on a CPU with gloo) calls
:func:`distributed` once; everything else asks :func:`rank`, :func:`world_size` or
:func:`is_main` ("am I rank 0?": only rank 0 writes checkpoints, logs and progress bars).
"""

from __future__ import annotations

import os
import platform
import random
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

__all__ = [
    "distributed",
    "is_distributed",
    "is_main",
    "machine_description",
    "pick_device",
    "rank",
    "seed_everything",
    "world_size",
]


def seed_everything(seed: int) -> None:
    """Seed Python's and PyTorch's generators (call it before building the model)."""
    random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA (this process's GPU under torchrun), then Apple's MPS, then the
    CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without torch.distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes (1 without torch.distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0, the process that writes files and shows progress."""
    return rank() == 0


@contextmanager
def distributed(backend: str | None = None) -> Iterator[torch.device]:
    """Join the process group that ``torchrun`` describes, and leave it at the end.

    Reads ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (set by torchrun); with one process,
    or outside torchrun, it does nothing. The backend defaults to NCCL on CUDA and gloo
    elsewhere. Yields this process's device (its own GPU under CUDA).
    """
    size = int(os.environ.get("WORLD_SIZE", 1))
    started = False
    if size > 1 and not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
        started = True
    try:
        yield pick_device()
    finally:
        if started:
            dist.destroy_process_group()


def machine_description(device: torch.device | None = None) -> dict[str, object]:
    """Where a result came from: platform, processor, torch, CPU threads and the device
    (``pick_device()`` when not given; a GPU's name under CUDA). Every results file
    records it."""
    device = device or pick_device()
    info: dict[str, object] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": "cpu" if device.type == "cpu" else str(device),
    }
    if device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
    return info
