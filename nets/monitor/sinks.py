"""Where the monitor's records go as they are made: TensorBoard, Weights & Biases, or anything else.

A sink is any object with ``write(record, layers)`` (and optionally ``destabilisation(iteration)``
and ``close()``): :class:`nets.SIMonitor` calls it once per recorded step with the
:class:`nets.monitor.metrics.StepRecord` and ``layers = {quantity: {tensor name: value}}`` for
``norm``, ``grad_norm`` and ``angular_update`` of every SI tensor. Each sink is a thin adapter over
those same records (the monitor's own ``out/metrics.csv`` is streamed by :class:`cli.CSVStream`):

* :class:`TensorBoardSink` -- scalars through ``torch.utils.tensorboard.SummaryWriter``
  (``pip install -e '.[tensorboard]'``): ``si/<quantity>`` for the SI group and
  ``si_layers/<quantity>/<tensor>`` per SI tensor, at the optimizer step as global step;
* :class:`WandbSink` -- the same keys to a Weights & Biases run (``pip install -e '.[wandb]'``;
  ``mode="offline"`` needs no network; ``wandb sync`` uploads later).
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["TensorBoardSink", "WandbSink", "scalars", "LAYER_QUANTITIES"]

#: per-tensor quantities handed to sinks
LAYER_QUANTITIES = ("norm", "grad_norm", "angular_update")

#: StepRecord fields every sink reports
SCALARS = ("train_loss", "si_norm", "eff_lr", "eff_grad_norm", "angular_update", "lr")


def scalars(record, layers: dict, prefix: str = "si") -> dict:
    """``{key: value}`` of one record, as every logging sink names it: ``<prefix>/<field>`` for the SI
    group and ``<prefix>_layers/<quantity>/<tensor>`` per SI tensor; NaN values (no loss given) left out."""
    out = {f"{prefix}/{k}": float(getattr(record, k)) for k in SCALARS}
    out.update({f"{prefix}_layers/{q}/{tensor}": float(v) for q in LAYER_QUANTITIES for tensor, v in layers[q].items()})
    return {k: v for k, v in out.items() if v == v}


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
        for key, value in scalars(record, layers, self.prefix).items():
            self.writer.add_scalar(key, value, int(record.iteration))

    def destabilisation(self, iteration: int) -> None:
        self.writer.add_scalar(f"{self.prefix}/destabilisation", 1.0, int(iteration))

    def close(self) -> None:
        self.writer.flush()
        if self._own:
            self.writer.close()


class WandbSink:
    """The records to a Weights & Biases run: give a run (kept open) or ``wandb.init`` keyword
    arguments (e.g. ``mode="offline", dir="runs"``; the run is finished with the sink)."""

    def __init__(self, run=None, *, prefix: str = "si", **init_kwargs):
        if run is None:
            try:
                import wandb
            except ImportError as exc:
                raise ImportError("WandbSink needs wandb: pip install -e '.[wandb]'") from exc
            run, self._own = wandb.init(**init_kwargs), True
        else:
            self._own = False
        self.run, self.prefix = run, prefix

    def write(self, record, layers: dict) -> None:
        self.run.log(scalars(record, layers, self.prefix), step=int(record.iteration))

    def destabilisation(self, iteration: int) -> None:
        """W&B steps only go forward and a destabilisation is confirmed a few records after it: its
        iteration is logged as a value at the current step."""
        self.run.log({f"{self.prefix}/destabilisation_at": int(iteration)}, commit=False)

    def close(self) -> None:
        if self._own:
            self.run.finish()
