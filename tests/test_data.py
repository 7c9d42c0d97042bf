"""Tests for ``sau_core.data``: loaders, the registry, ``available`` and ``clean_subset``.

Every file-based format is exercised on TINY files written here in the real on-disk format
(CIFAR-10 pickled batches, MNIST idx files, GTSRB ppm images and csv files, PNG class folders),
so nothing is downloaded. Tests are grouped kornia-style: smoke, exception, cardinality, feature.
"""

from __future__ import annotations

import codecs
import os
import pickle
import socket
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from sau_core import data
from sau_core.data import (
    DATASETS,
    DatasetInfo,
    DataUnavailable,
    ImageData,
    available,
    clean_subset,
    load_dataset,
)

ALL_NAMES = ("cifar10", "digits", "gtsrb", "imagefolder", "mnist")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails loudly: these tests must never download."""

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _assert_images(x: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert tuple(x.shape) == shape
    assert x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


# ------------------------------------------------------------------------------- file writers
def write_cifar(
    root: Path,
    *,
    per_batch: int = 2,
    n_test: int = 3,
    protocol: int = 2,
    names: list[str] | None = None,
    seed: int = 0,
) -> Path:
    """CIFAR-10's ``cifar-10-batches-py`` with tiny batches, pickled like the official files.

    Image 0 of ``data_batch_1`` is pure red; labels cycle through 0..9.
    """
    rng = np.random.default_rng(seed)
    folder = root / data.CIFAR10_FOLDER
    folder.mkdir(parents=True)
    files = [*data.CIFAR10_TRAIN_FILES, data.CIFAR10_TEST_FILE]
    start = 0
    for f in files:
        n = n_test if f == data.CIFAR10_TEST_FILE else per_batch
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        if f == "data_batch_1":
            x[0] = 0
            x[0, :1024] = 255  # the red plane comes first
        batch = {
            b"batch_label": f"{f} of 6".encode(),
            b"labels": [(start + i) % 10 for i in range(n)],
            b"data": x,
            b"filenames": [f"img_{start + i}.png".encode() for i in range(n)],
        }
        start += n
        with open(folder / f, "wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)
    meta = {
        b"label_names": names if names is not None else list(data.CIFAR10_CLASSES),
        b"num_cases_per_batch": per_batch,
        b"num_vis": 3072,
    }
    with open(folder / data.CIFAR10_META_FILE, "wb") as fh:
        pickle.dump(meta, fh, protocol=protocol)
    return folder


def _py2_cifar_batch(images: np.ndarray, labels: list[int]) -> bytes:
    """A CIFAR batch pickled byte for byte as Python 2 + numpy 1.x wrote the official files:
    protocol 2, ``str`` as SHORT_BINSTRING/BINSTRING, ``numpy.core.multiarray._reconstruct``."""

    def string(b: bytes) -> bytes:
        if len(b) < 256:
            return b"U" + bytes([len(b)]) + b
        return b"T" + struct.pack("<i", len(b)) + b

    n = len(images)
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + string(b"b")
        + b"\x87R(K\x01K"
        + bytes([n])
        + b"M\x00\x0c\x86cnumpy\ndtype\n"
        + string(b"u1")
        + b"K\x00K\x01\x87R(K\x03"
        + string(b"|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
        + string(images.astype(np.uint8).tobytes())
        + b"tb"
    )
    label_list = b"](" + b"".join(b"K" + bytes([c]) for c in labels) + b"e"
    return (
        b"\x80\x02}("
        + string(b"data")
        + array
        + string(b"labels")
        + label_list
        + string(b"batch_label")
        + string(b"training batch 1 of 5")
        + b"u."
    )


def _idx_images(path: Path, images: np.ndarray) -> None:
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def _idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_train: int = 6, n_test: int = 4, seed: int = 0) -> dict:
    """MNIST's four idx files (magic numbers 2051 / 2049, big-endian headers) in MNIST/raw."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        _idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        _idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[prefix] = (images, labels)
    return out


GT_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
GTSRB_TEST_CLASSES = (0, 5, 42, 7, 1)


def _gtsrb_colour(c: int) -> tuple[int, int, int]:
    return (c * 5, 255 - c * 5, 100)


