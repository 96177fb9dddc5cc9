"""DistributedDataParallel through the one training loop, on 2 CPU processes with gloo.

Both ranks must end with identical weights and centers, equal (to rounding) to one process
training on the global batches, for both DDA scalings; and only rank 0 writes the
checkpoint. The model has no BatchNorm, so the equality is exact up to float rounding.
"""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from ferlib.data import TensorLoader
from ferlib.training import TrainConfig, seed_everything, train

K, BATCH, STEPS = 3, 8, 6  # per-rank batch; the global batch is twice as large


class Net(nn.Module):
    """A BatchNorm-free network: (B, 1, 4, 4) -> 2-D features -> K logits."""

    num_classes, feat_dim = K, 2

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
        self.classifier = nn.Linear(2, K, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.body(x)
        return f, self.classifier(f)


def data() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, K, (2 * BATCH * STEPS,), generator=g)
    x = torch.randn(K, 16, generator=g)[y] + 0.5 * torch.randn(len(y), 16, generator=g)
    return x.view(-1, 1, 4, 4), y


class Shard:
    """Rank ``rank``'s half of each global batch of ``TensorLoader(x, y, 2 * BATCH)``."""

    def __init__(self, x: Tensor, y: Tensor, rank: int, world: int) -> None:
        self.full = TensorLoader(x, y, BATCH * world)
        self.rank, self.world_size = rank, world
        self.fingerprint = self.full.fingerprint

    def __len__(self) -> int:
        return len(self.full)

    def __iter__(self):
        for xb, yb in self.full:
            yield xb[self.rank :: self.world_size], yb[self.rank :: self.world_size]


def config(scaling: str) -> TrainConfig:
    return TrainConfig(
        epochs=2, lr=0.05, lr_step=10, lam=0.1, gamma=2.0, scaling=scaling, device="cpu"
    )


def _entry(rank: int, world: int, init: str, out: str, scaling: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        seed_everything(0)
        model = Net()
        x, y = data()
        result = train(
            model,
            Shard(x, y, rank, world),
            Shard(x, y, rank, world),
            config(scaling),
            checkpoint=os.path.join(out, "ckpt.pt"),
            progress=False,
        )
        state = {k: v.clone() for k, v in model.state_dict().items()}
        state["centers"] = result.centers.centers.clone()
        state["test_acc"] = torch.tensor(result.history[-1]["test_acc"])
        state["train_loss"] = torch.tensor(result.history[-1]["train_loss"])
        torch.save(state, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("scaling", ["paper", "published"])
def test_two_ranks_equal_one_process_on_the_global_batch(scaling):
    seed_everything(0)
    single_model = Net()
    x, y = data()
    single = train(
        single_model,
        TensorLoader(x, y, 2 * BATCH),
        TensorLoader(x, y, 2 * BATCH),
        config(scaling),
        progress=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_entry, args=(2, os.path.join(tmp, "init"), tmp, scaling), nprocs=2, join=True)
        ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True) for r in (0, 1)]
        saved = torch.load(os.path.join(tmp, "ckpt.pt"), weights_only=True)
        leftovers = sorted(p for p in os.listdir(tmp) if p.endswith(".tmp"))
    assert leftovers == []
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), f"ranks differ in {key}"
    expected = single_model.state_dict() | {"centers": single.centers.centers}
    for key, value in expected.items():
        assert torch.allclose(ranks[0][key], value, rtol=1e-4, atol=1e-6), key
    # the epoch statistics and the test accuracy are over both shards, not one
    assert float(ranks[0]["train_loss"]) == pytest.approx(
        single.history[-1]["train_loss"], rel=1e-4
    )
    assert float(ranks[0]["test_acc"]) == pytest.approx(single.history[-1]["test_acc"])
    assert saved["epoch"] == 1 and "module." not in next(iter(saved["model"]))


def _standin_entry(rank: int, world: int, init: str, out: str, root: str) -> None:
    from ferlib.experiments.fer import PROFILES, load_data
    from ferlib.models import ResNet18

    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        train_loader, test_loader, classes = load_data(
            "standin",
            PROFILES["quick"],
            torch.device("cpu"),
            root,
            rank=rank,
            world_size=world,
            progress=False,
        )
        seed_everything(rank)  # different init per rank: DDP must broadcast rank 0's
        model = ResNet18(len(classes))
        cfg = TrainConfig(epochs=1, lr=0.01, lam=0.01, gamma=1.0, device="cpu", channels_last=False)
        result = train(model, train_loader, test_loader, cfg, progress=False)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        state["centers"] = result.centers.centers.clone()
        torch.save(state, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_resnet_on_the_standin_ends_identical_on_both_ranks(tmp_path):
    """ResNet-18 (with BatchNorm, whose running statistics DDP broadcasts from rank 0) on
    the quick stand-in, each rank reading its own shard: weights, buffers and centers end
    identical on both ranks. Both ranks start together on a stand-in that does not exist
    yet: rank 0 draws it and fills the cache first."""
    root = tmp_path / "standin"  # not there yet: rank 0 draws it while rank 1 waits
    args = (2, str(tmp_path / "init"), str(tmp_path), str(root))
    mp.spawn(_standin_entry, args=args, nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), f"ranks differ in {key}"


def _cli_entry(rank: int, world: int, port: int, root: str, out: str) -> None:
    """One process of ``torchrun --nproc_per_node=2 -m ferlib fer ...``: the environment
    torchrun sets, then the command line's own entry point."""
    import contextlib
    import io
    from pathlib import Path

    from ferlib.cli import main

    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    args = ["fer", "--dataset", "standin", "--profile", "quick", "--loss", "softmax"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main([*args, "--data-root", root, "--out", out, "--no-progress"])
    Path(out, f"exit-code-rank{rank}").write_text(str(code))
    Path(out, f"stdout-rank{rank}").write_text(printed.getvalue())


def test_the_fer_command_under_torchrun_exits_0_on_a_fresh_folder(tmp_path):
    """The README's ``torchrun -m ferlib fer`` on 2 gloo processes and an output folder that
    does not exist yet: both ranks exit 0 and rank 0 alone prints and writes the table (a
    rank that asked whether it was rank 0 after leaving the process group believed it was,
    and failed reading a table that rank 0 had not written)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"  # fresh: not there yet
    mp.spawn(_cli_entry, args=(2, port, str(tmp_path / "standin"), str(out)), nprocs=2, join=True)
    assert [(out / f"exit-code-rank{r}").read_text() for r in (0, 1)] == ["0", "0"]
    assert (out / "table.txt").is_file() and (out / "quick-softmax-seed0.json").is_file()
    printed = [(out / f"stdout-rank{r}").read_text() for r in (0, 1)]
    assert "results written to" in printed[0]
    assert printed[1] == "", f"rank 1 printed as if it were rank 0: {printed[1][:200]!r}"
