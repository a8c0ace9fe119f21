"""Checkpoints: the trainer's whole state plus the config, written atomically.

A checkpoint holds the model and optimizer state, the batch sampler's permutation, position
and generator state, the global torch RNG state(s) and every metric recorded so far, so a run
killed at any time (Ctrl-C, ``kill``, even ``kill -9``) continues from its last checkpoint with
exactly the metrics an uninterrupted run would have recorded. The file is written to a
temporary name and renamed, so a kill during the write leaves the previous checkpoint intact.
"""
from __future__ import annotations

from pathlib import Path

import torch

from cli import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "CHECKPOINT_NAME", "FORMAT_VERSION"]

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, trainer, config_dict: dict) -> Path:
    """Write ``trainer.state_dict()`` and ``config_dict`` to ``path`` atomically."""
    payload = {"format_version": FORMAT_VERSION, "config": config_dict,
               "device_type": trainer.device.type, "trainer": trainer.state_dict()}
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU).

    Raises ``FileNotFoundError`` or ``ValueError`` with a one-line message.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a nets checkpoint (format {FORMAT_VERSION})")
    return payload
