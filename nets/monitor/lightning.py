"""``SIMonitorCallback``: the monitor on a Lightning ``LightningModule`` with one line.

::

    from nets.monitor.lightning import SIMonitorCallback
    trainer = lightning.Trainer(max_steps=1000, callbacks=[SIMonitorCallback(out="runs/mine", log_every=10)])

Needs ``pip install -e '.[lightning]'``. At the first training batch the callback makes a
:class:`nets.SIMonitor` on the module and its (first) optimizer, with that batch as the example
batch (a loader's ``(inputs, targets)`` pair: the inputs are used; a dict of keyword inputs works
too); after every batch it hands the monitor the loss from ``training_step``'s output, and logs
the recorded quantities with the module's own logger (``si/si_norm``, ``si/eff_lr``,
``si/angular_update``, ...: TensorBoard, CSV, W&B, whatever the trainer has). At the end of training
it closes the monitor (its files, if ``out`` was given) and keeps the summary in ``summary``.
Lightning's ``optimizer.step(closure)`` computes the gradient inside the step; the monitor takes
its measurements after the closure (:meth:`nets.SIMonitor._pre_step`).
"""
from __future__ import annotations

import torch

try:
    from lightning.pytorch.callbacks import Callback
except ImportError as exc:                            # the extra is not installed
    raise ImportError("SIMonitorCallback needs Lightning: pip install -e '.[lightning]'") from exc

from nets.monitor.simonitor import SIMonitor

__all__ = ["SIMonitorCallback"]

#: StepRecord fields logged through the module's logger
LOGGED = ("si_norm", "eff_lr", "eff_grad_norm", "angular_update")


class SIMonitorCallback(Callback):
    """A Lightning callback holding a :class:`nets.SIMonitor` (``monitor_kwargs`` are its options)."""

    def __init__(self, **monitor_kwargs):
        super().__init__()
        self.kwargs = {"verbose": False, **monitor_kwargs}
        self.monitor: SIMonitor | None = None
        self.summary: dict | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.monitor is None:
            optimizer = trainer.optimizers[0]
            optimizer = getattr(optimizer, "optimizer", optimizer)       # Lightning's wrapper, if any
            self.monitor = SIMonitor(pl_module, optimizer, example_batch=batch, **self.kwargs)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        record = self.monitor.step(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        if record is not None:
            pl_module.log_dict({f"si/{k}": float(getattr(record, k)) for k in LOGGED}, on_step=True,
                               on_epoch=False)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.monitor is not None:
            self.summary = self.monitor.close()
