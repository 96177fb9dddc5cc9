"""Command line: ``python -m ferlib <command>``, one command per experiment.

Examples::

    python -m ferlib study --profile cpu                 # Table 1 + Fig. 2, under an hour on a CPU
    python -m ferlib study --profile paper               # the paper's recipe (use a GPU)
    python -m ferlib train --gamma 7 --profile cpu       # one DDA run on W-MNIST
    python -m ferlib stability | scale | fer | standin   # the other experiments and the stand-in
    python -m ferlib paired --root results/wmnist-repro  # paired tests between a study's runs
    python -m ferlib fer-report --root results/standin   # the stand-in FER study over seeds
    python -m ferlib student                             # notebooks/student/ (ferlib.classroom)
    python -m ferlib grade submissions/ --out grades     # grade a class offline

Bad input ends a command with one line, ``python -m ferlib <command>: error: ...``, and exit
code 2 (:mod:`ferlib.commands`); a run that diverged, with exit code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ferlib.commands import fail, run_command, writable
from ferlib.experiments.table1 import format_table
from ferlib.experiments.wmnist import PROFILES, RUNS, load_study_data, run_config
from ferlib.paper import ALPHA, LAMBDA

if TYPE_CHECKING:
    from ferlib.experiments.fer_data import TooFewImagesError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--scaling", choices=["paper", "published"], default="paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding MNIST/raw")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main(argv: list[str] | None = None) -> int:
    """``python -m ferlib <command> ...``: parse, run the command, return its exit code."""
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

    scale = sub.add_parser(
        "scale", help="W-MNIST accuracy against training-set size (equal steps, equal epochs)"
    )
    scale.add_argument("--base", choices=sorted(PROFILES), default="cpu", help="base recipe")
    scale.add_argument("--sizes", type=int, nargs="*", default=None, help="equal-steps arm")
    scale.add_argument("--epoch-sizes", type=int, nargs="*", default=None, help="epochs arm")
    scale.add_argument("--epochs", type=int, default=None, help="epochs of the epochs arm")
    scale.add_argument("--losses", nargs="+", choices=["softmax", "dda-7"], default=None)
    scale.add_argument("--seeds", type=int, nargs="+", default=[0])
    scale.add_argument(
        "--reuse", type=Path, nargs="*", default=[], help="studies' table1.json on the base"
    )
    scale.add_argument("--data-root", type=Path, default=None, help="folder holding MNIST/raw")
    scale.add_argument("--out", type=Path, default=Path("results/wmnist-scale"))
    scale.add_argument("--checkpoints", type=Path, default=None, help="default: OUT/checkpoints")
    scale.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    scale.add_argument(
        "--merge", type=Path, nargs="+", default=None, help="merge these scale.json into OUT"
    )

    paired = sub.add_parser(
        "paired", help="paired tests (McNemar, bootstrap) between a study's runs, per seed"
    )
    paired.add_argument(
        "--root", type=Path, default=Path("results/wmnist-repro"), help="the studies' parent"
    )
    paired.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    paired.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    paired.add_argument("--out", type=Path, default=None, help="default: ROOT/paired.json")

    report = sub.add_parser(
        "fer-report",
        help="the stand-in FER study over seeds: convergence, groups, NCM, centers, paired tests",
        description="Read the stand-in study's runs (results/standin/run_study.sh) and write "
        "ROOT/study.json and study.txt.",
    )
    report.add_argument("--root", type=Path, default=Path("results/standin"), help="its runs")
    report.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    report.add_argument(
        "--profile", default="cpu", help="the runs' profile, first part of their file names"
    )
    report.add_argument(
        "--checkpoints",
        default=None,
        help="each seed's checkpoint folder with {seed}, for the centers' lag "
        "(e.g. 'runs/standin-ckpt-seed{seed}'; default: left out)",
    )
    report.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")

    one = sub.add_parser("train", help="train LeNets++ on W-MNIST with one loss")
    _common(one)
    one.add_argument("--lam", type=float, default=LAMBDA, help="λ (0 with γ = 0: softmax only)")
    one.add_argument("--gamma", type=float, default=0.0, help="γ (0: no DDA loss)")
    one.add_argument("--alpha", type=float, default=ALPHA, help="α, the centers' learning rate")
    one.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    one.add_argument("--lr", type=float, default=None, help="override the profile's learning rate")
    one.add_argument("--checkpoint", type=Path, default=None, help="resume from / save to")
    one.add_argument("--json", type=Path, default=None, help="write the history here")

    standin = sub.add_parser(
        "standin",
        help="write a synthetic stand-in for RAF-DB (drawn faces, not RAF-DB)",
        description="Draw a synthetic stand-in for RAF-DB (RAF-DB's layout and class "
        "imbalance, drawn faces). By default it goes where `python -m ferlib fer --dataset "
        "standin --profile PROFILE` reads it, <data root>/standin/scale<S>-size<N>/ (data "
        "root: $FERLIB_DATA or data/), at the profile's scale S and size N, so that fer "
        "reuses it instead of drawing its own.",
    )
    standin.add_argument(
        "--profile",
        choices=["rafdb-paper", "affectnet-paper", "cpu", "quick"],
        default="cpu",
        help="the fer profile whose stand-in to draw: its scale and size (default: %(default)s)",
    )
    standin.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: the folder fer --dataset standin reads, <data root>/standin/"
        "scale<S>-size<N>; fer reads no other folder",
    )
    standin.add_argument(
        "--scale",
        type=float,
        default=None,
        help="fraction of RAF-DB's counts (default: the profile's)",
    )
    standin.add_argument(
        "--seed", type=int, default=0, help="(default: 0, the seed fer --dataset standin draws)"
    )
    standin.add_argument(
        "--size", type=int, default=None, help="image side in pixels (default: the profile's)"
    )
    standin.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    fer = sub.add_parser(
        "fer",
        help="train ResNet-18 on a FER dataset (RAF-DB, AffectNet, FER2013, stand-in)",
        description="Train ResNet-18 with softmax, center or DDA loss (the paper's Table 2) "
        "and write one JSON per run and table.txt to OUT.",
    )
    fer.add_argument(
        "--dataset",
        choices=["rafdb", "affectnet", "fer2013", "standin"],
        default="standin",
        help="standin: synthetic faces in RAF-DB's layout (no licence needed); the others are "
        "read from their official layouts (default: %(default)s)",
    )
    fer.add_argument(
        "--profile",
        default="cpu",
        choices=["rafdb-paper", "affectnet-paper", "cpu", "quick"],
        help="rafdb-paper, affectnet-paper: the paper's recipes, for a GPU; cpu (15 epochs) "
        "and quick (2 epochs, a pipeline check): sized for the stand-in on a CPU, with small "
        "crops (a warning says so on a real dataset) (default: %(default)s)",
    )
    fer.add_argument(
        "--loss",
        nargs="+",
        choices=["softmax", "center", "dda"],
        required=True,
        help=f"required, one or more: softmax alone; center: + λ L_C with λ = {LAMBDA}; dda: "
        "+ γ L_DDA as well",
    )
    fer.add_argument(
        "--scaling",
        nargs="+",
        choices=["paper", "published"],
        default=["paper"],
        help="the DDA term as in the paper's Eq. 5, or as in the authors' released code "
        "(Eq. 5 divided by the batch size) (default: %(default)s)",
    )
    fer.add_argument(
        "--gamma",
        type=float,
        nargs="+",
        default=None,
        help="DDA γ >= 0, several values for a sweep (default: the profile's)",
    )
    fer.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    fer.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="the dataset's folder (default: data/<dataset> or $FERLIB_DATA); for standin, the "
        "folder holding scale<S>-size<N>/ (default: <data root>/standin; see the standin "
        "command)",
    )
    fer.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="RAF-DB, AffectNet, stand-in: leave unreadable images out (a warning counts "
        "them) instead of stopping at the first",
    )
    fer.add_argument(
        "--fer2013-labels",
        choices=["auto", "fer2013", "ferplus"],
        default="auto",
        help="FER2013's labels: its own 7 classes, or FER+'s 8 (fer2013new.csv); auto: FER+ "
        "when fer2013new.csv is found (a line says which) (default: %(default)s)",
    )
    fer.add_argument("--out", type=Path, default=None, help="default: results/<dataset>")
    fer.add_argument("--checkpoints", type=Path, default=None, help="default: OUT/checkpoints")
    fer.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun (GPUs)")
    fer.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    from ferlib.classroom.cli import add_arguments, classroom_command

    add_arguments(sub)  # student (the student edition), grade (the grader)

    args = parser.parse_args(argv)
    handlers = {
        "student": classroom_command,
        "grade": classroom_command,
        "fer": _fer,
        "standin": _standin,
        "study": _study,
        "stability": _stability,
        "scale": _scale,
        "paired": _paired,
        "fer-report": _fer_report,
        "train": _train,
    }
    return run_command(f"{parser.prog} {args.command}", handlers[args.command], args)


def _scale(args: argparse.Namespace) -> int:
    from ferlib.experiments import scale
    from ferlib.experiments.scale_report import format_scale, merge_scale

    if args.merge:  # runs trained by other processes: no training
        table = merge_scale(args.out, tuple(args.merge))
    else:
        table = scale.run_scale(
            args.out,
            base=args.base,
            sizes=tuple(args.sizes) if args.sizes is not None else scale.SCALE_SIZES,
            epoch_sizes=(
                tuple(args.epoch_sizes) if args.epoch_sizes is not None else scale.SCALE_EPOCH_SIZES
            ),
            epochs=args.epochs if args.epochs is not None else scale.SCALE_EPOCHS,
            losses=tuple(args.losses) if args.losses else tuple(scale.SCALE_LOSSES),
            seeds=tuple(args.seeds),
            reuse=tuple(args.reuse),
            root=args.data_root,
            checkpoints=args.checkpoints,
            progress=not args.no_progress,
        )
    print(f"\nW-MNIST scale experiment, base profile {args.base!r}, seeds {args.seeds}")
    print(f"training time {table['train_seconds_all_runs']:.0f} s on ", end="")
    print(f"{table['machine']['processor']}\n")
    print(format_scale(table))
    print(f"\nresults written to {args.out}/")
    return 0


def _study(args: argparse.Namespace) -> int:
    from ferlib.experiments.table1 import run_study

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


def _paired(args: argparse.Namespace) -> int:
    from ferlib.experiments.paired import format_paired, paired_report

    if args.resamples < 100:
        raise ValueError(
            f"--resamples: expected at least 100 bootstrap resamples, got {args.resamples}"
        )
    out = args.out or args.root / "paired.json"
    report = paired_report(args.root, args.seeds, n_resamples=args.resamples, out=out)
    text = format_paired(report)
    out.with_suffix(".txt").write_text(text + "\n")
    print(text)
    print(f"\nwritten to {out} and {out.with_suffix('.txt')}")
    return 0


def _fer_report(args: argparse.Namespace) -> int:
    from ferlib.data import RAFDB
    from ferlib.experiments.fer import PROFILES
    from ferlib.experiments.fer_data import standin_folder
    from ferlib.experiments.fer_study import format_study, study_report

    if args.resamples < 100:
        raise ValueError(
            f"--resamples: expected at least 100 bootstrap resamples, got {args.resamples}"
        )
    if args.profile not in PROFILES:
        raise ValueError(f"--profile: expected one of {sorted(PROFILES)}, got {args.profile!r}")
    prof = PROFILES[args.profile]
    folder = standin_folder(prof.standin_scale, prof.standin_size)  # where fer drew it
    labels = RAFDB(folder, "train").targets if (folder / "basic").is_dir() else None
    out = args.root / "study.json"
    report = study_report(
        args.root,
        args.seeds,
        profile=args.profile,
        checkpoints=args.checkpoints,
        train_labels=labels,
        n_resamples=args.resamples,
        out=out,
    )
    text = format_study(report)
    out.with_suffix(".txt").write_text(text + "\n")
    print(text)
    print(f"\nwritten to {out} and {out.with_suffix('.txt')}")
    if labels is None:
        print(f"no stand-in at {folder}: the Wen-step statistics are left out", file=sys.stderr)
    return 0


def _stability(args: argparse.Namespace) -> int:
    from ferlib.experiments.stability import format_stability, run_stability

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


def _fer(args: argparse.Namespace) -> int:
    """Every requested (loss, scaling, γ) run, sharing one decoded dataset; under torchrun,
    one process per GPU (DistributedDataParallel)."""
    import torch

    from ferlib.data.images import CorruptImageError
    from ferlib.experiments.fer import PROFILES, load_data, run_fer
    from ferlib.experiments.fer_data import TooFewImagesError
    from ferlib.runtime import distributed, is_main, rank, world_size

    profile = PROFILES[args.profile]
    runs = [("softmax", "paper", None)] if "softmax" in args.loss else []
    runs += [("center", "paper", None)] if "center" in args.loss else []
    if "dda" in args.loss:
        runs += [("dda", s, g) for s in args.scaling for g in (args.gamma or [None])]
    out = args.out or Path("results") / args.dataset
    if args.gamma and any(g < 0 for g in args.gamma):
        raise ValueError(
            f"--gamma: expected values >= 0 (0 turns the DDA loss off), got {args.gamma}"
        )
    if args.sync_bn and not torch.cuda.is_available():
        raise ValueError(
            "--sync-bn: SyncBatchNorm synchronises batch-norm statistics between GPUs under "
            "torchrun; this machine has no CUDA GPU, so leave it out"
        )
    writable(out, "--out")  # before the data is decoded, not after a whole epoch
    status = 0
    with distributed() as device:
        main = is_main()  # asked while the process group exists: after it, every rank is 0
        try:
            data = load_data(
                args.dataset,
                profile,
                device,
                args.data_root,
                seed=args.seed,
                rank=rank(),
                world_size=world_size(),
                progress=is_main() and not args.no_progress,
                skip_corrupt=args.skip_corrupt,
                fer2013_labels=args.fer2013_labels,
            )
        except CorruptImageError as err:  # the library's advice names its own parameter
            cause = err.__cause__
            raise ValueError(
                f"cannot read image {err.path} ({type(cause).__name__}: {cause}); re-extract "
                "or re-download it, or pass --skip-corrupt to leave unreadable images out (a "
                "warning counts them)"
            ) from err
        except TooFewImagesError as err:
            raise ValueError(_too_few_images(err)) from err
        if main and (warning := _crop_warning(args.dataset, args.profile)):
            print(f"python -m ferlib fer: warning: {warning}", file=sys.stderr)
        for loss, scaling, gamma in runs:
            result = run_fer(
                args.dataset,
                loss,
                profile,
                scaling=scaling,
                gamma=gamma,
                seed=args.seed,
                out_dir=out,
                checkpoints=args.checkpoints,
                progress=not args.no_progress,
                data=data,
                sync_bn=args.sync_bn,
            )
            if result["status"] != "ok":
                status = 1
                if main:
                    print(f"{result['run']} diverged: {result['error']}", file=sys.stderr)
    if main:
        print((out / "table.txt").read_text())
        print(f"results written to {out}/")
    return status


def _crop_warning(dataset: str, profile_name: str) -> str | None:
    """The warning for a profile sized for the stand-in (its own small crop) used on a real
    dataset, or None."""
    from ferlib.experiments.fer import CROPS, PROFILES

    crop = PROFILES[profile_name].crop
    size, own = CROPS[dataset]
    if dataset == "standin" or crop is None or crop == own:
        return None
    whose, real = {
        "rafdb": ("the paper's crop is", "--profile rafdb-paper"),
        "affectnet": ("the paper's crop is", "--profile affectnet-paper"),
    }.get(dataset, ("the other profiles crop", f"--profile rafdb-paper (crop {own})"))
    return (
        f"the {profile_name} profile is sized for the synthetic stand-in: on {dataset} it "
        f"trains and tests on {crop}-pixel crops of {size}-pixel images, where {whose} {own}; "
        f"for a real run use {real}"
    )


def _too_few_images(err: TooFewImagesError) -> str:
    """The command line's message for a training set smaller than one batch: which
    profiles would fit."""
    from ferlib.experiments.fer import PROFILES

    images, per_rank = err.images, err.per_rank
    smaller = sorted((p.batch_size, n) for n, p in PROFILES.items() if p.batch_size <= per_rank)
    shard = f" ({per_rank} per process)" if per_rank != images else ""
    advice = (
        "use the whole dataset (--data-root), or a profile with a smaller batch: "
        + ", ".join(f"--profile {n} ({b})" for b, n in smaller)
        if smaller
        else "no profile's batch is that small: point --data-root at the whole dataset"
    )
    return (
        f"{err.dataset}: the training set has {images} images{shard}, fewer than one batch "
        f"of {err.batch_size} (--profile {err.profile}); training drops the last incomplete "
        f"batch, so an epoch would have no step. {advice[0].upper()}{advice[1:]}"
        + ("; or start fewer processes" if shard else "")
    )


def _standin(args: argparse.Namespace) -> int:
    """Draw the stand-in where ``fer --dataset standin`` reads it (by default), and say
    which ``fer`` command reads the folder written, or that none does."""
    from ferlib.data import default_data_root
    from ferlib.data.synthetic import make_standin, standin_counts
    from ferlib.experiments.fer import PROFILES as FER_PROFILES
    from ferlib.experiments.fer_data import standin_folder

    chosen = FER_PROFILES[args.profile]
    scale = args.scale if args.scale is not None else chosen.standin_scale
    size = args.size if args.size is not None else chosen.standin_size
    target = args.out if args.out is not None else standin_folder(scale, size)
    out = make_standin(target, scale, args.seed, size, progress=not args.no_progress)
    counts = standin_counts(scale)
    train, test = (sum(c[s] for c in counts.values()) for s in (0, 1))
    print(f"synthetic stand-in for RAF-DB (NOT RAF-DB) written to {out}/")
    print(f"scale {scale:g}, seed {args.seed}, {size}x{size} RGB JPEG")
    print(f"{train} train / {test} test images; per class (train / test):")
    for code, (name, (n_train, n_test)) in enumerate(counts.items(), start=1):
        print(f"  {code} {name:<10} {n_train:>6} / {n_test}")
    print("numbers measured on it are not RAF-DB numbers (see README.txt there)")
    readers = [
        n
        for n, p in FER_PROFILES.items()
        if standin_folder(p.standin_scale, p.standin_size, out.parent) == out
    ]
    default = out.parent.resolve() == (default_data_root() / "standin").resolve()
    root = "" if default else f" --data-root {out.parent}"
    profiles = "|".join(readers)
    if readers and args.seed == 0:
        print(f"read by: python -m ferlib fer --dataset standin --profile {profiles}{root}")
    elif readers:
        print(
            f"note: python -m ferlib fer --dataset standin --profile {profiles}{root} reads "
            f"this folder but draws its stand-in with seed 0: it would replace this seed "
            f"{args.seed} one; pass --out elsewhere to keep both"
        )
    else:
        cpu = FER_PROFILES["cpu"]
        print(
            f"note: python -m ferlib fer --dataset standin does not read {out}: it reads (and "
            "draws with seed 0 when missing) <data root>/standin/scale<S>-size<N>/ at its "
            f"profile's scale and size (--profile cpu: "
            f"{standin_folder(cpu.standin_scale, cpu.standin_size)}); leave out --out"
            + (" and --seed" if args.seed else "")
            + " to write there"
        )
    return 0


def _train(args: argparse.Namespace) -> int:
    """One run of LeNets++ on the profile's W-MNIST; exit code 1 when it diverged."""
    from ferlib.data import TensorLoader
    from ferlib.models import LeNetsPP
    from ferlib.runner import run

    prof = PROFILES[args.profile]
    changes = {"epochs": args.epochs, "lr": args.lr}
    config = replace(
        run_config(prof, args.lam, args.gamma, args.scaling, args.seed),
        alpha=args.alpha,
        **{k: v for k, v in changes.items() if v is not None},
    )
    (x_train, y_train), (x_test, y_test) = load_study_data(prof, args.data_root)
    result = run(
        LeNetsPP,
        TensorLoader(x_train, y_train, prof.batch_size, shuffle=True, seed=args.seed),
        TensorLoader(x_test, y_test, 1000),
        config,
        checkpoint=args.checkpoint,
        progress=not args.no_progress,
    )
    if result["status"] != "ok":
        return fail(f"python -m ferlib {args.command}", result["error"], code=1)
    last = result["history"][-1]
    print(f"{config.loss_name}: test accuracy {last['test_acc']:.2f}%")
    print(
        "per class: " + ", ".join(f"{k}: {a:.1f}" for k, a in enumerate(last["test_per_class_acc"]))
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result["history"], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
