"""The W-MNIST experiments under their pre-issue-16 import path: ``from ferlib.study import ...``.

Notebooks handed out before the experiments became :mod:`ferlib.experiments` (and student
submissions made from them) import from here; this module only re-exports. New code
imports from :mod:`ferlib.experiments.wmnist`, ``.table1``, ``.stability`` and ``.scale``.
"""

from ferlib.data import StreamLoader
from ferlib.experiments.scale import (
    SCALE_EPOCH_SIZES,
    SCALE_EPOCHS,
    SCALE_LOSSES,
    SCALE_SIZES,
    run_scale,
    scale_key,
    scale_plan,
)
from ferlib.experiments.scale_report import (
    SCALE_ARMS,
    format_scale,
    merge_scale,
    plot_scale,
    table_seconds,
    write_scale,
)
from ferlib.experiments.stability import (
    STABILITY_VARIANTS,
    Variant,
    format_stability,
    plot_stability,
    run_stability,
)
from ferlib.experiments.table1 import checkpoint_name, format_table, run_study, write_results
from ferlib.experiments.wmnist import (
    PAPER_TABLE1,
    PROFILES,
    RUNS,
    StudyProfile,
    load_study_data,
    run_config,
)

__all__ = [
    "PAPER_TABLE1",
    "PROFILES",
    "RUNS",
    "SCALE_ARMS",
    "SCALE_EPOCHS",
    "SCALE_EPOCH_SIZES",
    "SCALE_LOSSES",
    "SCALE_SIZES",
    "STABILITY_VARIANTS",
    "StreamLoader",
    "StudyProfile",
    "Variant",
    "checkpoint_name",
    "format_scale",
    "format_stability",
    "format_table",
    "load_study_data",
    "merge_scale",
    "plot_scale",
    "plot_stability",
    "run_config",
    "run_scale",
    "run_stability",
    "run_study",
    "scale_key",
    "scale_plan",
    "table_seconds",
    "write_results",
    "write_scale",
]
