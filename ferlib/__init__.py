"""ferlib: discriminative losses for facial expression recognition in the wild.

A small course library built on Farzaneh & Qi, "Discriminant Distribution-Agnostic
Loss for Facial Expression Recognition in the Wild" (CVPR Workshops 2020).
One idea per module: ``losses``, ``models``, ``data``, ``training``, ``metrics``,
``plots``, ``study`` (the W-MNIST study), ``cli``, ``course`` (the speed switch and the
environment check) and ``checks`` (exercise helpers).
"""

from ferlib.losses import CenterDDALoss, LossParts, center_loss, dda_loss, squared_distances

__all__ = ["CenterDDALoss", "LossParts", "center_loss", "dda_loss", "squared_distances"]
__version__ = "0.2.0"
