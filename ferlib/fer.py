"""The FER experiment under its pre-issue-16 import path: ``from ferlib.fer import ...``.

Notebooks handed out before the experiments became :mod:`ferlib.experiments` (and student
submissions made from them) import from here; this module only re-exports. New code
imports from :mod:`ferlib.experiments.fer` and :mod:`ferlib.experiments.fer_data`.
"""

from ferlib.experiments.fer import (
    CROPS,
    DACL_RAFDB,
    DATASETS,
    LOSSES,
    PAPER_TABLE2,
    PROFILES,
    STANDIN_BANNER,
    STANDIN_LABEL,
    FERProfile,
    find_rafdb,
    format_table,
    load_data,
    load_test_outputs,
    run_fer,
    run_name,
    save_test_outputs,
    train_config,
    write_table,
)

__all__ = [
    "CROPS",
    "DACL_RAFDB",
    "DATASETS",
    "LOSSES",
    "PAPER_TABLE2",
    "PROFILES",
    "STANDIN_BANNER",
    "STANDIN_LABEL",
    "FERProfile",
    "find_rafdb",
    "format_table",
    "load_data",
    "load_test_outputs",
    "run_fer",
    "run_name",
    "save_test_outputs",
    "train_config",
    "write_table",
]
