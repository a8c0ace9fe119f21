"""Image data sets kept whole on the training device.

Every loader returns an :class:`ImageData`: train/test images as one float tensor each (raw
intensities in [0, 1], shape N x C x H x W) and int64 labels, plus the per-channel mean/std
used to normalise a batch (done on the device, after augmentation, as torchvision's
``Normalize`` would). Sources:

* ``digits`` -- scikit-learn's bundled 8x8 digits (1,797 images, 1 channel), bilinearly
  resized in torch to the model's input size and split train/test with a fixed seed;
  normalised with the train split's own mean/std.
* ``cifar10`` / ``cifar100`` -- the standard python-pickle files read from ``data_dir`` (the
  extracted folder or its parent; ``None``: ``$SIBN_DATA_DIR``), or a one-file subset packed by
  ``python -m nets.data pack`` (:mod:`nets.data.pack`, ``data_dir`` = the ``.npz``); normalised
  with the authors' per-channel mean/std (Lobacheva et al., 2021, App.; ``docs/paper_setup.md``).
  Nothing is downloaded at run time; ``python -m nets.data download cifar10 DIR`` fetches the
  official archive once (:mod:`nets.data.download`).
* ``synthetic`` -- class-dependent random patterns, for tests.

A missing or malformed directory raises :class:`DataError`, whose message is one line saying
what to put where, and both ways to get it.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["CIFAR_SETS", "DATA_SHAPES", "NATIVE_SIZE", "TRAIN_IMAGES", "check_image_size", "check_data",
           "cifar_source", "ImageData", "DataError", "load_data", "load_digits", "load_cifar", "make_synthetic",
           "write_fake_cifar", "resolve_data_dir", "subset", "read_cifar_uint8", "CIFAR_MEAN", "CIFAR_STD", "DATA_DIR_ENV"]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
#: environment variable naming the data folder when ``--data-dir`` is not given
DATA_DIR_ENV = "SIBN_DATA_DIR"
#: the python versions of CIFAR-10/100: archive, its published MD5 (on ``CIFAR_URL``), layout, classes
CIFAR_SETS = {
    "cifar10": dict(folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
                    md5="c58f30108f718f92721af3b95e74349a",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    meta="batches.meta", label_key=b"labels", classes=10),
    "cifar100": dict(folder="cifar-100-python", archive="cifar-100-python.tar.gz",
                     md5="eb9058c3a382ffc7106e4002c42a8d85",
                     train=["train"], test=["test"], meta="meta", label_key=b"fine_labels",
                     classes=100),
}


def resolve_data_dir(data_dir=None) -> str | None:
    """``data_dir`` if given, else ``$SIBN_DATA_DIR`` if set and non-empty, else None."""
    if data_dir:
        return str(data_dir)
    return os.environ.get(DATA_DIR_ENV) or None


def cifar_files(name: str) -> list[str]:
    """The files of the extracted python version of ``name`` (train, test, meta)."""
    spec = CIFAR_SETS[name]
    return spec["train"] + spec["test"] + [spec["meta"]]


def cifar_hint(name: str) -> str:
    """How to get ``name``: both ways, in one line (the tail of every CIFAR :class:`DataError`)."""
    spec = CIFAR_SETS[name]
    return (f"get it with `python -m nets.data download {name} DIR` (needs internet), or point "
            f"--data-dir or ${DATA_DIR_ENV} at a folder holding {spec['folder']}/ "
            f"({', '.join(cifar_files(name))}: the python version, {spec['archive']} from "
            f"{CIFAR_URL}, extracted) or at a pack written by `python -m nets.data pack`")


class DataError(RuntimeError):
    """A data set is missing or malformed; ``str(err)`` is a one-line, actionable message."""


@dataclass
class ImageData:
    """Train/test images (float, [0, 1]) and labels, with normalisation constants."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: tuple
    std: tuple
    num_classes: int

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def to(self, device) -> "ImageData":
        """Move the images and labels to ``device`` once (they stay there for the whole run)."""
        mv = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
        return ImageData(self.name, **mv, mean=self.mean, std=self.std, num_classes=self.num_classes)

    def normaliser(self):
        """``(scale, shift)`` of shape 1 x C x 1 x 1 on the data's device: ``x * scale + shift``."""
        dev = self.x_train.device
        std = torch.tensor(self.std, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
        return 1.0 / std, -mean / std

    def summary(self) -> dict:
        return {"name": self.name, "n_train": int(self.x_train.shape[0]),
                "n_test": int(self.x_test.shape[0]), "channels": self.channels,
                "image_size": self.image_size, "num_classes": self.num_classes,
                "mean": list(self.mean), "std": list(self.std)}


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)