def write_gtsrb(root: Path) -> Path:
    """GTSRB as torchvision expects it: 43 training class folders of .ppm images, each with its
    GT-000NN.csv, the test images in Final_Test/Images and their labels in GT-final_test.csv.

    Class ``c`` images are a solid ``_gtsrb_colour(c)`` of varied sizes; class 0 has 2 images.
    The first test image is pure red.
    """
    base = root / "gtsrb"
    for c in range(43):
        folder = base / "GTSRB" / "Training" / f"{c:05d}"
        folder.mkdir(parents=True)
        rows = [GT_HEADER]
        for k in range(2 if c == 0 else 1):
            w, h = 5 + c % 4, 6 + k
            name = f"00000_{k:05d}.ppm"
            Image.new("RGB", (w, h), _gtsrb_colour(c)).save(folder / name)
            rows.append(f"{name};{w};{h};0;0;{w - 1};{h - 1};{c}")
        (folder / f"GT-{c:05d}.csv").write_text("\n".join(rows) + "\n")
    images = base / "GTSRB" / "Final_Test" / "Images"
    images.mkdir(parents=True)
    rows = [GT_HEADER]
    for i, c in enumerate(GTSRB_TEST_CLASSES):
        w, h = 7 + i, 9
        colour = (255, 0, 0) if i == 0 else _gtsrb_colour(c)
        Image.new("RGB", (w, h), colour).save(images / f"{i:05d}.ppm")
        rows.append(f"{i:05d}.ppm;{w};{h};1;1;{w - 2};{h - 2};{c}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    return base


FOLDER_COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "eel": (0, 0, 255)}


def write_image_folder(root: Path, per_class: int = 10, size: tuple[int, int] = (12, 9)) -> Path:
    """``root/<class>/*.png``: solid red cats, green dogs, blue eels."""
    for name, colour in FOLDER_COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", size, colour).save(root / name / f"{i:03d}.png")
    return root


# ------------------------------------------------------------------------------------ registry
class TestRegistry:
    def test_smoke(self) -> None:
        assert set(ALL_NAMES) <= set(DATASETS)
        assert data.list_datasets() == sorted(DATASETS)

    def test_exception_unknown_name(self) -> None:
        with pytest.raises(ValueError, match="unknown data set 'nope'") as e:
            load_dataset("nope")
        for name in ALL_NAMES:
            assert name in str(e.value)

    def test_exception_available_unknown_name(self) -> None:
        with pytest.raises(ValueError, match="choose from"):
            available("nope")

    def test_feature_available_when_missing(self, tmp_path: Path) -> None:
        assert available("digits", tmp_path)[0]
        for name, path in (
            ("cifar10", tmp_path / "cifar-10-batches-py"),
            ("mnist", tmp_path / "MNIST" / "raw"),
            ("gtsrb", tmp_path / "gtsrb" / "GTSRB" / "Training"),
            ("imagefolder", tmp_path / "mine"),
        ):
            root = tmp_path / "mine" if name == "imagefolder" else tmp_path
            ok, why = available(name, root)
            assert not ok
            assert str(path) in why

    def test_feature_available_when_present(self, tmp_path: Path) -> None:
        write_cifar(tmp_path)
        write_mnist(tmp_path)
        write_gtsrb(tmp_path)
        write_image_folder(tmp_path / "mine")
        for name in ALL_NAMES:
            root = tmp_path / "mine" if name == "imagefolder" else tmp_path
            ok, why = available(name, root)
            assert ok, why

    def test_feature_imagefolder_needs_root_and_classes(self, tmp_path: Path) -> None:
        assert not available("imagefolder", None)[0]
        (tmp_path / "only").mkdir()
        ok, why = available("imagefolder", tmp_path)
        assert not ok and "at least 2" in why

    def test_feature_default_root(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        ok, why = available("cifar10")
        assert not ok
        assert str(tmp_path / "data" / "cifar-10-batches-py") in why


# -------------------------------------------------------------------------------------- digits
class TestDigits:
    def test_smoke(self) -> None:
        split = load_dataset("digits")
        _assert_images(split.train.x, (len(split.train), 1, 8, 8))
        assert split.info.num_classes == 10 and not split.info.natural

    def test_cardinality_total(self) -> None:
        split = load_dataset("digits", test_ratio=0.25)
        assert len(split.train) + len(split.test) == 1797
        assert len(split.test) == 450  # ceil(0.25 * 1797)

    @pytest.mark.parametrize("resolution", [8, 16, 32])
    def test_cardinality_resolution(self, resolution: int) -> None:
        split = load_dataset("digits", resolution=resolution)
        _assert_images(split.train.x, (len(split.train), 1, resolution, resolution))
        _assert_images(split.test.x, (len(split.test), 1, resolution, resolution))
        assert split.info.shape == (1, resolution, resolution)
        assert split.info.params == {"resolution": resolution}

    @pytest.mark.parametrize("resolution", [4, 12, 64])
    def test_exception_resolution(self, resolution: int) -> None:
        with pytest.raises(ValueError, match="resolution"):
            load_dataset("digits", resolution=resolution)

    @pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1])
    def test_exception_test_ratio(self, ratio: float) -> None:
        with pytest.raises(ValueError, match="test_ratio"):
            load_dataset("digits", test_ratio=ratio)

    def test_feature_stratified(self) -> None:
        split = load_dataset("digits", test_ratio=0.25, seed=3)
        total = torch.bincount(torch.cat([split.train.y, split.test.y]), minlength=10)
        test = torch.bincount(split.test.y, minlength=10)
        assert torch.all((test.float() - 0.25 * total.float()).abs() <= 1.0)

    def test_feature_deterministic_per_seed(self) -> None:
        a, b = load_dataset("digits", seed=1), load_dataset("digits", seed=1)
        c = load_dataset("digits", seed=2)
        assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
        assert not torch.equal(a.train.x, c.train.x)

    def test_feature_info_round_trip(self) -> None:
        info = load_dataset("digits", resolution=16).info
        assert DatasetInfo.from_dict(info.to_dict()) == info


