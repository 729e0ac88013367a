"""Offline image datasets with fixed stratified splits.

Both datasets ship with installed packages, so nothing is downloaded: the 8×8 digits come with
scikit-learn, the 28×28 Animal-MNIST silhouettes with the ``animal-mnist`` package (its data file
is read directly and safely; the package's own loader imports TensorFlow and unpickles without
restriction, so it is never imported).

Split sizes (stratified by class, drawn with ``seed``; each split's samples are in increasing
``sample_id`` order, the row index in the source data):

============  =====  =====  =====  ======
dataset       train  val    test   total
============  =====  =====  =====  ======
digits          500    500    797   1,797
animal_mnist  6,000  2,000  2,000  10,000
============  =====  =====  =====  ======

The digits train split is deliberately small so that a LeNet-5 overfits it within a minute on a
CPU (train accuracy reaches 100 % while the validation loss turns upward).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from filterscope.errors import InvalidDataError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2 keeps it under numpy.core
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

Split = Literal["train", "val", "test"]

DIGITS_SPLITS: Mapping[str, int] = {"train": 500, "val": 500, "test": 797}
ANIMAL_MNIST_SPLITS: Mapping[str, int] = {"train": 6000, "val": 2000, "test": 2000}
# Label order of the animal-mnist 0.4 data file: its README lists the ten animals alphabetically
# and the images of labels 0..9 are, in turn, bear, bird, cat, ... zebra silhouettes.
ANIMAL_MNIST_CLASSES: tuple[str, ...] = (
    "bear",
    "bird",
    "cat",
    "cow",
    "dog",
    "elephant",
    "giraffe",
    "horse",
    "sheep",
    "zebra",
)
_ANIMAL_MNIST_FILES = ("animal_data_version_3.gz", "animal_label_version_3.gz")


class ImageDataset(TensorDataset):
    """A labelled image tensor dataset that knows its class names and source sample ids.

    Items are ``(x, y)`` pairs, so it drops into any ``DataLoader`` training loop.

    Parameters
    ----------
    x : torch.Tensor
        Images, float32, shape ``(N, C, H, W)``.
    y : torch.Tensor
        Labels, int64, shape ``(N,)``.
    sample_ids : numpy.ndarray
        int64 ids of the samples in the source data (stable across splits and seeds).
    class_names : sequence of str
        Name of every class, indexed by label.
    name : str
        Dataset name.
    split : str
        Split name.

    Examples
    --------
    >>> from filterscope.data import digits
    >>> val = digits("val", size=8)
    >>> x, y = val[0]
    >>> tuple(x.shape), y.dtype, len(val), val.num_classes
    ((1, 8, 8), torch.int64, 500, 10)
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        sample_ids: np.ndarray,
        class_names: Sequence[str],
        name: str,
        split: str,
    ) -> None:
        super().__init__(x, y)
        self.sample_ids = sample_ids
        self.class_names = tuple(class_names)
        self.name = name
        self.split = split

    @property
    def x(self) -> torch.Tensor:
        """Images, float32 ``(N, C, H, W)``."""
        return self.tensors[0]

    @property
    def y(self) -> torch.Tensor:
        """Labels, int64 ``(N,)``."""
        return self.tensors[1]

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"shape={tuple(self.x.shape[1:])}, classes={self.num_classes})"
        )


def digits(split: Split = "train", size: int = 32, seed: int = 0) -> ImageDataset:
    """scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes) as a torch dataset.

    Pixels (0..16) are scaled to [0, 1], resized bilinearly to ``size × size`` and standardised
    with the mean and standard deviation of the train split's pixels.

    Parameters
    ----------
    split : {"train", "val", "test"}, default="train"
        Which split; sizes 500 / 500 / 797, stratified by class (see the module docstring).
    size : int, default=32
        Output side length; 32 fits :class:`~filterscope.models.LeNet5`, 8 keeps the originals.
    seed : int, default=0
        Seed of the stratified split; the same seed always gives the same split.

    Returns
    -------
    ImageDataset
        x float32 ``(N, 1, size, size)``, y int64, class names ``"0"`` … ``"9"``.

    Examples
    --------
    >>> from filterscope.data import digits
    >>> test = digits("test", size=28)
    >>> tuple(test.x.shape), test.x.dtype
    ((797, 1, 28, 28), torch.float32)
    """
    images, labels = _digits_arrays()
    return _make_split(
        "digits", images, labels, tuple(str(c) for c in range(10)), DIGITS_SPLITS, split, size, seed
    )


