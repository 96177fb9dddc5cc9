"""The paper's numbers, each in one place: hyper-parameters and published results.

Farzaneh & Qi, "Discriminant Distribution-Agnostic Loss for Facial Expression Recognition
in the Wild", CVPR Workshops 2020. The recipes themselves (epochs, learning rate and its
schedule) live in the profiles that run them: :class:`ferlib.training.TrainConfig`'s
defaults are the W-MNIST recipe of Sec. 4.1, ``ferlib.experiments.fer.PROFILES`` the
RAF-DB and AffectNet recipes of Sec. 4.2.1.
"""

from __future__ import annotations

#: λ, the weight of the center loss in Eq. 6, on W-MNIST (Table 1) and RAF-DB (Sec. 4.2.2).
LAMBDA: float = 0.01
#: α, the centers' learning rate in Eq. 9 (Sec. 4.2.2).
ALPHA: float = 0.5
#: γ, the weight of the DDA loss in Eq. 6: the W-MNIST values of Table 1 ...
GAMMAS_WMNIST: tuple[float, ...] = (1.0, 3.0, 5.0, 7.0)
#: ... and the best values on RAF-DB and AffectNet (Sec. 4.2.3, Fig. 3).
GAMMA_RAFDB: float = 5.0
GAMMA_AFFECTNET: float = 4.0

#: Table 1: MNIST test accuracy (%) of LeNets++ trained on W-MNIST.
PAPER_TABLE1: dict[str, float] = {
    "softmax": 96.78,
    "center": 97.12,
    "dda-1": 97.17,
    "dda-3": 97.17,
    "dda-5": 97.15,
    "dda-7": 97.34,
}

#: Table 2 on RAF-DB (ResNet-18): (accuracy %, average per-class accuracy %).
PAPER_TABLE2: dict[str, tuple[float, float]] = {
    "softmax": (85.56, 77.28),
    "center": (86.25, 77.81),
    "dda": (86.99, 79.71),
}

#: The authors' follow-up (Farzaneh & Qi, "Facial Expression Recognition in the Wild via
#: Deep Attentive Center Loss", WACV 2021), RAF-DB accuracy (%) with a ResNet-18 initialised
#: from face recognition: their softmax and center-loss baselines, and DACL.
DACL_RAFDB: dict[str, float] = {"softmax": 86.54, "center": 87.06, "dacl": 87.78}
