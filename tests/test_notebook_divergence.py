"""Notebook 05 survives a diverged DDA run: recorded, shown in Table 2, and the notebook goes on.

The full profile runs the paper's recipe (the paper's scaling, no clipping, float16 autocast),
which notebook 04 found can diverge. This test forces that outcome in the quick profile: a
cell inserted after the imports makes the γ = 5 DDA run stop as diverged at its first batch
(``max_loss`` far below any real loss), and the notebook must still run to its last cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_rafdb_training.ipynb"

FORCE_DIVERGENCE = """
import dataclasses

import ferlib.experiments.fer as _fer
from ferlib.paper import GAMMA_RAFDB

_train_config = _fer.train_config


def _diverging(prof, loss, *args, **kwargs):
    config = _train_config(prof, loss, *args, **kwargs)
    if loss == "dda" and config.gamma == GAMMA_RAFDB:
        return dataclasses.replace(config, max_loss=1e-3)  # every batch loss is above this
    return config


_fer.train_config = _diverging
"""


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Cell is missing an id field")
def test_a_diverged_dda_run_is_recorded_and_table_2_still_appears(tmp_path, monkeypatch):
    monkeypatch.setenv("FERLIB_PROFILE", "quick")
    monkeypatch.setenv("FERLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    imports = next(
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and "import ferlib.plots" in c.source
    )
    nb.cells.insert(imports + 1, nbformat.v4.new_code_cell(FORCE_DIVERGENCE))
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError if any cell fails

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "the notebook stopped before its end"
    texts = [_text(c) for c in code]
    assert any("dda diverged:" in t for t in texts), "the divergence is not reported"
    table = next(t for t in texts if t.startswith("Table 2"))
    dda_row = next(line for line in table.splitlines() if line.startswith("dda "))
    assert "diverged" in dda_row and "nan" not in table.lower()
    softmax_row = next(line for line in table.splitlines() if line.startswith("softmax"))
    assert "diverged" not in softmax_row
    assert any("γ diverged (recorded, left out of the curve): [5.0]" in t for t in texts)
    # the run's record says so on disk too, without accuracies
    record = json.loads(
        (tmp_path / "runs" / "05-standin-quick" / "quick-dda-5-paper-seed0.json").read_text()
    )
    assert record["status"] == "diverged" and "accuracy" not in record
