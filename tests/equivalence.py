"""The four experiments' quick-profile commands and the numbers they give (issue 16).

Each case is one ``python -m ferlib`` command, seed 0, quick profile; :func:`numbers`
keeps what a refactor must not change (every epoch's losses, accuracies and feature
norm, the final accuracies, where a diverged run stopped) and drops what may change
(wall time, machine, free-text messages, bookkeeping fields added later).

``tests/fixtures/equivalence.json`` holds these numbers as the code gave them before the
experiments became ``ferlib.experiments`` (commit 6dee0e9), with the machine that made
them. ``tests/test_equivalence.py`` runs the same commands and compares.

Regenerate (only when a change of numbers is intended, and say why in the commit)::

    .venv/bin/python tests/equivalence.py --root data
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from ferlib.cli import main
from ferlib.runtime import machine_description

FIXTURE = Path(__file__).parent / "fixtures" / "equivalence.json"

#: Keys whose values are not results: timings, machine, messages, provenance.
IGNORED = {"seconds", "wall_seconds", "machine", "error", "source", "world_size", "profile"}


def _cmd(*args: str) -> list[str]:
    return [*args, "--no-progress"]


def commands(root: Path, out: Path) -> dict[str, list[str]]:
    """The four commands: a Table-1 study, two stability variants' worth of the stability
    command (every variant, quick schedule), one scale point in each arm, one FER run."""
    r = str(root)
    return {
        "study": _cmd("study", "--profile", "quick", "--out", str(out / "study"), "--data-root", r),
        "stability": _cmd(
            "stability", "--profile", "quick", "--out", str(out / "stability"), "--data-root", r
        ),
        "scale": _cmd(
            "scale", "--base", "quick", "--sizes", "120", "--epoch-sizes", "60", "--epochs", "1",
            "--losses", "dda-7", "--out", str(out / "scale"), "--data-root", r,
        ),  # fmt: skip
        "fer": _cmd(
            "fer", "--dataset", "standin", "--profile", "quick", "--loss", "softmax", "dda",
            "--data-root", str(out / "standin"), "--out", str(out / "fer"),
        ),  # fmt: skip
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
    (its model name decides the vector kernels), torch, and the number of threads."""
    info = machine_description(torch.device("cpu"))
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model or info["processor"], "torch": info["torch"], "threads": info["threads"]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="folder holding MNIST/raw")
    parser.add_argument("--cases", nargs="+", default=["study", "stability", "scale", "fer"])
    args = parser.parse_args()
    data = json.loads(FIXTURE.read_text()) if FIXTURE.exists() else {"cases": {}}
    data["machine"] = machine_key()
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            code, got = run_case(case, args.root, Path(tmp))
            data["cases"][case] = {"command": commands(Path("ROOT"), Path("OUT"))[case]}
            data["cases"][case] |= {"exit_code": code, "runs": got}
            print(case, code, list(got))
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(data, indent=1) + "\n")
