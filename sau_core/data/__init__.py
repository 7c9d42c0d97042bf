"""Data sets as resident tensors in [0, 1], and the defender's clean subset.

Every loader returns a :class:`Split` of two :class:`ImageData` (train, test) sharing one
:class:`DatasetInfo`. Registered data sets live in :data:`DATASETS` (:mod:`.registry`); adding one
is one module and one entry.

- ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 images, no network),
  optionally upsampled (``resolution`` 8, 16 or 32), with a seeded stratified split.
- ``cifar10``, ``gtsrb``, ``mnist``: the official files, from a data root (default ``data/``);
  ``download=True`` fetches them through torchvision when online.
- ``imagefolder``: a user's own images, one sub-folder per class.

:func:`available` says, without loading anything, whether a data set's files are present and,
when not, where they must go. Untrusted files are read defensively (:mod:`.safe_io`): CIFAR-10's
pickles with a restricted unpickler that only rebuilds numpy arrays, user images with a
pixel-count limit.
"""

from .cifar10 import (
    CIFAR10_ARCHIVE,
    CIFAR10_CLASSES,
    CIFAR10_FOLDER,
    CIFAR10_MEAN,
    CIFAR10_META_FILE,
    CIFAR10_STD,
    CIFAR10_TEST_FILE,
    CIFAR10_TRAIN_FILES,
    load_cifar10,
)
from .core import DatasetInfo, DataUnavailable, ImageData, Split, clean_subset, resize, with_info
from .digits import DIGITS_RESOLUTIONS, load_digits
from .gtsrb import GTSRB_CLASSES, load_gtsrb
from .imagefolder import load_imagefolder
from .mnist import MNIST_MEAN, MNIST_RAW_FILES, MNIST_STD, load_mnist
from .registry import (
    DATASETS,
    DataSpec,
    Loader,
    available,
    dataset_options,
    list_datasets,
    load_dataset,
)
from .safe_io import (
    DEFAULT_ROOT,
    IMAGE_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    MAX_RESOLUTION,
    SafeUnpickler,
    safe_pickle_load,
)

__all__ = [
    "CIFAR10_ARCHIVE",
    "CIFAR10_CLASSES",
    "CIFAR10_FOLDER",
    "CIFAR10_MEAN",
    "CIFAR10_META_FILE",
    "CIFAR10_STD",
    "CIFAR10_TEST_FILE",
    "CIFAR10_TRAIN_FILES",
    "DATASETS",
    "DEFAULT_ROOT",
    "DIGITS_RESOLUTIONS",
    "DataSpec",
    "DataUnavailable",
    "DatasetInfo",
    "GTSRB_CLASSES",
    "IMAGE_EXTENSIONS",
    "ImageData",
    "Loader",
    "MAX_IMAGE_PIXELS",
    "MAX_RESOLUTION",
    "MNIST_MEAN",
    "MNIST_RAW_FILES",
    "MNIST_STD",
    "SafeUnpickler",
    "Split",
    "available",
    "clean_subset",
    "dataset_options",
    "list_datasets",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_gtsrb",
    "load_imagefolder",
    "load_mnist",
    "resize",
    "safe_pickle_load",
    "with_info",
]
