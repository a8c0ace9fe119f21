"""One-file subsets of CIFAR: ``python -m nets.data pack``.

A pack is an ``.npz`` holding the first ``n_train`` training and ``n_test`` test images of a
CIFAR data set exactly as stored (uint8, N x 3 x 32 x 32, 3,072 bytes per image) and their labels,
so that training on the pack is training on ``--train-subset n_train --test-subset n_test`` of
the full data, bit for bit. It is small enough to carry to a machine without the data set
(15,000 + 1,000 images: 47 MiB) and loads where a data folder would: ``--data-dir PACK.npz``
(:func:`nets.data.read_cifar_uint8`). Written atomically; refused if larger than ``max_mib``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cli import atomic_write
from nets.data import CIFAR_SETS, DataError, read_cifar_uint8

__all__ = ["write_pack", "read_pack", "FORMAT_VERSION", "DEFAULT_MAX_MIB", "IMAGE_BYTES"]

FORMAT_VERSION = 1
DEFAULT_MAX_MIB = 50.0
IMAGE_BYTES = 3 * 32 * 32
_KEYS = ("format_version", "dataset", "x_train", "y_train", "x_test", "y_test")


def write_pack(name: str, data_dir, out, n_train: int, n_test: int, *,
               max_mib: float = DEFAULT_MAX_MIB) -> dict:
    """Pack the first ``n_train`` / ``n_test`` images of ``name`` from ``data_dir`` into ``out``.

    Raises :class:`DataError` (one line) when the data are missing, a count exceeds what the
    source holds, or the compressed file would exceed ``max_mib`` MiB (nothing is written then).
    Returns a summary: counts, per-class counts of the training part, file size in bytes.
    """
    if n_train < 1 or n_test < 0:
        raise DataError(f"need --train >= 1 and --test >= 0 images, got {n_train} and {n_test}")
    raw_mib = (n_train + n_test) * IMAGE_BYTES / 2**20
    if raw_mib > 2 * max_mib:      # CIFAR pixels compress by ~10 %, never by half: fail before reading
        raise DataError(f"{n_train + n_test} images are {raw_mib:.1f} MiB of pixels, more than the "
                        f"{max_mib:g} MiB limit; pack fewer (about {int(max_mib * 2**20 / IMAGE_BYTES)} fit)")
    x_tr, y_tr, x_te, y_te = read_cifar_uint8(name, data_dir)
    for what, n, have in (("--train", n_train, len(y_tr)), ("--test", n_test, len(y_te))):
        if n > have:
            raise DataError(f"{what} {n} exceeds the {have} images of {name} in {data_dir}")
    arrays = {"format_version": np.array(FORMAT_VERSION), "dataset": np.array(name),
              "x_train": x_tr[:n_train].numpy(), "y_train": y_tr[:n_train].numpy().astype(np.uint8),
              "x_test": x_te[:n_test].numpy(), "y_test": y_te[:n_test].numpy().astype(np.uint8)}
    limit = int(max_mib * 2**20)

    def write(fh):
        np.savez_compressed(fh, **arrays)
        if fh.tell() > limit:
            raise DataError(f"the pack would be {fh.tell() / 2**20:.1f} MiB, over the {max_mib:g} MiB "
                            f"limit; pack fewer images")

    path = atomic_write(Path(out), write)
    counts = np.bincount(arrays["y_train"], minlength=CIFAR_SETS[name]["classes"])
    return {"path": str(path), "dataset": name, "n_train": n_train, "n_test": n_test,
            "bytes": path.stat().st_size, "train_per_class": counts.tolist()}


def read_pack(path, name: str):
    """``(x_train, y_train, x_test, y_test)`` from a pack (uint8 images, int64 labels), checked."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            got = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - any failure is a malformed file for the user
        raise DataError(f"cannot read {path} as a pack ({type(exc).__name__}: {exc}); write one with "
                        f"`python -m nets.data pack`") from None
    missing = [k for k in _KEYS if k not in got]
    if missing or int(got["format_version"]) != FORMAT_VERSION:
        raise DataError(f"{path} is not a pack of format {FORMAT_VERSION} (missing {', '.join(missing) or 'nothing'});"
                        f" write one with `python -m nets.data pack`")
    if str(got["dataset"]) != name:
        raise DataError(f"{path} packs {got['dataset']}, not {name}: pass --dataset {got['dataset']}")
    out = []
    for part in ("train", "test"):
        x, y = got[f"x_{part}"], got[f"y_{part}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 32, 32) or len(y) != len(x) or (
                len(y) and int(y.max()) >= CIFAR_SETS[name]["classes"]):
            raise DataError(f"{path}: x_{part}/y_{part} must be uint8 N x 3 x 32 x 32 images and N labels "
                            f"below {CIFAR_SETS[name]['classes']}; write the pack again")
        out += [torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))]
    return tuple(out)