def load_digits(image_size: int = 16, test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """scikit-learn's 8x8 digits, resized to ``image_size`` and split with a fixed seed."""
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    x = _resize(x, image_size)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(y)))
    te, tr = perm[:n_test], perm[n_test:]
    mean, std = float(x[tr].mean()), float(x[tr].std())
    return ImageData("digits", x[tr], y[tr], x[te], y[te], (mean,), (std,), 10)


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that only builds dicts, lists, bytes and numpy arrays (CIFAR's contents)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
                ("__builtin__", "object"), ("builtins", "object")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def _read_pickle(path: Path, hint: str) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _SafeUnpickler(fh, encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any failure is a malformed file for the user
        raise DataError(f"cannot read {path} as a CIFAR python pickle ({type(exc).__name__}: "
                        f"{exc}); {hint}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} does not hold a dict; {hint}")
    return obj


def _cifar_arrays(paths: list[Path], label_key: bytes, classes: int, hint: str):
    xs, ys = [], []
    for p in paths:
        d = _read_pickle(p, hint)
        if b"data" not in d or label_key not in d:
            raise DataError(f"{p} lacks the keys b'data' and {label_key!r}; {hint}")
        data = np.asarray(d[b"data"])
        labels = np.asarray(d[label_key], dtype=np.int64).reshape(-1)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{p}: b'data' must be uint8 of shape N x 3072, got {data.dtype} "
                            f"{data.shape}; {hint}")
        if len(labels) != len(data) or (len(labels) and (labels.min() < 0 or labels.max() >= classes)):
            raise DataError(f"{p}: labels must be {len(data)} integers in [0, {classes}); {hint}")
        xs.append(data)
        ys.append(labels)
    x = torch.from_numpy(np.concatenate(xs)).view(-1, 3, 32, 32)
    return x, torch.from_numpy(np.concatenate(ys))


def cifar_source(name: str, data_dir=None) -> tuple[str, Path]:
    """Where CIFAR ``name`` is, without reading it: ``("pack", file)`` or ``("folder", folder)``.
    Raises :class:`DataError` (one line: what is missing and how to get it)."""
    spec, hint = CIFAR_SETS[name], cifar_hint(name)
    data_dir = resolve_data_dir(data_dir)
    if data_dir is None:
        raise DataError(f"{name} needs --data-dir (or ${DATA_DIR_ENV}); {hint}")
    where = Path(data_dir)
    if where.suffix == ".npz" and where.is_file():
        return "pack", where
    if where.is_file():
        raise DataError(f"--data-dir {where} is a file: it expects a folder holding {spec['folder']}/ (or that "
                        "folder itself), or a .npz pack written by `python -m nets.data pack`")
    folder = where if (where / spec["test"][0]).exists() else where / spec["folder"]
    missing = [f for f in cifar_files(name) if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{name} not found in {where} (missing {', '.join(missing)}); {hint}")
    return "folder", folder


def read_cifar_uint8(name: str, data_dir=None):
    """``(x_train, y_train, x_test, y_test)`` of CIFAR-10/100 as stored: uint8 images
    N x 3 x 32 x 32 and int64 labels, from ``data_dir`` (the extracted folder or its parent, python
    format; or a ``.npz`` pack of :mod:`nets.data.pack`); ``None``: ``$SIBN_DATA_DIR``."""
    spec, hint = CIFAR_SETS[name], cifar_hint(name)
    kind, folder = cifar_source(name, data_dir)
    if kind == "pack":
        from nets.data.pack import read_pack

        return read_pack(folder, name)
    _read_pickle(folder / spec["meta"], hint)
    x_tr, y_tr = _cifar_arrays([folder / f for f in spec["train"]], spec["label_key"],
                               spec["classes"], hint)
    x_te, y_te = _cifar_arrays([folder / f for f in spec["test"]], spec["label_key"],
                               spec["classes"], hint)
    return x_tr, y_tr, x_te, y_te


def load_cifar(name: str, data_dir=None, image_size: int = 32) -> ImageData:
    """CIFAR-10/100 (:func:`read_cifar_uint8`) as an :class:`ImageData`, intensities / 255."""
    x_tr, y_tr, x_te, y_te = read_cifar_uint8(name, data_dir)
    x_tr = _resize(x_tr.float().div_(255), image_size)
    x_te = _resize(x_te.float().div_(255), image_size)
    return ImageData(name, x_tr, y_tr, x_te, y_te, CIFAR_MEAN, CIFAR_STD, CIFAR_SETS[name]["classes"])


def write_fake_cifar(root, name: str = "cifar10", n_train: int = 100, n_test: int = 50,
                     seed: int = 0) -> Path:
    """Write a tiny random data set in the exact CIFAR python-pickle layout (for tests and for
    checking a command end-to-end without the real data). Returns the extracted folder."""
    spec = CIFAR_SETS[name]
    folder = Path(root) / spec["folder"]
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_files = len(spec["train"])
    sizes = [n_train // n_files + (i < n_train % n_files) for i in range(n_files)] + [n_test]
    for fname, n in zip(spec["train"] + spec["test"], sizes):
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             spec["label_key"]: rng.integers(0, spec["classes"], n).tolist(), b"batch_label": b"fake"}
        with open(folder / fname, "wb") as fh:
            pickle.dump(d, fh, protocol=2)
    with open(folder / spec["meta"], "wb") as fh:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(spec["classes"])]}, fh, protocol=2)
    return folder