# ------------------------------------------------------------------------------------- cifar10
class TestCifar10:
    @pytest.mark.parametrize("protocol", [2, 4, 5])
    def test_smoke(self, tmp_path: Path, protocol: int) -> None:
        write_cifar(tmp_path, protocol=protocol)
        split = load_dataset("cifar10", tmp_path)
        _assert_images(split.train.x, (10, 3, 32, 32))
        _assert_images(split.test.x, (3, 3, 32, 32))
        assert split.train.y.dtype == torch.int64

    def test_cardinality(self, tmp_path: Path) -> None:
        write_cifar(tmp_path, per_batch=3, n_test=4)
        split = load_dataset("cifar10", tmp_path)
        assert len(split.train) == 15 and len(split.test) == 4
        assert split.train.y.tolist() == [i % 10 for i in range(15)]
        assert split.test.y.tolist() == [i % 10 for i in range(15, 19)]

    def test_cardinality_resolution(self, tmp_path: Path) -> None:
        write_cifar(tmp_path)
        split = data.load_cifar10(tmp_path, resolution=16, seed=7)
        _assert_images(split.train.x, (10, 3, 16, 16))
        assert split.info.shape == (3, 16, 16)

    def test_feature_channel_order(self, tmp_path: Path) -> None:
        write_cifar(tmp_path)
        x = load_dataset("cifar10", tmp_path).train.x
        assert torch.all(x[0, 0] == 1.0)
        assert torch.all(x[0, 1:] == 0.0)

    def test_feature_pixel_values(self, tmp_path: Path) -> None:
        write_cifar(tmp_path)
        with open(tmp_path / data.CIFAR10_FOLDER / "test_batch", "rb") as fh:
            raw = pickle.load(fh)[b"data"]  # our own file, written above
        x = load_dataset("cifar10", tmp_path).test.x
        assert torch.equal(
            (x * 255).round().to(torch.uint8).reshape(len(x), -1), torch.from_numpy(raw)
        )

    def test_feature_info(self, tmp_path: Path) -> None:
        names = [f"c{i}" for i in range(10)]
        write_cifar(tmp_path, names=names)
        info = load_dataset("cifar10", tmp_path).info
        assert info.class_names == tuple(names)
        assert info.mean == (0.4914, 0.4822, 0.4465) and info.std == (0.2470, 0.2435, 0.2616)
        assert info.natural and info.num_classes == 10
        assert DatasetInfo.from_dict(info.to_dict()) == info

    def test_feature_python2_pickle(self, tmp_path: Path) -> None:
        folder = write_cifar(tmp_path)
        images = np.random.default_rng(1).integers(0, 256, size=(3, 3072), dtype=np.uint8)
        (folder / "data_batch_1").write_bytes(_py2_cifar_batch(images, [4, 0, 9]))
        split = load_dataset("cifar10", tmp_path)
        assert len(split.train) == 11 and split.train.y[:3].tolist() == [4, 0, 9]
        restored = (split.train.x[:3] * 255).round().to(torch.uint8).reshape(3, -1)
        assert torch.equal(restored, torch.from_numpy(images))

    def test_feature_meta_optional(self, tmp_path: Path) -> None:
        folder = write_cifar(tmp_path)
        (folder / data.CIFAR10_META_FILE).unlink()
        assert load_dataset("cifar10", tmp_path).info.class_names == data.CIFAR10_CLASSES

    def test_exception_missing(self, tmp_path: Path) -> None:
        with pytest.raises(DataUnavailable) as e:
            load_dataset("cifar10", tmp_path)
        msg = str(e.value)
        assert str(tmp_path / "cifar-10-batches-py") in msg
        assert "cifar-10-python.tar.gz" in msg and "download=True" in msg

    def test_exception_one_batch_missing(self, tmp_path: Path) -> None:
        folder = write_cifar(tmp_path)
        (folder / "data_batch_3").unlink()
        with pytest.raises(DataUnavailable, match="data_batch_3"):
            load_dataset("cifar10", tmp_path)

    def test_exception_download_fails(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from torchvision.datasets import utils as tv_utils

        def offline(*args, **kwargs):
            raise URLError("no route to host")

        monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
        with pytest.raises(DataUnavailable, match="no route to host") as e:
            load_dataset("cifar10", tmp_path, download=True)
        assert str(tmp_path / "cifar-10-batches-py") in str(e.value)

    def test_feature_download_then_safe_read(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from torchvision.datasets import utils as tv_utils

        calls = []

        def fake_download(url, download_root, filename=None, md5=None, **kwargs):
            calls.append((url, filename, md5))
            write_cifar(Path(download_root))

        monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
        split = load_dataset("cifar10", tmp_path, download=True)
        assert len(split.train) == 10
        assert calls and calls[0][1] == "cifar-10-python.tar.gz"
        load_dataset("cifar10", tmp_path, download=True)  # present now: no second download
        assert len(calls) == 1

    def test_exception_bad_batch(self, tmp_path: Path) -> None:
        folder = write_cifar(tmp_path)
        with open(folder / "data_batch_2", "wb") as fh:
            pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh, protocol=2)
        with pytest.raises(ValueError, match="3072"):
            load_dataset("cifar10", tmp_path)

    def test_exception_bad_labels(self, tmp_path: Path) -> None:
        folder = write_cifar(tmp_path)
        with open(folder / "data_batch_2", "wb") as fh:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, fh)
        with pytest.raises(ValueError, match="labels"):
            load_dataset("cifar10", tmp_path)

    @pytest.mark.parametrize("resolution", [0, 1000, 2.5, True])
    def test_exception_resolution(self, tmp_path: Path, resolution: object) -> None:
        write_cifar(tmp_path)
        with pytest.raises(ValueError, match="resolution"):
            load_dataset("cifar10", tmp_path, resolution=resolution)

    def test_exception_unknown_kwarg(self, tmp_path: Path) -> None:
        write_cifar(tmp_path)
        with pytest.raises(TypeError):
            load_dataset("cifar10", tmp_path, colour=True)


