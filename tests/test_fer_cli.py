"""The ``fer`` and ``standin`` command lines as a new user meets them (issue 20, part 3).

Bad input ends with one line on stderr, ``python -m ferlib fer: error: ...``, and exit code
2, without a traceback, and suggests only options the command has; a read-only data folder
caches elsewhere and says where; the stand-in is drawn where ``fer`` reads it; profiles made
for the stand-in warn on a real dataset; FER2013 says which labels it uses; a bare ``fer``
starts nothing. Every fixture is a tiny dataset in its official layout under ``tmp_path``
(RAF-DB: 32×32 JPEGs, enough for the quick profile's 28-pixel crops).

Where only the command line is under test, ``run_fer`` is replaced by a stub that writes the
table (no training): the data is still found, read, decoded and checked for real.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

import ferlib.cli
import ferlib.data.synthetic
import ferlib.experiments.fer
from ferlib.cli import main
from ferlib.data.fer2013 import FERPLUS_VOTE_COLUMNS
from ferlib.data.rafdb import LABEL_FILE
from ferlib.experiments.fer import CROPS, PROFILES, load_data
from ferlib.experiments.fer_data import standin_folder
from ferlib.runtime import pick_device

ROOT = Path(__file__).resolve().parents[1]
QUICK = PROFILES["quick"]
PROG = "python -m ferlib fer: error: "


def make_rafdb(root: Path, train: int = 40, test: int = 8, side: int = 32) -> Path:
    """``root/basic``: RAF-DB's official layout, ``train`` + ``test`` grey-level faces."""
    names = [f"train_{i + 1:05d}.jpg" for i in range(train)]
    names += [f"test_{i + 1:04d}.jpg" for i in range(test)]
    basic = root / "basic"
    (basic / LABEL_FILE).parent.mkdir(parents=True)
    (basic / LABEL_FILE).write_text("".join(f"{n} {i % 7 + 1}\n" for i, n in enumerate(names)))
    aligned = basic / "Image" / "aligned"
    aligned.mkdir(parents=True)
    for i, name in enumerate(names):
        level = 20 + 4 * i % 200
        image = Image.new("RGB", (side, side), (level, 255 - level, 90))
        image.save(aligned / name.replace(".jpg", "_aligned.jpg"), quality=90)
    return root


def image(root: Path, name: str) -> Path:
    return root / "basic" / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")


def fer(root: Path, out: Path, *more: str, dataset: str = "rafdb") -> list[str]:
    return [
        "fer",
        *("--dataset", dataset, "--profile", "quick", "--loss", "softmax"),
        *("--data-root", str(root), "--out", str(out), "--no-progress", *more),
    ]


