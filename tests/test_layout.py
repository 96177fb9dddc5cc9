"""The layout shows the architecture (issue 16): one runner, profiles that hold a recipe,
small modules, the paper's numbers once, one way to report a command's bad input."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from dataclasses import fields
from pathlib import Path

import pytest

import ferlib
from ferlib import paper
from ferlib.cli import main
from ferlib.experiments import fer, wmnist
from ferlib.training import TrainConfig

PACKAGE = Path(ferlib.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def _modules():
    for info in pkgutil.walk_packages(ferlib.__path__, "ferlib."):
        if not info.name.endswith("__main__"):
            yield importlib.import_module(info.name)


def test_no_module_is_over_600_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert not long, long


def test_only_the_runner_and_the_cli_train_and_catch_a_divergence():
    """The runner's shape (train with a checkpoint, a divergence recorded) is written once."""
    found = {
        str(p.relative_to(PACKAGE))
        for p in MODULES
        if re.search(r"\btrain\(|except NonFiniteLossError", p.read_text())
    }
    assert found == {"runner.py", "training.py"}, found  # training.py defines the loop


def test_profiles_hold_a_train_config_and_the_paper_numbers_appear_once():
    for profile in [*wmnist.PROFILES.values(), *fer.PROFILES.values()]:
        assert isinstance(profile.train, TrainConfig), profile.name
        recipe = {f.name for f in fields(TrainConfig)}
        assert not recipe & {f.name for f in fields(profile)}, profile.name  # none copied
    assert wmnist.RUNS["center"] == (paper.LAMBDA, 0.0)
    assert [wmnist.RUNS[f"dda-{g:g}"][1] for g in paper.GAMMAS_WMNIST] == [1.0, 3.0, 5.0, 7.0]
    assert fer.PROFILES["rafdb-paper"].train.gamma == paper.GAMMA_RAFDB
    assert fer.PROFILES["affectnet-paper"].train.gamma == paper.GAMMA_AFFECTNET
    assert TrainConfig().alpha == paper.ALPHA
    # the literals themselves: λ = 0.01 and α = 0.5 are set in ferlib/paper.py only
    literal = re.compile(
        r"^\s*(lam|alpha)\w*\s*(:[^=\n]*)?=\s*(0\.01|0\.5)\b"  # a field or parameter default
        r"|\blam=0\.01\b|--(lam|alpha)\b.*default=(0\.01|0\.5)\b",  # a keyword, a CLI default
        re.M,
    )
    written = [str(p.relative_to(PACKAGE)) for p in MODULES if literal.search(p.read_text())]
    assert written == [], written


def test_a_profiles_recipe_cannot_change_behind_its_back():
    quick = wmnist.PROFILES["quick"]
    with pytest.raises(AttributeError):
        quick.train.lr = 1.0  # type: ignore[misc]
    longer = quick.with_train(epochs=9)
    assert longer.train.epochs == 9 and quick.train.epochs == 3
    assert longer.train.lr == quick.train.lr and longer.counts == quick.counts
    hash(longer)


def test_every_public_function_and_class_has_a_docstring():
    missing = []
    for module in _modules():
        assert module.__doc__, module.__name__
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not obj.__doc__:
                missing.append(f"{module.__name__}.{name}")
    assert not missing, missing


def test_the_old_import_paths_still_give_the_same_objects():
    """Notebooks handed out before issue 16 (and submissions made from them) import these."""
    from ferlib.experiments import fer_data, stability, table1
    from ferlib.fer import PROFILES, find_rafdb, load_data, run_fer
    from ferlib.study import PAPER_TABLE1, RUNS, format_stability, format_table, run_study

    assert (run_study, format_table, format_stability) == (
        table1.run_study,
        table1.format_table,
        stability.format_stability,
    )
    assert PAPER_TABLE1 is paper.PAPER_TABLE1 and RUNS is wmnist.RUNS
    assert (run_fer, PROFILES) == (fer.run_fer, fer.PROFILES)
    assert (load_data, find_rafdb) == (fer_data.load_data, fer_data.find_rafdb)


@pytest.mark.parametrize(
    ("argv", "prog"),
    [
        (["scale", "--sizes", "601", "--no-progress"], "python -m ferlib scale"),
        (["grade", "no/such/folder"], "python -m ferlib grade"),
        (
            ["fer", "--dataset", "rafdb", "--loss", "dda", "--data-root", "no/such/folder"],
            "python -m ferlib fer",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2_in_every_command(argv, prog, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{prog}: error: ") and "Traceback" not in err, err


def test_the_classroom_command_line_reports_it_the_same_way(capsys):
    from ferlib.classroom.cli import main as classroom_main

    assert classroom_main(["grade", "no/such/folder"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "python -m ferlib.classroom grade: error: no notebook or folder at no/such/folder"
