"""The refactor into one runner and ``ferlib.experiments`` (issue 16) changed no number.

The four experiments' quick-profile commands (``tests/equivalence.py``) run with today's
code, under pinned numerics, and must give exactly the numbers the code before the refactor
gave (``tests/fixtures/equivalence.json``, made at commit 6dee0e9): every epoch's losses,
accuracies and feature norm, the final accuracies, where a diverged run stopped.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from equivalence import CASES, FIXTURE, run_pinned

BEFORE = json.loads(FIXTURE.read_text())


def differences(want: Any, got: Any, path: str = "") -> list[str]:
    """Where ``got`` differs from ``want``: every key of ``want`` must be in ``got`` with an
    equal value (``got`` may hold more keys: bookkeeping added later); lists match in full."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{path}: {got!r:.60} is not a mapping"]
        out = []
        for key, value in want.items():
            if key not in got:
                out.append(f"{path}/{key}: missing")
            else:
                out += differences(value, got[key], f"{path}/{key}")
        return out
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{path}: {len(want)} items before, {got!r:.60} now"]
        pairs = enumerate(zip(want, got, strict=True))
        return [d for i, (w, g) in pairs for d in differences(w, g, f"{path}/{i}")]
    return [] if want == got else [f"{path}: {want!r} before, {got!r} now"]


def test_the_fixture_holds_the_four_experiments():
    assert set(BEFORE["cases"]) == set(CASES)
    study = BEFORE["cases"]["study"]["runs"]
    assert list(study) == ["softmax", "center", "dda-1", "dda-3", "dda-5", "dda-7"]
    assert all(len(r["history"]) == 3 for r in study.values())  # the quick profile's epochs
    stability = BEFORE["cases"]["stability"]["runs"]
    assert {r["status"] for r in stability.values()} == {"ok", "diverged"}
    assert set(BEFORE["cases"]["scale"]["runs"]) == {
        "steps-dda-7-120-seed0",
        "epochs-dda-7-60-seed0",
    }
    assert set(BEFORE["cases"]["fer"]["runs"]) == {"quick-softmax-seed0", "quick-dda-5-paper-seed0"}


def test_differences_finds_one_changed_rounding():
    runs = BEFORE["cases"]["study"]["runs"]
    changed = copy.deepcopy(runs)
    loss = changed["dda-7"]["history"][2]["train_loss"]
    changed["dda-7"]["history"][2]["train_loss"] = loss * (1 + 1e-15) or 1e-300
    assert differences(runs, runs) == []
    now = changed["dda-7"]["history"][2]["train_loss"]
    assert differences(runs, changed) == [
        f"/dda-7/history/2/train_loss: {loss!r} before, {now!r} now"
    ]
    shorter = copy.deepcopy(runs)
    shorter["center"]["history"].pop()
    assert differences(runs, shorter)[0].startswith("/center/history: 3 items before")
    assert differences(runs, runs | {"extra-run": {}}) == []  # more runs now: not compared


@pytest.fixture(scope="module")
def today(mnist_root, tmp_path_factory) -> dict[str, Any]:
    """The same commands with today's code, in a fresh process under pinned numerics."""
    return run_pinned(mnist_root, tmp_path_factory.mktemp("equivalence") / "today.json")


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_the_same_commands_give_the_same_numbers(case, today):
    want, got = BEFORE["cases"][case], today["cases"][case]
    assert got["command"] == want["command"]
    assert got["exit_code"] == want["exit_code"]
    assert set(got["runs"]) == set(want["runs"])
    found = differences(want["runs"], got["runs"])
    if found and today["machine"]["cpu"] != BEFORE["machine"]["cpu"]:
        pytest.skip(
            f"{len(found)} numbers differ, on another processor ({today['machine']['cpu']!r}; "
            f"the fixture was made on {BEFORE['machine']['cpu']!r}), where float32 training "
            f"rounds differently (tests/equivalence.py says by how much). First: {found[0]}"
        )
    assert not found, f"{len(found)} numbers differ; the first ones:\n" + "\n".join(found[:10])
