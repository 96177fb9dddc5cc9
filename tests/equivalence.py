"""The four experiments' quick-profile commands and the numbers they give (issue 16).

Each case is one ``python -m ferlib`` command, seed 0, quick profile; :func:`results`
keeps what a refactor must not change (every epoch's losses, accuracies and feature
norm, the final accuracies, where a diverged run stopped) and drops what may change
(wall time, machine, free-text messages, bookkeeping fields added later).

The commands run in a fresh process on a pinned number of threads (:data:`PINNED`). On one
machine the same command then gives the same numbers, bit for bit, run after run (checked
here: two runs, identical files). One thread instead of two already moved quick-profile
accuracies by up to 11 points and made a stability variant diverge (a few float32 roundings
differ, and 3 epochs of SGD at the quick profile's learning rate amplify them), so no
tolerance can tell a real change from another processor's roundings: the comparison is
exact, on a processor of the model that made the fixture.

``tests/fixtures/equivalence.json`` holds the numbers that the code before the experiments
became ``ferlib.experiments`` (commit 6dee0e9) gave, and the machine that made them;
``tests/test_equivalence.py`` runs the same commands with today's code and compares.

Remake it (only when a change of numbers is intended, and say why in the commit)::

    .venv/bin/python tests/equivalence.py --root data            # today's code
    PYTHONPATH=<checkout of 6dee0e9> .venv/bin/python tests/equivalence.py --root data
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from ferlib.cli import main
from ferlib.runtime import machine_description

FIXTURE = Path(__file__).parent / "fixtures" / "equivalence.json"
CASES = ("study", "stability", "scale", "fer")

#: The thread count, pinned: OpenMP and MKL split reductions by it, so it decides roundings.
#: (Pinning the vector kernels too, ATEN_CPU_CAPABILITY=default and ONEDNN_MAX_CPU_ISA=SSE41,
#: made the four commands take over 13 minutes instead of under 2: not worth it for CI.)
PINNED = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}

#: Keys whose values are not results: timings, machine, messages, provenance.
IGNORED = {"seconds", "wall_seconds", "machine", "error", "source", "world_size", "profile"}


def _cmd(*args: str) -> list[str]:
    return [*args, "--no-progress"]


def commands(root: Path, out: Path) -> dict[str, list[str]]:
    """The four commands: a Table-1 study, two stability variants' worth of the stability
    command (every variant, quick schedule), one scale point in each arm, one FER run."""
    r = ["--data-root", str(root)]
    return {
        "study": _cmd(*"study --profile quick".split(), "--out", str(out / "study"), *r),
        "stability": _cmd("stability", "--profile", "quick", "--out", str(out / "stability"), *r),
        "scale": _cmd(
            *"scale --base quick --sizes 120 --epoch-sizes 60 --epochs 1 --losses dda-7".split(),
            *["--out", str(out / "scale"), *r],
        ),
        "fer": _cmd(
            *"fer --dataset standin --profile quick --loss softmax dda".split(),
            *["--data-root", str(out / "standin"), "--out", str(out / "fer")],
        ),
    }


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in IGNORED}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def results(name: str, out: Path) -> dict[str, Any]:
    """The numbers a case wrote, by run."""
    if name == "study":
        return _strip(json.loads((out / "study" / "table1.json").read_text())["runs"])
    if name == "stability":
        return _strip(json.loads((out / "stability" / "stability.json").read_text())["variants"])
    if name == "scale":
        return _strip(json.loads((out / "scale" / "scale.json").read_text())["runs"])
    runs = sorted((out / "fer").glob("*-seed*.json"))
    return {p.stem: _strip(json.loads(p.read_text())) for p in runs}


def run_case(name: str, root: Path, out: Path) -> tuple[int, dict[str, Any]]:
    """Run one case's command; returns its exit code and :func:`results`."""
    code = main(commands(root, out)[name])
    return code, results(name, out)


def machine_key() -> dict[str, Any]:
    """What decides whether two machines give bit-identical float32 training: the processor
    (its model name, and a digest of its instruction-set flags, which decide the vector
    kernels), torch, and the number of threads."""
    info = machine_description(torch.device("cpu"))
    cpu = {"model name": "", "flags": ""}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in cpu and not cpu[key.strip()]:
                cpu[key.strip()] = value.strip()
    except OSError:
        pass
    flags = hashlib.sha256(cpu["flags"].encode()).hexdigest()[:12]
    return {
        "cpu": f"{cpu['model name']} (flags {flags})",
        "torch": info["torch"],
        "threads": info["threads"],
    }


def run_pinned(root: Path, out: Path, cases: tuple[str, ...] = CASES) -> dict[str, Any]:
    """Run ``cases`` in a fresh Python under :data:`PINNED`; returns what the fixture holds:
    ``{"machine": ..., "cases": {case: {"command", "exit_code", "runs"}}}``."""
    env = os.environ | PINNED | {"MPLBACKEND": "Agg"}
    args = [sys.executable, __file__, "--root", str(root), "--out", str(out), "--cases", *cases]
    subprocess.run(args, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="folder holding MNIST/raw")
    parser.add_argument("--out", type=Path, default=FIXTURE, help="default: the fixture")
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    args = parser.parse_args()
    if any(os.environ.get(k) != v for k, v in PINNED.items()):  # pin, then run again
        run_pinned(args.root, args.out, tuple(args.cases))
        return
    data: dict[str, Any] = {"machine": machine_key(), "pinned": PINNED, "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            code, got = run_case(case, args.root, Path(tmp))
            data["cases"][case] = {"command": commands(Path("ROOT"), Path("OUT"))[case]}
            data["cases"][case] |= {"exit_code": code, "runs": got}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    _main()
