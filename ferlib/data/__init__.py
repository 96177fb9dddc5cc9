"""Datasets and loaders, one module per family.

* :mod:`ferlib.data.root`: where datasets live (``default_data_root``);
* :mod:`ferlib.data.mnist`: MNIST and W-MNIST, the course's imbalanced MNIST;
* :mod:`ferlib.data.loaders`: in-memory mini-batches (``TensorLoader``), class counts and
  the fingerprint a checkpoint records.

Every public name is importable from ``ferlib.data`` itself.
"""

from ferlib.data.loaders import TensorLoader, class_counts, fingerprint
from ferlib.data.mnist import (
    MNIST_FILES,
    MNIST_MEAN,
    MNIST_STD,
    WMNIST_COUNTS,
    WMNIST_SEED,
    load_mnist,
    load_wmnist,
    wmnist_indices,
)
from ferlib.data.root import default_data_root

__all__ = [
    "MNIST_FILES",
    "MNIST_MEAN",
    "MNIST_STD",
    "WMNIST_COUNTS",
    "WMNIST_SEED",
    "TensorLoader",
    "class_counts",
    "default_data_root",
    "fingerprint",
    "load_mnist",
    "load_wmnist",
    "wmnist_indices",
]