# ----------------------------------------------------------------------------- pickle security
class _Gadget:
    """Pickles as ``func(*args)``: what a malicious data file would do."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class TestSafeUnpickler:
    @pytest.mark.parametrize("target", ["data_batch_1", "test_batch", "batches.meta"])
    def test_exception_os_system_not_executed(self, tmp_path: Path, target: str) -> None:
        folder = write_cifar(tmp_path / "root")
        marker = tmp_path / "pwned"
        evil = {b"data": _Gadget(os.system, f"touch {marker}"), b"labels": [0]}
        with open(folder / target, "wb") as fh:
            pickle.dump(evil, fh, protocol=2)
        # the refusal reaches the caller as a ValueError naming the file and the global
        with pytest.raises(ValueError, match=f"{target}.*system"):
            load_dataset("cifar10", tmp_path / "root")
        assert not marker.exists()

    @pytest.mark.parametrize("protocol", [0, 2, 4, 5])
    @pytest.mark.parametrize(
        "gadget",
        [
            _Gadget(eval, "__import__('os').getcwd()"),
            _Gadget(__import__, "os"),
            _Gadget(codecs.encode, "abc", "rot13"),
            _Gadget(np.load, "x.npy"),
        ],
        ids=["eval", "import", "codecs-rot13", "numpy-load"],
    )
    def test_exception_other_globals(self, tmp_path: Path, protocol: int, gadget: _Gadget) -> None:
        path = tmp_path / "evil.pkl"
        path.write_bytes(pickle.dumps({"data": gadget}, protocol=protocol))
        with pytest.raises(pickle.UnpicklingError):
            data.safe_pickle_load(path)

    @pytest.mark.parametrize("protocol", [2, 3, 4, 5])
    @pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.int64])
    def test_feature_arrays_round_trip(self, tmp_path: Path, protocol: int, dtype) -> None:
        arr = np.arange(24, dtype=dtype).reshape(2, 3, 4)
        payload = {b"data": arr, "labels": [1, 2], "name": "x", "raw": b"\x00\xff", "n": None}
        path = tmp_path / "ok.pkl"
        path.write_bytes(pickle.dumps(payload, protocol=protocol))
        out = data.safe_pickle_load(path)
        assert np.array_equal(out[b"data"], arr) and out[b"data"].dtype == arr.dtype
        assert out["labels"] == [1, 2] and out["raw"] == b"\x00\xff" and out["n"] is None

    def test_feature_bytes_encoding(self, tmp_path: Path) -> None:
        path = tmp_path / "ok.pkl"
        path.write_bytes(pickle.dumps({b"data": np.zeros(3, np.uint8)}, protocol=4))
        out = data.safe_pickle_load(path, encoding="bytes")
        assert np.array_equal(out[b"data"], np.zeros(3, np.uint8))


# --------------------------------------------------------------------------------------- mnist
class TestMnist:
    def test_smoke(self, tmp_path: Path) -> None:
        write_mnist(tmp_path)
        split = load_dataset("mnist", tmp_path)
        _assert_images(split.train.x, (6, 1, 28, 28))
        _assert_images(split.test.x, (4, 1, 28, 28))
        assert split.train.y.dtype == torch.int64

    def test_cardinality_labels(self, tmp_path: Path) -> None:
        written = write_mnist(tmp_path, n_train=12, n_test=5)
        split = load_dataset("mnist", tmp_path)
        assert split.train.y.tolist() == written["train"][1].tolist()
        assert split.test.y.tolist() == written["t10k"][1].tolist()

    @pytest.mark.parametrize("resolution", [16, 32])
    def test_cardinality_resolution(self, tmp_path: Path, resolution: int) -> None:
        write_mnist(tmp_path)
        split = load_dataset("mnist", tmp_path, resolution=resolution)
        _assert_images(split.train.x, (6, 1, resolution, resolution))
        assert split.info.shape == (1, resolution, resolution)

    def test_feature_pixel_values(self, tmp_path: Path) -> None:
        written = write_mnist(tmp_path)
        x = load_dataset("mnist", tmp_path).train.x
        restored = (x[:, 0] * 255).round().to(torch.uint8)
        assert torch.equal(restored, torch.from_numpy(written["train"][0]))

    def test_feature_info(self, tmp_path: Path) -> None:
        write_mnist(tmp_path)
        info = load_dataset("mnist", tmp_path).info
        assert info.mean == (0.1307,) and info.std == (0.3081,)
        assert not info.natural and info.num_classes == 10

    def test_exception_missing(self, tmp_path: Path) -> None:
        with pytest.raises(DataUnavailable) as e:
            load_dataset("mnist", tmp_path)
        assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in str(e.value)

    def test_exception_download_fails(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from torchvision.datasets import MNIST

        def offline(self):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

        monkeypatch.setattr(MNIST, "download", offline)
        with pytest.raises(DataUnavailable, match="downloading MNIST failed") as e:
            load_dataset("mnist", tmp_path, download=True)
        assert str(tmp_path / "MNIST" / "raw") in str(e.value)

    def test_exception_corrupt_file(self, tmp_path: Path) -> None:
        write_mnist(tmp_path)
        # labels written where images belong: a 1-d idx file instead of a 3-d one
        _idx_labels(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte", np.zeros(6))
        with pytest.raises(ValueError, match="invalid"):
            load_dataset("mnist", tmp_path)


# --------------------------------------------------------------------------------------- gtsrb
class TestGtsrb:
    def test_smoke(self, tmp_path: Path) -> None:
        write_gtsrb(tmp_path)
        split = load_dataset("gtsrb", tmp_path)
        _assert_images(split.train.x, (44, 3, 32, 32))
        _assert_images(split.test.x, (5, 3, 32, 32))
        assert split.info.num_classes == 43 and split.info.natural

    def test_cardinality_labels(self, tmp_path: Path) -> None:
        write_gtsrb(tmp_path)
        split = load_dataset("gtsrb", tmp_path)
        assert split.train.y.tolist() == [0, 0, *range(1, 43)]
        assert split.test.y.tolist() == list(GTSRB_TEST_CLASSES)

    @pytest.mark.parametrize("resolution", [8, 16, 48])
    def test_cardinality_resolution(self, tmp_path: Path, resolution: int) -> None:
        write_gtsrb(tmp_path)
        split = load_dataset("gtsrb", tmp_path, resolution=resolution)
        _assert_images(split.train.x, (44, 3, resolution, resolution))
        _assert_images(split.test.x, (5, 3, resolution, resolution))

    def test_feature_colours_and_channel_order(self, tmp_path: Path) -> None:
        write_gtsrb(tmp_path)
        split = load_dataset("gtsrb", tmp_path, resolution=16)
        for x, label in zip(split.train.x, split.train.y.tolist(), strict=True):
            expected = torch.tensor(_gtsrb_colour(label), dtype=torch.float32) / 255
            assert torch.allclose(x, expected.view(3, 1, 1).expand_as(x), atol=1e-6)
        red = split.test.x[0]
        assert torch.all(red[0] == 1.0) and torch.all(red[1:] == 0.0)

    def test_feature_stats_from_train(self, tmp_path: Path) -> None:
        write_gtsrb(tmp_path)
        split = load_dataset("gtsrb", tmp_path)
        mean = split.train.x.mean(dim=(0, 2, 3))
        assert split.info.mean == tuple(round(float(m), 4) for m in mean)
        assert all(round(s, 4) == s for s in split.info.std)

    def test_exception_missing(self, tmp_path: Path) -> None:
        with pytest.raises(DataUnavailable) as e:
            load_dataset("gtsrb", tmp_path)
        msg = str(e.value)
        assert str(tmp_path / "gtsrb" / "GTSRB" / "Training") in msg
        assert str(tmp_path / "gtsrb" / "GT-final_test.csv") in msg

    def test_exception_class_folder_missing(self, tmp_path: Path) -> None:
        import shutil

        write_gtsrb(tmp_path)
        shutil.rmtree(tmp_path / "gtsrb" / "GTSRB" / "Training" / "00017")
        with pytest.raises(DataUnavailable, match="1 of the 43 class folders"):
            load_dataset("gtsrb", tmp_path)

    def test_exception_download_fails(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from torchvision.datasets import GTSRB

        def offline(self):
            raise URLError("offline")

        monkeypatch.setattr(GTSRB, "download", offline)
        with pytest.raises(DataUnavailable, match="offline"):
            load_dataset("gtsrb", tmp_path, download=True)


# --------------------------------------------------------------------------------- imagefolder
class TestImageFolder:
    def test_smoke(self, tmp_path: Path) -> None:
        write_image_folder(tmp_path)
        split = load_dataset("imagefolder", tmp_path)
        _assert_images(split.train.x, (24, 3, 32, 32))
        _assert_images(split.test.x, (6, 3, 32, 32))
        assert split.info.class_names == ("cat", "dog", "eel")
        assert split.info.num_classes == 3 and split.info.natural

    def test_cardinality_stratified(self, tmp_path: Path) -> None:
        write_image_folder(tmp_path)
        split = load_dataset("imagefolder", tmp_path, test_ratio=0.2)
        assert torch.bincount(split.test.y, minlength=3).tolist() == [2, 2, 2]
        assert torch.bincount(split.train.y, minlength=3).tolist() == [8, 8, 8]

    @pytest.mark.parametrize(("resolution", "channels"), [(8, 1), (16, 3), (40, 3)])
    def test_cardinality_resolution_channels(
        self, tmp_path: Path, resolution: int, channels: int
    ) -> None:
        write_image_folder(tmp_path)
        split = load_dataset("imagefolder", tmp_path, resolution=resolution, channels=channels)
        _assert_images(split.train.x, (24, channels, resolution, resolution))
        assert split.info.shape == (channels, resolution, resolution)
        assert len(split.info.mean) == channels

    def test_cardinality_train_test_folders(self, tmp_path: Path) -> None:
        write_image_folder(tmp_path / "train", per_class=4)
        write_image_folder(tmp_path / "test", per_class=2)
        split = load_dataset("imagefolder", tmp_path)
        assert len(split.train) == 12 and len(split.test) == 6
        assert split.test.y.tolist() == [0, 0, 1, 1, 2, 2]

    def test_feature_deterministic_per_seed(self, tmp_path: Path) -> None:
        write_image_folder(tmp_path)
        for i in range(10):  # make every image distinct, so a different split shows
            Image.new("RGB", (4, 4), (i * 20, 0, 0)).save(tmp_path / "cat" / f"{i:03d}.png")
        a = load_dataset("imagefolder", tmp_path, seed=1)
        b = load_dataset("imagefolder", tmp_path, seed=1)
        c = load_dataset("imagefolder", tmp_path, seed=2)
        assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
        assert not torch.equal(a.train.x, c.train.x)

    def test_feature_colours_and_channel_order(self, tmp_path: Path) -> None:
        write_image_folder(tmp_path)
        split = load_dataset("imagefolder", tmp_path)
        for x, label in zip(split.train.x, split.train.y.tolist(), strict=True):
            channel = label  # cat red, dog green, eel blue
            assert torch.all(x[channel] == 1.0)
            assert torch.all(x[[c for c in range(3) if c != channel]] == 0.0)

    def test_feature_greyscale(self, tmp_path: Path) -> None:
        for name, value in (("black", 0), ("white", 255)):
            (tmp_path / name).mkdir()
            for i in range(5):
                Image.new("RGB", (6, 6), (value,) * 3).save(tmp_path / name / f"{i}.png")
        split = load_dataset("imagefolder", tmp_path, channels=1, resolution=8)
        for x, label in zip(split.train.x, split.train.y.tolist(), strict=True):
            assert torch.all(x == float(label == 1))

    def test_feature_stats_from_train(self, tmp_path: Path) -> None:
        write_image_folder(tmp_path)
        split = load_dataset("imagefolder", tmp_path)
        assert split.info.mean == data.core._stats(split.train.x)[0]
        assert split.info.std == data.core._stats(split.train.x)[1]

    def test_feature_ignores_hidden_and_other_files(self, tmp_path: Path) -> None:
        write_image_folder(tmp_path)
        (tmp_path / ".ipynb_checkpoints").mkdir()
        (tmp_path / "cat" / ".DS_Store").write_bytes(b"\x00junk")
        (tmp_path / "cat" / "._000.png").write_bytes(b"\x00junk")  # macOS resource fork
        (tmp_path / "cat" / "notes.txt").write_text("not an image")
        split = load_dataset("imagefolder", tmp_path)
        assert split.info.class_names == ("cat", "dog", "eel")
        assert len(split.train) + len(split.test) == 30

    def test_exception_no_root(self) -> None:
        with pytest.raises(ValueError, match="needs a root"):
            load_dataset("imagefolder", None)

    def test_exception_missing(self, tmp_path: Path) -> None:
        with pytest.raises(DataUnavailable) as e:
            load_dataset("imagefolder", tmp_path / "absent")
        assert str(tmp_path / "absent") in str(e.value)

    def test_exception_one_class(self, tmp_path: Path) -> None:
        (tmp_path / "cat").mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / "cat" / "a.png")
        with pytest.raises(ValueError, match="at least 2 class"):
            load_dataset("imagefolder", tmp_path)

    def test_exception_empty_class(self, tmp_path: Path) -> None:
        write_image_folder(tmp_path)
        (tmp_path / "fox").mkdir()
        (tmp_path / "fox" / "readme.txt").write_text("no images yet")
        with pytest.raises(ValueError, match="no images for class.*fox"):
            load_dataset("imagefolder", tmp_path)

    def test_exception_classes_differ(self, tmp_path: Path) -> None:
        write_image_folder(tmp_path / "train", per_class=2)
        write_image_folder(tmp_path / "test", per_class=2)
        (tmp_path / "test" / "fox").mkdir()
        with pytest.raises(ValueError, match=r"only in test: \['fox'\]"):
            load_dataset("imagefolder", tmp_path)

    def test_exception_unreadable_image(self, tmp_path: Path) -> None:
        write_image_folder(tmp_path)
        bad = tmp_path / "dog" / "broken.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
        with pytest.raises(ValueError, match="broken.png"):
            load_dataset("imagefolder", tmp_path)

    def test_exception_too_many_pixels(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write_image_folder(tmp_path, size=(12, 9))
        monkeypatch.setattr(data.safe_io, "MAX_IMAGE_PIXELS", 100)  # 12 x 9 = 108 pixels
        with pytest.raises(ValueError, match="more than the limit"):
            load_dataset("imagefolder", tmp_path)

    def test_exception_too_small_to_split(self, tmp_path: Path) -> None:
        write_image_folder(tmp_path, per_class=3)
        (tmp_path / "fox").mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / "fox" / "only.png")
        with pytest.raises(ValueError, match="fox.*fewer than 2"):
            load_dataset("imagefolder", tmp_path)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"channels": 2}, "channels"),
            ({"resolution": 0}, "resolution"),
            ({"test_ratio": 1.0}, "test_ratio"),
        ],
    )
    def test_exception_bad_arguments(self, tmp_path: Path, kwargs: dict, match: str) -> None:
        write_image_folder(tmp_path)
        with pytest.raises(ValueError, match=match):
            load_dataset("imagefolder", tmp_path, **kwargs)


# -------------------------------------------------------------------------------- clean_subset
def _toy(n_per_class: int = 25, classes: int = 4) -> ImageData:
    n = n_per_class * classes
    info = DatasetInfo("toy", classes, (1, 2, 2), (0.5,), (0.5,))
    return ImageData(torch.zeros(n, 1, 2, 2), torch.arange(n) % classes, info)


class TestCleanSubset:
    def test_smoke(self) -> None:
        idx = clean_subset(_toy(), 0.1)
        assert idx.dtype == torch.int64 and idx.ndim == 1

    @pytest.mark.parametrize(("ratio", "count"), [(0.05, 5), (0.1, 10), (0.33, 33), (1.0, 100)])
    def test_cardinality(self, ratio: float, count: int) -> None:
        idx = clean_subset(_toy(), ratio)
        assert len(idx) == count and len(idx.unique()) == count
        assert torch.equal(idx, idx.sort().values)

    def test_cardinality_at_least_one(self) -> None:
        assert len(clean_subset(_toy(), 0.001)) == 1

    def test_feature_deterministic_per_seed(self) -> None:
        train = _toy()
        assert torch.equal(clean_subset(train, 0.2, seed=4), clean_subset(train, 0.2, seed=4))
        assert not torch.equal(clean_subset(train, 0.2, seed=4), clean_subset(train, 0.2, seed=5))

    @pytest.mark.parametrize("balanced", [False, True])
    def test_feature_exclude(self, balanced: bool) -> None:
        exclude = torch.arange(0, 100, 2)  # every even index, say the poisoned ones
        idx = clean_subset(_toy(), 0.2, exclude=exclude, balanced=balanced)
        assert len(idx) == 20
        assert not set(idx.tolist()) & set(exclude.tolist())

    def test_feature_balanced(self) -> None:
        train = _toy()
        idx = clean_subset(train, 0.2, balanced=True)
        assert torch.bincount(train.y[idx], minlength=4).tolist() == [5, 5, 5, 5]
        idx = clean_subset(train, 0.22, balanced=True)  # 22 over 4 classes: 6, 6, 5, 5
        assert sorted(torch.bincount(train.y[idx], minlength=4).tolist()) == [5, 5, 6, 6]

    def test_feature_on_digits(self) -> None:
        train = load_dataset("digits").train
        idx = clean_subset(train, 0.05, balanced=True, seed=0)
        assert len(idx) == round(0.05 * len(train))
        counts = torch.bincount(train.y[idx], minlength=10)
        assert int(counts.max() - counts.min()) <= 1

    @pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5])
    def test_exception_ratio(self, ratio: float) -> None:
        with pytest.raises(ValueError, match="ratio"):
            clean_subset(_toy(), ratio)