def one_error_line(err: str) -> str:
    """The error line, after checking that it is the last line and no traceback came."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith(PROG), err
    assert sum(line.startswith(PROG) for line in lines) == 1, err
    return lines[-1]


@pytest.fixture
def no_training(monkeypatch):
    """``run_fer`` stubbed: records its calls and writes the table the command prints."""
    calls: list[dict] = []

    def stub(dataset, loss, profile, *, out_dir, data, **kw):
        calls.append({"dataset": dataset, "loss": loss, "data": data, **kw})
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "table.txt").write_text(f"{dataset}: stub table\n")
        return {"status": "ok", "run": loss}

    monkeypatch.setattr(ferlib.experiments.fer, "run_fer", stub)
    return calls


# ----------------------------------------------------------------------------- bad input


def test_a_corrupt_jpeg_names_the_file_and_the_skip_corrupt_option(tmp_path, capsys, no_training):
    root = make_rafdb(tmp_path / "raf")
    bad = image(root, "train_00003.jpg")
    bad.write_bytes(b"not a jpeg at all")
    assert main(fer(root, tmp_path / "out")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot read image {bad}" in line and "--skip-corrupt" in line, line
    assert "skip_corrupt=True" not in line  # a parameter of the library, not of the command
    # the option exists and reaches the loader: the unreadable image is left out
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        assert main(fer(root, tmp_path / "out", "--skip-corrupt")) == 0
    train_loader = no_training[0]["data"][0]
    assert len(train_loader.labels) == 39


def test_a_label_out_of_range_names_the_file_the_line_and_the_range(tmp_path, capsys):
    root = make_rafdb(tmp_path / "raf")
    label_file = root / "basic" / LABEL_FILE
    lines = label_file.read_text().splitlines()
    lines[4] = "train_00005.jpg 8"
    label_file.write_text("\n".join(lines) + "\n")
    assert main(fer(root, tmp_path / "out")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"label 8 out of range 1..7 in {label_file}, line 5" in line, line


def test_a_file_name_in_the_wrong_case_is_pointed_out(tmp_path, capsys):
    root = make_rafdb(tmp_path / "raf")
    listed = image(root, "train_00004.jpg")
    listed.rename(listed.with_name("Train_00004_aligned.JPG"))
    assert main(fer(root, tmp_path / "out")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "Train_00004_aligned.JPG exists" in line and "only in upper/lower case" in line, line


@pytest.mark.parametrize(
    ("train", "profile", "advice"),
    [
        (10, "quick", "No profile's batch is that small: point --data-root at the whole dataset"),
        (40, "rafdb-paper", "a profile with a smaller batch: --profile quick (32)"),
    ],
)
def test_a_training_set_smaller_than_one_batch_says_so_before_training(
    tmp_path, capsys, no_training, train, profile, advice
):
    root = make_rafdb(tmp_path / "raf", train=train)
    argv = fer(root, tmp_path / "out")
    argv[argv.index("--profile") + 1] = profile
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    batch = PROFILES[profile].batch_size
    assert f"the training set has {train} images, fewer than one batch of {batch}" in line
    assert advice in line and "drop_last" not in line, line
    assert not no_training  # refused before any run started


@pytest.mark.parametrize("how", ["read-only folder", "cache path taken by a file"])
def test_a_read_only_data_folder_caches_in_the_user_cache_and_says_where(
    tmp_path, capsys, monkeypatch, how
):
    root = make_rafdb(tmp_path / "raf")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if how == "read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        for folder in (root, *[p for p in root.rglob("*") if p.is_dir()]):
            folder.chmod(0o555)
    else:  # what root meets on a read-only mount: nothing can be written under root/cache
        (root / "cache").write_text("a file where the cache folder would go")
    try:
        train_loader, test_loader, _ = load_data("rafdb", QUICK, pick_device("cpu"), root)
    finally:
        for folder in (root, *[p for p in root.rglob("*") if p.is_dir()]):
            folder.chmod(0o755)
    out = capsys.readouterr().out
    fallback = tmp_path / "xdg" / "ferlib"
    assert f"cannot write in {root / 'cache'}" in out and str(fallback) in out, out
    assert sorted(p.name.split("-")[:2] for p in fallback.glob("*.pt")) == [
        ["RAFDB", "test"],
        ["RAFDB", "train"],
    ]
    assert len(train_loader.labels) == 40 and len(test_loader.labels) == 8
    # the next run reads the cache from there (and says so again)
    load_data("rafdb", QUICK, pick_device("cpu"), root)
    assert str(fallback) in capsys.readouterr().out


# ----------------------------------------------------------------------------- the stand-in


def test_the_standin_command_draws_the_folder_fer_reads(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FERLIB_DATA", str(tmp_path / "data"))
    assert main(["standin", "--profile", "quick", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    folder = tmp_path / "data" / "standin" / f"scale{QUICK.standin_scale:g}-size32"
    assert folder == standin_folder(QUICK.standin_scale, QUICK.standin_size)
    assert f"written to {folder}/" in printed
    assert "read by: python -m ferlib fer --dataset standin --profile quick\n" in printed

    def redraw(*args, **kwargs):
        raise AssertionError("fer drew its own stand-in instead of reading the one written")

    monkeypatch.setattr(ferlib.data.synthetic, "_render", redraw)
    train_loader, _, classes = load_data("standin", QUICK, pick_device("cpu"), None)
    assert len(classes) == 7 and train_loader.images.shape[-1] == QUICK.standin_size


def test_a_standin_written_elsewhere_says_which_folder_fer_reads(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FERLIB_DATA", str(tmp_path / "data"))
    out = tmp_path / "mine"
    argv = ["standin", "--out", str(out), "--scale", "0.01", "--size", "16", "--no-progress"]
    assert main(argv) == 0
    printed = " ".join(capsys.readouterr().out.split())
    cpu = PROFILES["cpu"]
    reads = standin_folder(cpu.standin_scale, cpu.standin_size)
    assert f"python -m ferlib fer --dataset standin does not read {out}" in printed
    assert f"(--profile cpu: {reads})" in printed


def test_a_standin_of_another_seed_in_fers_folder_is_said_to_be_replaced(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("FERLIB_DATA", str(tmp_path / "data"))
    assert main(["standin", "--profile", "quick", "--seed", "1", "--no-progress"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "--profile quick reads this folder but draws its stand-in with seed 0" in printed
    assert "read by:" not in printed


# ----------------------------------------------------------------------------- what it says


def test_profiles_for_the_standin_warn_on_a_real_dataset(tmp_path, capsys, no_training):
    root = make_rafdb(tmp_path / "raf")
    assert main(fer(root, tmp_path / "out")) == 0
    err = capsys.readouterr().err
    size, paper = CROPS["rafdb"]
    warning = (
        f"python -m ferlib fer: warning: the quick profile is sized for the synthetic "
        f"stand-in: on rafdb it trains and tests on {QUICK.crop}-pixel crops of {size}-pixel "
        f"images, where the paper's crop is {paper}; for a real run use --profile rafdb-paper"
    )
    assert err.strip() == warning
    standin = tmp_path / "standin"  # the stand-in itself: no warning
    assert main(fer(standin, tmp_path / "out2", dataset="standin")) == 0
    assert "warning" not in capsys.readouterr().err


def write_fer2013(folder: Path, train: int = 36, test: int = 4, ferplus: bool = False) -> Path:
    """``fer2013.csv`` (and ``fer2013new.csv``): ``train`` Training rows, ``test`` of each
    other split; FER+ votes give every row a clear majority."""
    folder.mkdir(parents=True)
    usages = ["Training"] * train + ["PublicTest"] * test + ["PrivateTest"] * test
    pixels = [" ".join(str((7 * i + j) % 256) for j in range(48 * 48)) for i in range(len(usages))]
    rows = [f"{i % 7},{p},{u}" for i, (p, u) in enumerate(zip(pixels, usages, strict=True))]
    (folder / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    if ferplus:
        votes = [[8 if c == i % 8 else 0 for c in range(10)] for i in range(len(usages))]
        lines = [
            f"{u},fer{i:07d}.png," + ",".join(map(str, v))
            for i, (u, v) in enumerate(zip(usages, votes, strict=True))
        ]
        header = "Usage,Image name," + ",".join(FERPLUS_VOTE_COLUMNS)
        (folder / "fer2013new.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize(
    ("ferplus", "option", "said", "classes"),
    [
        (False, [], "FER2013 with its own 7 classes", 7),
        (True, [], "FER2013 with the 8 FER+ classes (majority votes of", 8),
        (True, ["--fer2013-labels", "fer2013"], "FER2013 with its own 7 classes", 7),
    ],
    ids=["no-ferplus-file", "ferplus-file", "ferplus-file-but-asked-for-fer2013"],
)
def test_fer2013_says_which_labels_it_uses(
    tmp_path, capsys, no_training, ferplus, option, said, classes
):
    root = write_fer2013(tmp_path / "FER2013", ferplus=ferplus)
    assert main(fer(root, tmp_path / "out", *option, dataset="fer2013")) == 0
    assert said in capsys.readouterr().out
    names = no_training[0]["data"][2]
    assert len(names) == classes


def test_a_bare_fer_command_starts_nothing(capsys, no_training):
    with pytest.raises(SystemExit) as info:
        main(["fer"])
    assert info.value.code == 2 and not no_training
    err = capsys.readouterr().err
    assert "python -m ferlib fer: error: the following arguments are required: --loss" in err


def documented_commands() -> list[tuple[str, str]]:
    """``(file, command)`` of every ``fer`` and ``standin`` command line in the README, the
    book's pages, the notebooks and the benchmarks (continuation lines joined)."""
    paths = [ROOT / "README.md", ROOT / "data" / "README.md", *sorted(ROOT.glob("docs/*.md"))]
    paths += [*sorted(ROOT.glob("notebooks/*.ipynb")), *sorted(ROOT.glob("benchmarks/*.sh"))]
    found = []
    for path in paths:
        text = path.read_text()
        if path.suffix == ".ipynb":
            text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"])
        text = re.sub(r"\\\n\s*", " ", text)
        for line in text.splitlines():
            match = re.match(
                r'\s*"?[^\s`]*(?:python|torchrun)\S*"?\s.*?-m ferlib ((fer|standin)\b.*)', line
            )
            if match:
                found.append((path.name, match.group(1)))
    return found


def arguments(command: str) -> list[str]:
    """The command's arguments as the shell passes them: up to a redirection, a pipe or
    the next command, comments left out."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    cut = [i for i, t in enumerate(tokens) if set(t) <= set("<>|&;()")]
    return tokens[: cut[0]] if cut else tokens


def test_every_documented_fer_and_standin_command_is_accepted(monkeypatch):
    commands = documented_commands()
    assert {c.split()[0] for _, c in commands} == {"fer", "standin"}, commands
    handled = []
    monkeypatch.setattr(ferlib.cli, "_fer", lambda args: handled.append(args) or 0)
    monkeypatch.setattr(ferlib.cli, "_standin", lambda args: handled.append(args) or 0)
    for where, command in commands:
        try:
            assert main(arguments(command)) == 0
        except SystemExit as err:
            raise AssertionError(f"{where}: {command!r} is refused (exit {err.code})") from err
    assert len(handled) == len(commands)


def test_fer_help_says_loss_is_required(capsys):
    with pytest.raises(SystemExit):
        main(["fer", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--loss {softmax,center,dda} [{softmax,center,dda} ...]" in text
    assert "required, one or more" in text and "--skip-corrupt" in text
