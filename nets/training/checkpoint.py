"""Checkpoints: the trainer's whole state plus the config, checksummed, written atomically, two kept.

A checkpoint holds the model and optimizer state, the batch sampler's permutation, position
and generator state, the global torch RNG state(s) and every metric recorded so far, so a run
killed at any time (Ctrl-C, ``kill``, even ``kill -9``) continues from its last checkpoint with
exactly the metrics an uninterrupted run would have recorded.

Nothing is lost to a crash or a damaged file:

* the file starts with one line holding the SHA-256 of the payload that follows
  (``sibn-checkpoint sha256=<hex>``), verified on every load: a flipped bit is found, not trained on;
* the one it replaces is first linked as ``checkpoint.prev.pt``, then the new one is written to a
  temporary name and renamed over ``checkpoint.pt``: at every moment ``checkpoint.pt`` is a whole
  checkpoint, the latest or the one before (a kill loses at most the interval in progress);
* :func:`load_run_checkpoint` falls back to ``checkpoint.prev.pt`` when ``checkpoint.pt`` is
  damaged or missing.

Checkpoints written before the checksum line (format 1 without it) still load, unverified.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import torch

from cli import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "load_run_checkpoint", "has_checkpoint", "CorruptCheckpoint",
           "CHECKPOINT_NAME", "PREVIOUS_NAME", "FORMAT_VERSION"]

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_NAME = "checkpoint.prev.pt"
FORMAT_VERSION = 1
MAGIC = b"sibn-checkpoint sha256="


class CorruptCheckpoint(ValueError):
    """A checkpoint whose payload does not match its checksum, or that cannot be read."""


def _previous(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def save_checkpoint(path: str | Path, trainer, config_dict: dict) -> Path:
    """Write ``trainer.state_dict()`` and ``config_dict`` to ``path`` with its checksum, atomically;
    the checkpoint it replaces becomes ``<name>.prev.pt``."""
    path = Path(path)
    payload = {"format_version": FORMAT_VERSION, "config": config_dict,
               "device_type": trainer.device.type, "trainer": trainer.state_dict()}
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    header = MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n"
    if path.exists():          # keep it as the previous one, while it also stays the current one
        link = path.with_name(f".{path.name}.{os.getpid()}.link.tmp")
        link.unlink(missing_ok=True)
        try:
            os.link(path, link)
        except OSError:        # a file system without hard links
            shutil.copyfile(path, link)
        os.replace(link, _previous(path))
    return atomic_write(path, lambda fh: (fh.write(header), fh.write(data)))


def load_checkpoint(path: str | Path) -> dict:
    """Read and verify a checkpoint written by :func:`save_checkpoint` (tensors on the CPU).

    Raises ``FileNotFoundError``, or :class:`CorruptCheckpoint` (a ``ValueError``) with a one-line
    message when the checksum does not match or the file is not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    raw = path.read_bytes()
    if raw.startswith(MAGIC):
        head, _, data = raw.partition(b"\n")
        if hashlib.sha256(data).hexdigest().encode() != head[len(MAGIC):]:
            raise CorruptCheckpoint(f"{path} is damaged: its SHA-256 does not match the one it was written with")
    else:
        data = raw                          # a checkpoint from before the checksum line
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CorruptCheckpoint(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CorruptCheckpoint(f"{path} is not a nets checkpoint (format {FORMAT_VERSION})")
    return payload


def has_checkpoint(run_dir: str | Path) -> bool:
    """True when ``run_dir`` holds a checkpoint (the latest or the previous one) to resume from."""
    return any((Path(run_dir) / name).is_file() for name in (CHECKPOINT_NAME, PREVIOUS_NAME))


def load_run_checkpoint(run_dir: str | Path) -> tuple[dict, str | None]:
    """The newest intact checkpoint of ``run_dir``: ``(payload, note)``.

    ``note`` is None when ``checkpoint.pt`` was intact, else one line saying why the previous
    checkpoint was used. Raises ``FileNotFoundError`` when there is none, :class:`CorruptCheckpoint`
    when every one is damaged.
    """
    run_dir = Path(run_dir)
    latest, previous = run_dir / CHECKPOINT_NAME, run_dir / PREVIOUS_NAME
    if not latest.is_file() and not previous.is_file():
        raise FileNotFoundError(f"no checkpoint in {run_dir} (looked for {CHECKPOINT_NAME} and {PREVIOUS_NAME})")
    try:
        return load_checkpoint(latest), None
    except (FileNotFoundError, CorruptCheckpoint) as exc:
        why = str(exc) if latest.is_file() else f"{latest} is missing"
        try:
            payload = load_checkpoint(previous)
        except FileNotFoundError:
            raise CorruptCheckpoint(f"{why}, and there is no previous checkpoint: start the run again") from None
        except CorruptCheckpoint as prev_exc:
            raise CorruptCheckpoint(f"{why}; {prev_exc}: no intact checkpoint to resume from") from None
    return payload, (f"{why}; resuming from the previous checkpoint, {PREVIOUS_NAME} "
                     f"(iteration {payload['trainer']['iteration']})")
