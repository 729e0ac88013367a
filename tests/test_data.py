"""Offline datasets: shapes, splits, balance, agreement with the source, and the safe reader."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from filterscope.data import (
    ANIMAL_MNIST_CLASSES,
    ANIMAL_MNIST_SPLITS,
    DIGITS_SPLITS,
    animal_mnist,
    digits,
    loaders,
    read_numpy_pickle,
)
from filterscope.data import datasets as datasets_module
from filterscope.errors import InvalidDataError

SPLITS = ("train", "val", "test")


@pytest.mark.parametrize("size", [8, 28, 32])
def test_digits_shapes_and_dtypes(size):
    for split in SPLITS:
        ds = digits(split, size=size)
        n = DIGITS_SPLITS[split]
        assert ds.x.shape == (n, 1, size, size) and ds.x.dtype == torch.float32
        assert ds.y.shape == (n,) and ds.y.dtype == torch.int64
        assert ds.sample_ids.dtype == np.int64 and len(ds.sample_ids) == n
        assert ds.class_names == tuple("0123456789")
        x, y = ds[0]
        assert x.shape == (1, size, size) and int(y) == int(ds.y[0])


def test_digits_splits_are_disjoint_complete_and_match_the_source():
    source = load_digits()
    ids = [digits(s, size=8).sample_ids for s in SPLITS]
    joined = np.concatenate(ids)
    assert len(joined) == len(np.unique(joined)) == len(source.target) == 1797
    train = digits("train", size=8)
    np.testing.assert_array_equal(train.y.numpy(), source.target[train.sample_ids])
    # Undo the standardisation with the train split's statistics, computed here directly.
    raw = source.images[train.sample_ids] / 16.0
    mean, std = raw.mean(), raw.std()
    np.testing.assert_allclose(train.x[:, 0].numpy() * std + mean, raw, atol=1e-5)
    assert abs(float(train.x.mean())) < 1e-4 and abs(float(train.x.std()) - 1) < 1e-3


def test_digits_splits_are_deterministic_and_seeded():
    a, b = digits("val", seed=0, size=8), digits("val", seed=0, size=8)
    np.testing.assert_array_equal(a.sample_ids, b.sample_ids)
    assert torch.equal(a.x, b.x)
    c = digits("val", seed=1, size=8)
    assert not np.array_equal(a.sample_ids, c.sample_ids)


@pytest.mark.parametrize("split", SPLITS)
def test_digits_splits_are_stratified(split):
    target = load_digits().target
    freq = np.bincount(target) / len(target)
    counts = np.bincount(digits(split, size=8).y.numpy(), minlength=10)
    assert np.all(np.abs(counts - freq * DIGITS_SPLITS[split]) <= 1.5)


def test_digits_rejects_bad_arguments():
    with pytest.raises(InvalidDataError, match="unknown split 'training'"):
        digits("training")  # type: ignore[arg-type]
    with pytest.raises(InvalidDataError, match="positive int"):
        digits(size=0)


def test_loaders():
    train, val = loaders("digits", batch_size=100, size=8)
    x, y = next(iter(train))
    assert x.shape == (100, 1, 8, 8) and y.dtype == torch.int64
    # The train loader shuffles reproducibly; the validation loader keeps the split order.
    first = next(iter(loaders("digits", batch_size=100, size=8)[0]))[1]
    assert torch.equal(y, first)
    assert torch.equal(next(iter(val))[1], val.dataset.y[:100])
    with pytest.raises(InvalidDataError, match="unknown dataset 'cifar'"):
        loaders("cifar")


def test_animal_mnist_splits():
    datasets = {s: animal_mnist(s) for s in SPLITS}
    for split, ds in datasets.items():
        n = ANIMAL_MNIST_SPLITS[split]
        assert ds.x.shape == (n, 1, 28, 28) and ds.x.dtype == torch.float32
        assert ds.y.dtype == torch.int64
        assert ds.class_names == ANIMAL_MNIST_CLASSES and ds.class_names[0] == "bear"
        # Ten balanced classes of 1,000 images, so a stratified split is exactly balanced.
        assert np.all(np.bincount(ds.y.numpy(), minlength=10) == n // 10)
        # The package's file stores the classes in blocks of 1,000 rows.
        np.testing.assert_array_equal(ds.y.numpy(), ds.sample_ids // 1000)
    ids = np.concatenate([ds.sample_ids for ds in datasets.values()])
    assert len(np.unique(ids)) == len(ids) == 10_000
    assert abs(float(datasets["train"].x.mean())) < 1e-4
    np.testing.assert_array_equal(animal_mnist("test").sample_ids, datasets["test"].sample_ids)
    assert animal_mnist("val", size=32).x.shape == (2000, 1, 32, 32)


def test_animal_mnist_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(datasets_module.importlib.util, "find_spec", lambda name: None)
    datasets_module._animal_mnist_arrays.cache_clear()
    try:
        with pytest.raises(InvalidDataError, match=r"pip install --no-deps animal-mnist==0\.4"):
            animal_mnist("train")
    finally:
        datasets_module._animal_mnist_arrays.cache_clear()


def test_read_numpy_pickle_roundtrip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "a.gz"
    with gzip.open(path, "wb") as f:
        f.write(pickle.dumps(array, protocol=4))
    out = read_numpy_pickle(path)
    np.testing.assert_array_equal(out, array)
    assert out.dtype == np.uint8


# Hand-written malicious pickles: protocol 0 ("c" GLOBAL opcode) calling os.system, and
# protocol 4 (STACK_GLOBAL) calling builtins.exec. Both would create `marker` if run.
def _evil_pickles(marker):
    command = f"touch {marker}".encode()
    proto0 = b"cos\nsystem\n(S'" + command + b"'\ntR."
    code = f"open({str(marker)!r}, 'w').close()".encode()
    proto4 = b"\x80\x04\x8c\x08builtins\x8c\x04exec\x93\x8c" + bytes([len(code)]) + code + b"\x85R."
    return {"os.system": proto0, "builtins.exec": proto4}


@pytest.mark.parametrize("target", ["os.system", "builtins.exec"])
@pytest.mark.parametrize("gzipped", [False, True])
def test_read_numpy_pickle_refuses_code_execution(tmp_path, target, gzipped):
    marker = tmp_path / "pwned"
    payload = _evil_pickles(marker)[target]
    path = tmp_path / ("evil.gz" if gzipped else "evil.pkl")
    path.write_bytes(gzip.compress(payload) if gzipped else payload)
    with pytest.raises(InvalidDataError, match=f"refusing to unpickle {target}"):
        read_numpy_pickle(path)
    assert not marker.exists()


def test_read_numpy_pickle_rejects_object_arrays_and_garbage(tmp_path):
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps(np.array([1, "a"], dtype=object), protocol=4))
    with pytest.raises(InvalidDataError, match="Python objects"):
        read_numpy_pickle(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(InvalidDataError, match="cannot read a numpy array"):
        read_numpy_pickle(path)


def test_every_public_name_resolves_to_its_defining_module():
    import importlib

    import filterscope.data as data

    # The lazy table and __all__ list the same names, and each lazy name is the very object its
    # module defines (a typo in the table would hand out the wrong function or fail).
    assert sorted(data._LAZY) == sorted(data.__all__)
    for name in data.__all__:
        source = importlib.import_module(data._LAZY[name])
        assert getattr(data, name) is getattr(source, name), name
    assert set(data.__all__) <= set(dir(data))
    with pytest.raises(AttributeError, match="no attribute 'cifar10'"):
        data.cifar10  # noqa: B018
