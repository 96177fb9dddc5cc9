"""ferlib: discriminative losses for facial expression recognition in the wild.

A small course library built on Farzaneh & Qi, "Discriminant Distribution-Agnostic
Loss for Facial Expression Recognition in the Wild" (CVPR Workshops 2020).
The imports run one way, from the notebooks down:

* ``experiments``: one module per experiment (``table1``, ``stability``, ``scale``, ``fer``),
  each a grid of runs, its scores, its table and its figure; a profile is the data settings
  plus one ``TrainConfig``;
* ``runner``: one run of any experiment (seed, build, train, score, record, write);
* ``training``: the one loop (Algorithm 1) and ``TrainConfig``, where every default lives;
* ``losses``, ``models``, ``data``, ``metrics``, ``plots``, ``runtime``; ``paper``: the
  paper's numbers, each once.

Beside them: ``cli`` and ``commands`` (``python -m ferlib``), ``classroom`` (student edition
and grader), ``course`` (the speed switch, the environment check), ``checks`` (exercise
helpers); ``study`` and ``fer`` keep the experiments' old import paths.
"""

from ferlib.losses import CenterDDALoss, LossParts, center_loss, dda_loss, squared_distances

__all__ = ["CenterDDALoss", "LossParts", "center_loss", "dda_loss", "squared_distances"]
__version__ = "0.2.0"
