"""Datasets and loaders, one module per family.

* :mod:`ferlib.data.root`: where datasets live (``default_data_root``);
* :mod:`ferlib.data.mnist`: MNIST and W-MNIST, the course's imbalanced MNIST;
* :mod:`ferlib.data.loaders`: in-memory mini-batches (``TensorLoader``; ``StreamLoader`` cuts
  its passes into epochs of a fixed number of steps), class counts and the fingerprint a
  checkpoint records;
* :mod:`ferlib.data.images`: decoding image files, with errors that name the file;
* :mod:`ferlib.data.rafdb`, :mod:`ferlib.data.affectnet`, :mod:`ferlib.data.fer2013`: the
  facial-expression datasets, read exactly as users receive them;
* :mod:`ferlib.data.augment`: the paper's crops and normalisation on batches already on the
  training device;
* :mod:`ferlib.data.synthetic`: a synthetic stand-in for RAF-DB (drawn faces in RAF-DB's
  layout and class imbalance), for users without the licensed data;
* :mod:`ferlib.data.cache`, :mod:`ferlib.data.device`: a dataset decoded once into a cached
  uint8 tensor, and loaders that keep batches on the training device (or stream a dataset
  too large for memory through a DataLoader) and augment them there.

Every public name is importable from ``ferlib.data`` itself.
"""

from ferlib.data.affectnet import AFFECTNET_CLASSES, AffectNet
from ferlib.data.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RAFDB_MEAN,
    RAFDB_STD,
    center_crop,
    crop_offsets,
    normalize,
    random_five_crop_flip,
    to_rgb,
)
from ferlib.data.cache import decode_dataset
from ferlib.data.device import DeviceAugmentLoader, DeviceLoader, stream_loader
from ferlib.data.fer2013 import FER2013, FER2013_CLASSES, FERPLUS_CLASSES
from ferlib.data.images import CorruptImageError, DatasetNotFoundError
from ferlib.data.loaders import StreamLoader, TensorLoader, class_counts, fingerprint
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
from ferlib.data.rafdb import RAFDB, RAFDB_CLASSES, RAFDB_COUNTS
from ferlib.data.root import default_data_root
from ferlib.data.synthetic import StandinExistsError, make_standin, standin_counts

__all__ = [
    "AFFECTNET_CLASSES",
    "FER2013",
    "FER2013_CLASSES",
    "FERPLUS_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MNIST_FILES",
    "MNIST_MEAN",
    "MNIST_STD",
    "RAFDB",
    "RAFDB_CLASSES",
    "RAFDB_COUNTS",
    "RAFDB_MEAN",
    "RAFDB_STD",
    "WMNIST_COUNTS",
    "WMNIST_SEED",
    "AffectNet",
    "CorruptImageError",
    "DatasetNotFoundError",
    "DeviceAugmentLoader",
    "DeviceLoader",
    "StandinExistsError",
    "StreamLoader",
    "TensorLoader",
    "center_crop",
    "class_counts",
    "crop_offsets",
    "decode_dataset",
    "default_data_root",
    "fingerprint",
    "load_mnist",
    "load_wmnist",
    "make_standin",
    "normalize",
    "random_five_crop_flip",
    "standin_counts",
    "stream_loader",
    "to_rgb",
    "wmnist_indices",
]