def animal_mnist(split: Split = "train", size: int = 28, seed: int = 0) -> ImageDataset:
    """Animal-MNIST: 10,000 28×28 animal silhouettes in 10 balanced classes, as a torch dataset.

    Read from the data file inside the installed ``animal-mnist`` package (install it with
    ``pip install --no-deps animal-mnist==0.4``; its own loader needs TensorFlow, filterscope
    does not). The file is a gzip'd pickle of numpy arrays; it is read with an unpickler that
    only accepts numpy array reconstruction (see :func:`read_numpy_pickle`).

    Parameters
    ----------
    split : {"train", "val", "test"}, default="train"
        Which split; sizes 6,000 / 2,000 / 2,000, stratified by class.
    size : int, default=28
        Output side length (bilinear resize when not 28).
    seed : int, default=0
        Seed of the stratified split.

    Returns
    -------
    ImageDataset
        x float32 ``(N, 1, size, size)`` standardised with the train split's pixel statistics,
        y int64, class names :data:`ANIMAL_MNIST_CLASSES` (bear, bird, cat, cow, dog, elephant,
        giraffe, horse, sheep, zebra).

    Examples
    --------
    >>> from filterscope.data import animal_mnist
    >>> val = animal_mnist("val")
    >>> tuple(val.x.shape), val.class_names[9]
    ((2000, 1, 28, 28), 'zebra')
    """
    images, labels = _animal_mnist_arrays()
    return _make_split(
        "animal_mnist", images, labels, ANIMAL_MNIST_CLASSES, ANIMAL_MNIST_SPLITS, split, size, seed
    )


_DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "digits": digits,
    "animal_mnist": animal_mnist,
}


def loaders(
    name: str,
    batch_size: int = 64,
    *,
    seed: int = 0,
    num_workers: int = 0,
    **dataset_kwargs: Any,
) -> tuple[DataLoader, DataLoader]:
    """Train and validation loaders for a named dataset.

    The train loader reshuffles every epoch from a generator seeded with ``seed`` (so runs
    repeat); the validation loader keeps the split's order.

    Parameters
    ----------
    name : {"digits", "animal_mnist"}
        Dataset name.
    batch_size : int, default=64
        Batch size of both loaders.
    seed : int, default=0
        Seed of the split and of the shuffling.
    num_workers : int, default=0
        ``DataLoader`` worker processes.
    **dataset_kwargs
        Passed to the dataset function (e.g. ``size=28``).

    Returns
    -------
    train, val : DataLoader

    Examples
    --------
    >>> from filterscope.data import loaders
    >>> train, val = loaders("digits", batch_size=100)
    >>> len(train), len(val)
    (5, 5)
    """
    if name not in _DATASETS:
        raise InvalidDataError(f"unknown dataset {name!r}; expected one of {sorted(_DATASETS)}.")
    make = _DATASETS[name]
    train = make("train", seed=seed, **dataset_kwargs)
    val = make("val", seed=seed, **dataset_kwargs)
    generator = torch.Generator().manual_seed(seed)
    return (
        DataLoader(train, batch_size, shuffle=True, generator=generator, num_workers=num_workers),
        DataLoader(val, batch_size, shuffle=False, num_workers=num_workers),
    )


