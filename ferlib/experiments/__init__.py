"""The course's experiments, one module each. Every run of every experiment goes through
:func:`ferlib.runner.run` (seed, build, train with a checkpoint, score, record, write);
a module holds only what is its own: its grid of runs, its scores, its table, its figure.

* :mod:`~ferlib.experiments.wmnist`: W-MNIST profiles (data settings + a ``TrainConfig``),
  data, the runs of Table 1 and the scores the three W-MNIST experiments share;
* :mod:`~ferlib.experiments.table1`: ``run_study``, Table 1 and Fig. 2 (Sec. 4.1);
* :mod:`~ferlib.experiments.stability`: ``run_stability``, which recipes train DDA;
* :mod:`~ferlib.experiments.scale`: ``run_scale``, accuracy against the size of W-MNIST,
  and :mod:`~ferlib.experiments.scale_report`, its files and figure;
* :mod:`~ferlib.experiments.fer`: ``run_fer``, ResNet-18 on RAF-DB, AffectNet, FER2013 or
  the stand-in (Sec. 4.2, Table 2), and :mod:`~ferlib.experiments.fer_data`, its loaders;
* :mod:`~ferlib.experiments.results`: what all of them write (JSON, CSV, figures, profiles).
"""