def make_synthetic(image_size: int = 8, channels: int = 3, num_classes: int = 10,
                   n_train: int = 512, n_test: int = 256, seed: int = 0) -> ImageData:
    """Learnable toy images: a fixed random template per class plus noise, clipped to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, channels, image_size, image_size, generator=g)

    def draw(n):
        y = torch.randint(num_classes, (n,), generator=g)
        x = 0.6 * templates[y] + 0.4 * torch.rand(n, channels, image_size, image_size, generator=g)
        return x.clamp_(0, 1), y

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    mean = tuple(float(v) for v in x_tr.mean(dim=(0, 2, 3)))
    std = tuple(float(v) for v in x_tr.std(dim=(0, 2, 3)))
    return ImageData("synthetic", x_tr, y_tr, x_te, y_te, mean, std, num_classes)


def subset(data: ImageData, n_train: int = 0, n_test: int = 0) -> ImageData:
    """The first ``n_train`` training and ``n_test`` test images of ``data`` (0: all)."""
    tr, te = slice(0, n_train or None), slice(0, n_test or None)
    return ImageData(data.name, data.x_train[tr], data.y_train[tr], data.x_test[te], data.y_test[te],
                     data.mean, data.std, data.num_classes)


#: images and channels of each data set as loaded (all of it is resized before any subset is taken)
DATA_SHAPES = {"digits": (1797, 1), "cifar10": (60000, 3), "cifar100": (60000, 3), "synthetic": (768, 3)}
#: native image size of each data set
NATIVE_SIZE = {"digits": 8, "cifar10": 32, "cifar100": 32, "synthetic": 8}


def check_image_size(dataset: str, image_size: int) -> None:
    """Refuse (``DataError``, one line) an image size whose resized float32 images cannot fit in the
    available memory, before anything is loaded."""
    from cli.resources import check_memory

    n, channels = DATA_SHAPES[dataset]
    try:
        check_memory(4.0 * n * channels * image_size ** 2,
                     f"{dataset} at {image_size}x{image_size} ({n:,} images x {channels} channel(s), float32)",
                     f"use a smaller --image-size (native: {NATIVE_SIZE[dataset]})")
    except MemoryError as exc:
        raise DataError(str(exc)) from None


#: training images of each data set (a pack's own count is known only once it is read)
TRAIN_IMAGES = {"digits": 1797 - round(0.2 * 1797), "cifar10": 50000, "cifar100": 50000, "synthetic": 512}


def _check_batch(name: str, n_train: int, batch_size: int) -> None:
    if n_train < batch_size:
        raise DataError(f"{name} has {n_train} training images, fewer than one batch of {batch_size}; "
                        "lower --batch-size")


def check_data(config) -> None:
    """All that can be checked of the data a :class:`nets.TrainConfig` asks for without loading
    it (a command calls it before it makes any folder): the image size fits in memory, CIFAR is
    where ``data_dir`` says, one batch fits in the training set. Raises :class:`DataError`."""
    if config.image_size is not None:
        check_image_size(config.dataset, config.image_size)
    pack = False
    if config.dataset in CIFAR_SETS:
        pack = cifar_source(config.dataset, config.data_dir)[0] == "pack"
    if not pack:
        n = TRAIN_IMAGES[config.dataset]
        _check_batch(config.dataset, min(n, config.train_subset or n), config.batch_size)


def load_data(config) -> ImageData:
    """The data set a :class:`nets.TrainConfig` asks for (on the CPU; move it with ``.to``),
    after :func:`check_data`."""
    check_data(config)
    size = config.image_size
    if config.dataset == "digits":
        data = load_digits(size or 16, seed=config.data_seed)
    elif config.dataset in CIFAR_SETS:
        data = load_cifar(config.dataset, config.data_dir, size or 32)
    else:
        data = make_synthetic(size or 8, seed=config.data_seed)
    data = subset(data, config.train_subset, getattr(config, "test_subset", 0))
    _check_batch(data.name, data.x_train.shape[0], config.batch_size)
    return data