def read_numpy_pickle(path: str | Path) -> np.ndarray:
    """Read one numpy array from a pickle file (gzip'd when the name ends in ``.gz``), safely.

    The unpickler resolves only the three globals numpy needs to rebuild an array
    (``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``,
    ``numpy.ndarray`` and ``numpy.dtype``); any other global (``os.system``, ``builtins.eval``,
    …) is refused before it can run, and arrays of Python objects are rejected.

    Parameters
    ----------
    path : str or Path
        The pickle file.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    InvalidDataError
        When the file references anything but numpy's array reconstruction, is corrupt, or does
        not hold a numeric array.

    Examples
    --------
    >>> import pickle, tempfile, numpy as np
    >>> from filterscope.data import read_numpy_pickle
    >>> with tempfile.NamedTemporaryFile(suffix=".pkl") as f:
    ...     _ = f.write(pickle.dumps(np.arange(3)))
    ...     f.flush()
    ...     read_numpy_pickle(f.name)
    array([0, 1, 2])
    """
    path = Path(path)

    def open_file(p: Path) -> BinaryIO:
        return gzip.open(p, "rb") if p.suffix == ".gz" else p.open("rb")  # type: ignore[return-value]

    try:
        with open_file(path) as f:
            array = _NumpyArrayUnpickler(f, path).load()
    except InvalidDataError:
        raise
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError) as err:
        raise InvalidDataError(
            f"cannot read a numpy array from {path}: {err}. Expected a pickled numpy array "
            "(optionally gzip'd); reinstall the package that ships the file."
        ) from err
    if not isinstance(array, np.ndarray) or array.dtype.hasobject:
        raise InvalidDataError(
            f"{path} does not hold a numeric numpy array (got {type(array).__name__}"
            f"{' of Python objects' if isinstance(array, np.ndarray) else ''})."
        )
    return array


class _NumpyArrayUnpickler(pickle.Unpickler):
    _ALLOWED: Mapping[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise InvalidDataError(
                f"refusing to unpickle {module}.{name} from {self._path}: only numpy arrays may "
                "be loaded (allowed globals: numpy's _reconstruct, ndarray, dtype). The file is "
                "not the expected data file; do not load it with plain pickle."
            ) from None


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    return _readonly(images), _readonly(bunch.target.astype(np.int64))


@functools.cache
def _animal_mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    # find_spec locates the package without executing its __init__, which imports TensorFlow.
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidDataError(
            "the animal-mnist package is not installed; install its data with "
            "`pip install --no-deps animal-mnist==0.4` (--no-deps skips TensorFlow, which "
            "filterscope does not need)."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "Animal_MNIST"
    data_path, label_path = (folder / name for name in _ANIMAL_MNIST_FILES)
    for p in (data_path, label_path):
        if not p.is_file():
            raise InvalidDataError(
                f"animal-mnist is installed but its data file {p} is missing; reinstall it with "
                "`pip install --force-reinstall --no-deps animal-mnist==0.4`."
            )
    images = read_numpy_pickle(data_path)
    labels = read_numpy_pickle(label_path)
    if images.shape != (10_000, 28, 28) or labels.shape != (10_000,):
        raise InvalidDataError(
            f"unexpected animal-mnist arrays: images {images.shape}, labels {labels.shape}; "
            "expected (10000, 28, 28) and (10000,) as in animal-mnist 0.4."
        )
    return _readonly((images / 255.0).astype(np.float32)), _readonly(labels.astype(np.int64))


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _split_indices(
    labels: np.ndarray, sizes: Mapping[str, int], seed: int
) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train, rest = train_test_split(
        index, train_size=sizes["train"], stratify=labels, random_state=seed
    )
    val, test = train_test_split(
        rest, train_size=sizes["val"], stratify=labels[rest], random_state=seed
    )
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _make_split(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    sizes: Mapping[str, int],
    split: str,
    size: int,
    seed: int,
) -> ImageDataset:
    if split not in sizes:
        raise InvalidDataError(
            f"unknown split {split!r} for {name}; expected one of {list(sizes)}."
        )
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InvalidDataError(f"size must be a positive int (pixels per side), got {size!r}.")
    splits = _split_indices(labels, sizes, seed)
    idx = splits[split]
    train_pixels = images[splits["train"]]
    mean, std = float(train_pixels.mean()), float(train_pixels.std())
    x = torch.from_numpy(images[idx].copy()).unsqueeze(1)
    if size != x.shape[-1]:
        # Bilinear weights sum to one, so resizing before standardising equals the reverse.
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - mean) / std
    y = torch.from_numpy(labels[idx].copy())
    return ImageDataset(
        x.contiguous(),
        y,
        sample_ids=idx.astype(np.int64),
        class_names=class_names,
        name=name,
        split=split,
    )
