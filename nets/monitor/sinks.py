"""Where the monitor's records go as they are made: a CSV on disk, TensorBoard, or anything else.

A sink is any object with ``write(record, layers)`` (and optionally ``destabilisation(iteration)``
and ``close()``): :class:`nets.SIMonitor` calls it once per recorded step with the
:class:`nets.monitor.metrics.StepRecord` and ``layers = {quantity: {tensor name: value}}`` for
``norm``, ``grad_norm`` and ``angular_update`` of every SI tensor. Each sink is a thin adapter over
those same records:

* :class:`CSVStream` -- appends every record to ``records.csv`` in the monitor's ``out`` folder,
  flushed to disk at least every ``flush_every`` records or ``flush_seconds`` seconds, so a crash
  (even SIGKILL) loses at most that much; :meth:`nets.SIMonitor.close` then writes the final files;
* :class:`TensorBoardSink` -- scalars through ``torch.utils.tensorboard.SummaryWriter``
  (``pip install -e '.[tensorboard]'``): ``si/<quantity>`` for the SI group and
  ``si_layers/<quantity>/<tensor>`` per SI tensor, at the optimizer step as global step.
"""
from __future__ import annotations

import time
from pathlib import Path

from nets.monitor.metrics import STEP_COLUMNS

__all__ = ["CSVStream", "TensorBoardSink", "LAYER_QUANTITIES"]

#: per-tensor quantities handed to sinks
LAYER_QUANTITIES = ("norm", "grad_norm", "angular_update")


class CSVStream:
    """Append records to ``path`` (a CSV with :data:`STEP_COLUMNS` and per-tensor columns)."""

    def __init__(self, path: str | Path, names: list[str], *, flush_every: int = 100, flush_seconds: float = 30.0):
        if int(flush_every) < 1 or not flush_seconds > 0:
            raise ValueError(f"flush_every must be >= 1 and flush_seconds > 0, got {flush_every!r}, {flush_seconds!r}")
        self.path, self.names = Path(path), list(names)
        self.flush_every, self.flush_seconds = int(flush_every), float(flush_seconds)
        header = list(STEP_COLUMNS) + [f"{q}:{n}" for q in LAYER_QUANTITIES for n in self.names]
        self._fh = open(self.path, "w", encoding="utf-8", newline="")
        self._fh.write(",".join(header) + "\n")
        self._fh.flush()
        self._unflushed, self._last = 0, time.monotonic()

    def write(self, record, layers: dict) -> None:
        values = list(record) + [layers[q][n] for q in LAYER_QUANTITIES for n in self.names]
        self._fh.write(",".join(repr(float(v)) if isinstance(v, float) else str(v) for v in values) + "\n")
        self._unflushed += 1
        if self._unflushed >= self.flush_every or time.monotonic() - self._last >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        self._fh.flush()
        self._unflushed, self._last = 0, time.monotonic()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class TensorBoardSink:
    """Scalars to TensorBoard: give a ``SummaryWriter`` (kept open) or a log folder (closed with the sink)."""

    def __init__(self, writer_or_logdir, *, prefix: str = "si"):
        if isinstance(writer_or_logdir, (str, Path)):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:            # tensorboard itself is missing
                raise ImportError("TensorBoardSink needs tensorboard: pip install -e '.[tensorboard]'") from exc
            self.writer, self._own = SummaryWriter(str(writer_or_logdir)), True
        else:
            self.writer, self._own = writer_or_logdir, False
        self.prefix = prefix

    def write(self, record, layers: dict) -> None:
        step, p = int(record.iteration), self.prefix
        for name in ("train_loss", "si_norm", "eff_lr", "eff_grad_norm", "angular_update", "lr"):
            value = float(getattr(record, name))
            if value == value:                     # NaN (no loss given) is left out
                self.writer.add_scalar(f"{p}/{name}", value, step)
        for q in LAYER_QUANTITIES:
            for tensor, value in layers[q].items():
                if value == value:
                    self.writer.add_scalar(f"{p}_layers/{q}/{tensor}", float(value), step)

    def destabilisation(self, iteration: int) -> None:
        self.writer.add_scalar(f"{self.prefix}/destabilisation", 1.0, int(iteration))

    def close(self) -> None:
        self.writer.flush()
        if self._own:
            self.writer.close()
