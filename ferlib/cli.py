"""Command line: ``python -m ferlib train ...`` (one run) and ``python -m ferlib study ...``.

Examples::

    python -m ferlib study --profile cpu                 # Table 1 + Fig. 2, under an hour on a CPU
    python -m ferlib study --profile paper               # the paper's recipe (use a GPU)
    python -m ferlib train --gamma 7 --profile cpu       # one DDA run on W-MNIST
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ferlib.study import (
    PROFILES,
    RUNS,
    format_table,
    load_study_data,
    run_config,
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--scaling", choices=["paper", "published"], default="paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding MNIST/raw")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    study = sub.add_parser("study", help="run the W-MNIST study (Table 1, Fig. 2)")
    _common(study)
    study.add_argument("--out", type=Path, default=Path("results/wmnist"))
    study.add_argument("--runs", nargs="+", choices=list(RUNS), default=None)
    study.add_argument("--checkpoints", type=Path, default=None, help="default: OUT/checkpoints")

    stab = sub.add_parser("stability", help="which recipes train DDA (scaling, lr, clip, init)")
    _common(stab)
    stab.add_argument("--out", type=Path, default=Path("results/stability"))
    stab.add_argument("--checkpoints", type=Path, default=None, help="default: OUT/checkpoints")

    one = sub.add_parser("train", help="train LeNets++ on W-MNIST with one loss")
    _common(one)
    one.add_argument("--lam", type=float, default=0.01, help="λ (0 with γ = 0: softmax only)")
    one.add_argument("--gamma", type=float, default=0.0, help="γ (0: no DDA loss)")
    one.add_argument("--alpha", type=float, default=0.5, help="α, the centers' learning rate")
    one.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    one.add_argument("--lr", type=float, default=None, help="override the profile's learning rate")
    one.add_argument("--checkpoint", type=Path, default=None, help="resume from / save to")
    one.add_argument("--json", type=Path, default=None, help="write the history here")

    args = parser.parse_args(argv)
    if args.command == "study":
        return _study(args)
    if args.command == "stability":
        return _stability(args)
    return _train(args)


def _study(args: argparse.Namespace) -> int:
    from ferlib.study import run_study

    table = run_study(
        args.profile,
        args.out,
        root=args.data_root,
        scaling=args.scaling,
        seed=args.seed,
        runs=args.runs,
        checkpoints=args.checkpoints,
        progress=not args.no_progress,
    )
    print(f"\nW-MNIST study, profile {args.profile!r}, scaling {args.scaling!r}, seed {args.seed}")
    print(f"wall time {table['wall_seconds']:.0f} s on {table['machine']['processor']}\n")
    print(format_table(table, PROFILES[args.profile].minority))
    diverged = [n for n, r in table["runs"].items() if r["status"] != "ok"]
    for name in diverged:
        print(f"\n{name} diverged: {table['runs'][name]['error']}", file=sys.stderr)
    print(f"\nresults written to {args.out}/")
    return 1 if diverged else 0


def _stability(args: argparse.Namespace) -> int:
    from ferlib.study import format_stability, run_stability

    table = run_stability(
        args.profile,
        args.out,
        root=args.data_root,
        seed=args.seed,
        checkpoints=args.checkpoints,
        progress=not args.no_progress,
    )
    print(f"\nstability, profile {args.profile!r}, seed {args.seed}")
    print(f"wall time {table['wall_seconds']:.0f} s on {table['machine']['processor']}\n")
    print(format_stability(table, PROFILES[args.profile].minority))
    print(f"\nresults written to {args.out}/")
    return 0


def _train(args: argparse.Namespace) -> int:
    from ferlib.data import TensorLoader
    from ferlib.models import LeNetsPP
    from ferlib.training import NonFiniteLossError, seed_everything, train

    prof = PROFILES[args.profile]
    config = run_config(prof, args.lam, args.gamma, args.scaling, args.seed)
    config.alpha = args.alpha
    if args.epochs is not None:
        config.epochs = args.epochs
    if args.lr is not None:
        config.lr = args.lr
    (x_train, y_train), (x_test, y_test) = load_study_data(prof, args.data_root)
    seed_everything(args.seed)
    model = LeNetsPP()
    try:
        result = train(
            model,
            TensorLoader(x_train, y_train, prof.batch_size, shuffle=True, seed=args.seed),
            TensorLoader(x_test, y_test, 1000),
            config,
            checkpoint=args.checkpoint,
            progress=not args.no_progress,
        )
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    last = result.history[-1]
    print(f"{config.loss_name}: test accuracy {last['test_acc']:.2f}%")
    print(
        "per class: " + ", ".join(f"{k}: {a:.1f}" for k, a in enumerate(last["test_per_class_acc"]))
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.history, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
