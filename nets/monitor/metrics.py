"""Quantities the paper plots, measured on the device without per-step host syncs.

Lobacheva et al. (NeurIPS 2021, Sec. 3 and Fig. 1-3) track, for the SI weights ``x``:
rho = ||x|| (total and per layer), the effective LR eta/rho^2, the effective gradient norm
rho * ||grad_x L|| on the mini-batch, train loss/accuracy in train-mode BN and test
loss/accuracy. We add the angular update (Wan et al., 2021) of one step, and per SI tensor its
norm, gradient norm and angular update. The formulas are the single implementation in
:mod:`theory.dynamics`; this module only gathers the tensors. :class:`nets.SIMonitor` is the one
caller that measures (our :class:`nets.Trainer` goes through it).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from analysis.rows import RowTable
from nets.monitor.batch_sharpness import BATCH_SHARPNESS_COLUMNS, BatchSharpnessRecord
from nets.monitor.sharpness import SHARPNESS_COLUMNS, SharpnessRecord, buffers_kept
from theory.dynamics import angular_update, effective_grad_norm

__all__ = ["TrainingDiverged", "SIWatch", "evaluate", "full_pass_train_loss", "Recorder", "RowTable", "StepProbe",
           "segment_angles", "StepRecord", "EvalRecord", "STEP_COLUMNS", "EVAL_COLUMNS", "LAYER_SERIES"]



class StepRecord(NamedTuple):
    """One recorded optimizer step (a row of ``metrics.csv``; SI group totals, before the step)."""

    iteration: int
    epoch: int
    lr: float
    train_loss: float            # mini-batch loss (NaN when the loop gave none)
    train_acc: float
    si_norm: float               # rho = ||x|| before the step
    si_norm_equiv: float         # rho of the equivalent WD run (exponential LR), else rho
    grad_norm: float             # ||grad_x L||
    eff_lr: float                # the optimizer's effective LR (nets.monitor.theory.effective_lr)
    eff_grad_norm: float         # rho ||grad_x L||
    angular_update: float        # angle between x before and after the step (radians)


class EvalRecord(NamedTuple):
    """One evaluation (a row of ``evals.csv``)."""

    iteration: int
    epoch: int
    train_loss: float            # mean of the mini-batch losses since the last evaluation
    train_acc: float
    test_loss: float
    test_acc: float
    si_norm: float
    train_loss_full: float       # the paper's train loss: a full pass at fixed weights (else NaN)
    train_acc_full: float


STEP_COLUMNS = StepRecord._fields
EVAL_COLUMNS = EvalRecord._fields
# per-SI-tensor series of a recorded step (matrices n_records x n_tensors): norm before the step,
# gradient norm, angle between the tensor before and after the step
LAYER_SERIES = ("layer_norms", "layer_grad_norms", "layer_angular_updates")


class TrainingDiverged(RuntimeError):
    """The loss or the SI norm became NaN/inf (found at the next recorded step)."""


class SIWatch:
    """The SI group of a model as a list of tensors, with fused norm/grad/rescale helpers."""

    def __init__(self, params: list[torch.Tensor]):
        self.params = list(params)
        self.sizes = [p.numel() for p in self.params]
        self._sizes_tensor = None

    @property
    def sizes_tensor(self) -> torch.Tensor:
        """``sizes`` as a tensor on the parameters' device (made once: no copy per record)."""
        if self._sizes_tensor is None:
            dev = self.params[0].device if self.params else "cpu"
            self._sizes_tensor = torch.as_tensor(self.sizes, device=dev)
        return self._sizes_tensor

    def layer_norms(self) -> torch.Tensor:
        """Norm of each SI tensor (1-D tensor on the device)."""
        if not self.params:
            return torch.zeros(0)
        return torch.stack(torch._foreach_norm([p.detach() for p in self.params]))

    def norm(self) -> torch.Tensor:
        """rho = total norm of the SI group (0-d tensor on the device)."""
        return torch.linalg.vector_norm(self.layer_norms())

    def layer_grad_norms(self) -> torch.Tensor:
        """||grad|| of each SI tensor (1-D tensor on the device; 0 where no gradient exists)."""
        if not self.params:
            return torch.zeros(0)
        have = [p.grad is not None for p in self.params]
        if not any(have):
            return torch.zeros(len(self.params), device=self.params[0].device)
        norms = iter(torch._foreach_norm([p.grad for p in self.params if p.grad is not None]))
        zero = torch.zeros((), device=self.params[0].device)
        return torch.stack([next(norms) if h else zero for h in have])

    def grad_norm(self) -> torch.Tensor:
        """||grad_x L|| over the SI group (0-d tensor; 0 where no gradient exists yet)."""
        return torch.linalg.vector_norm(self.layer_grad_norms())

    def flat(self) -> torch.Tensor:
        """A copy of the SI weights as one vector (for the angular update)."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    @torch.no_grad()
    def rescale_(self, target: float, per_layer: bool = False) -> None:
        """Set the total norm -- with ``per_layer``, every tensor's norm -- to ``target`` (weight
        rescaling, Liu et al., 2021; the projection of :func:`theory.sphere.project_to_sphere`,
        tensors as blocks); no host sync."""
        if self.params and per_layer:
            scale = torch._foreach_reciprocal(torch._foreach_norm(self.params))
            torch._foreach_mul_(scale, target)
            torch._foreach_mul_(self.params, scale)
        elif self.params:
            torch._foreach_mul_(self.params, target / self.norm())


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, scale, shift,
             batch_size: int = 1000, *, bn_train: bool = False) -> torch.Tensor:
    """Mean cross-entropy and accuracy of ``model`` over ``x`` in consecutive batches, in eval
    mode (running BN statistics) or, with ``bn_train``, in train mode (each batch's statistics).

    Returns a 2-element tensor ``[loss, acc]`` on the device (one sync when read). The model
    is put back in its previous mode.
    """
    was_training = model.training
    model.train(bn_train)
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for i in range(0, x.shape[0], batch_size):
        xb = torch.addcmul(shift, x[i:i + batch_size], scale)
        out = model(xb)
        yb = y[i:i + batch_size]
        loss += F.cross_entropy(out, yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
    model.train(was_training)
    n = max(int(x.shape[0]), 1)
    return torch.stack([loss / n, correct / n])


def segment_angles(before: torch.Tensor, after: torch.Tensor, sizes: list[int],
                   reps: torch.Tensor | None = None) -> torch.Tensor:
    """Angle (radians) between consecutive segments of two flat vectors, e.g. each SI tensor
    before and after a step: Kahan's formula of :func:`theory.dynamics.angular_update` per
    segment, vectorised (no loop over tensors, no host sync). ``reps``: ``sizes`` as a tensor on
    the vectors' device (made here if not given). NaN for a zero segment."""
    if not sizes:
        return before.new_zeros(0)

    def norms(v):
        return torch.stack(torch._foreach_norm(torch.split(v, sizes)))

    if reps is None:
        reps = torch.as_tensor(sizes, device=before.device)

    def unit(v):
        return v * torch.repeat_interleave(1 / norms(v), reps, output_size=v.numel())

    a, b = unit(before), unit(after)
    return 2 * torch.atan2(norms(a - b), norms(a + b))


def full_pass_train_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, scale, shift,
                         batch_size: int) -> torch.Tensor:
    """The paper's train loss and accuracy: a full pass over the training set at fixed weights.

    Lobacheva et al. (NeurIPS 2021, Sec. 3) plot the training loss of the current weights, not
    the running mean of the batch losses seen while they changed: mean cross-entropy (and
    accuracy) over all of ``x`` in train-mode BN, i.e. normalised with the statistics of each of
    the consecutive batches of ``batch_size`` (the training batch size; the last partial batch
    included; a remainder of one image is spread by using batches of ``batch_size + 1``), as SGD
    sees it. BN running statistics and the model's mode are left as they were
    (:func:`nets.monitor.sharpness.buffers_kept`). Returns ``[loss, acc]`` on the device.
    """
    if x.shape[0] % batch_size == 1:
        batch_size += 1     # no batch of one image: train-mode BN cannot normalise it
    with buffers_kept(model):
        return evaluate(model, x, y, scale, shift, batch_size, bn_train=True)


class StepProbe:
    """What a recorded step needs from before the optimizer step (all on the device)."""

    def __init__(self, watch: SIWatch):
        self.layer_norms = watch.layer_norms()
        self.layer_grad_norms = watch.layer_grad_norms()
        self.grad_norm = torch.linalg.vector_norm(self.layer_grad_norms)
        self.before = watch.flat()
        self.sizes = list(watch.sizes)
        self.sizes_tensor = watch.sizes_tensor if self.sizes else None


class Recorder:
    """Rows of recorded metrics in compact tables (:class:`analysis.rows.RowTable`;
    checkpointed as lists). With ``spill_dir`` the per-record tables (steps and the per-tensor
    series) keep their rows in files there, so the recorder's memory does not grow with the run."""

    def __init__(self, n_layers: int = 0, spill_dir=None):
        self.n_layers, self.spill_dir = n_layers, spill_dir
        self.steps = self._table("steps", len(STEP_COLUMNS))
        self.layer_norms = self._table("layer_norms", n_layers)
        self.layer_grad_norms = self._table("layer_grad_norms", n_layers)
        self.layer_angular_updates = self._table("layer_angular_updates", n_layers)
        self.evals = RowTable(len(EVAL_COLUMNS))
        self.sharpness = RowTable(len(SHARPNESS_COLUMNS))
        self.batch_sharpness = RowTable(len(BATCH_SHARPNESS_COLUMNS))
        self.last_layers = None     # (norms, grad norms, angular updates) of the latest record, per SI tensor

    def _table(self, name: str, width: int, rows=()) -> RowTable:
        """A per-record table; spilled to ``spill_dir/<name>.f64`` when the recorder has one."""
        spill = None if self.spill_dir is None else Path(self.spill_dir) / f"{name}.f64"
        return RowTable(width, rows, spill=spill)

    def add_step(self, *, iteration: int, epoch: int, lr: float, loss_acc: torch.Tensor,
                 probe: StepProbe, after: torch.Tensor, eff_lr_at, norm_scale: float = 1.0) -> StepRecord:
        """Record one step; ``after`` are the flat SI weights after it. One host sync.

        ``eff_lr_at(rho)``: the optimizer's effective LR at norm ``rho``
        (:func:`nets.monitor.theory.effective_lr`, the one place that chooses the formula)."""
        rho_t = torch.linalg.vector_norm(probe.layer_norms)
        angle = angular_update(probe.before, after) if after.numel() else rho_t * 0
        sizes = getattr(probe, "sizes", [])
        per_grad = getattr(probe, "layer_grad_norms", probe.layer_norms * float("nan"))
        per_angle = (segment_angles(probe.before, after, sizes, getattr(probe, "sizes_tensor", None))
                     if sizes else probe.layer_norms * float("nan"))
        vals = torch.cat([loss_acc.float(), torch.stack([rho_t, probe.grad_norm, angle]).float(),
                          probe.layer_norms.float(), per_grad.float(), per_angle.float()]).tolist()
        loss, acc, rho, gnorm, ang = vals[:5]
        n = len(vals[5:]) // 3
        layers = vals[5:5 + n]
        self.layer_grad_norms.append(vals[5 + n:5 + 2 * n])
        self.layer_angular_updates.append(vals[5 + 2 * n:])
        if not rho > 0:
            eff_lr = float("nan")
        else:
            eff_lr = float(eff_lr_at(rho))
        row = StepRecord(iteration, epoch, lr, loss, acc, rho, rho * norm_scale, gnorm, eff_lr,
                         float(effective_grad_norm(gnorm, rho)), ang)
        self.steps.append(row)
        self.layer_norms.append(layers)
        self.last_layers = (layers, vals[5 + n:5 + 2 * n], vals[5 + 2 * n:])   # (norms, grad norms, angles)
        return row

    def add_eval(self, *, iteration: int, epoch: int, train: tuple[float, float],
                 test_and_norm: torch.Tensor) -> EvalRecord:
        """Record one evaluation; ``test_and_norm`` = tensor [test_loss, test_acc, si_norm] or
        [test_loss, test_acc, si_norm, train_loss_full, train_acc_full]."""
        vals = test_and_norm.tolist() + [float("nan")] * 2
        row = EvalRecord(iteration, epoch, train[0], train[1], *vals[:5])
        self.evals.append(row)
        return row

    def add_sharpness(self, row: SharpnessRecord) -> SharpnessRecord:
        """Record one row of :data:`nets.monitor.sharpness.SHARPNESS_COLUMNS`."""
        self.sharpness.append(row)
        return row

    def add_batch_sharpness(self, row: BatchSharpnessRecord) -> BatchSharpnessRecord:
        """Record one row of :data:`nets.monitor.batch_sharpness.BATCH_SHARPNESS_COLUMNS`."""
        self.batch_sharpness.append(row)
        return row

    def arrays(self) -> tuple[dict, np.ndarray, dict]:
        """``(steps, layer_norms, evals)``: dicts of 1-D arrays by column, and an
        ``n_records x n_layers`` array."""
        return _table(self.steps, STEP_COLUMNS), self.layer_norms.array(), _table(self.evals, EVAL_COLUMNS)

    def layer_arrays(self) -> dict:
        """The per-SI-tensor series (:data:`LAYER_SERIES`), each an ``n_records x n_layers`` array
        (NaN where a record has no per-tensor value)."""
        out = {}
        for name in LAYER_SERIES:
            rows = getattr(self, name).array()
            missing = len(self.steps) - rows.shape[0]    # records from before these series existed
            out[name] = np.concatenate([np.full((missing, self.n_layers), np.nan), rows]) if missing > 0 else rows
        return out

    def step_records(self):
        """The recorded steps as :class:`StepRecord` s (an iterator)."""
        return (StepRecord(*r) for r in self.steps)

    def sharpness_table(self) -> dict | None:
        """The sharpness measurements as a dict of 1-D arrays (None if there are none)."""
        return _table(self.sharpness, SHARPNESS_COLUMNS) if self.sharpness else None

    def batch_sharpness_table(self) -> dict | None:
        """The batch-sharpness measurements as a dict of 1-D arrays (None if there are none)."""
        return _table(self.batch_sharpness, BATCH_SHARPNESS_COLUMNS) if self.batch_sharpness else None

    def state_dict(self) -> dict:
        """Plain lists of rows (checkpoints load them with torch's ``weights_only`` reader)."""
        return {"steps": self.steps.tolist(), "layer_norms": self.layer_norms.tolist(), "evals": self.evals.tolist(),
                "sharpness": self.sharpness.tolist(), "batch_sharpness": self.batch_sharpness.tolist(),
                "n_layers": self.n_layers,
                "layer_grad_norms": self.layer_grad_norms.tolist(),
                "layer_angular_updates": self.layer_angular_updates.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.n_layers = n = int(state["n_layers"])
        self.steps = self._table("steps", len(STEP_COLUMNS), state["steps"])
        self.layer_norms = self._table("layer_norms", n, state["layer_norms"])
        pad = [float("nan")] * len(EVAL_COLUMNS)     # rows of checkpoints from before train_*_full
        self.evals = RowTable(len(EVAL_COLUMNS), [(list(r) + pad)[:len(EVAL_COLUMNS)] for r in state["evals"]])
        self.sharpness = RowTable(len(SHARPNESS_COLUMNS), state.get("sharpness", []))
        self.batch_sharpness = RowTable(len(BATCH_SHARPNESS_COLUMNS), state.get("batch_sharpness", []))
        self.layer_grad_norms = self._table("layer_grad_norms", n, state.get("layer_grad_norms", []))
        self.layer_angular_updates = self._table("layer_angular_updates", n, state.get("layer_angular_updates", []))


def _table(rows: RowTable, cols) -> dict:
    a = rows.array()
    ints = ("iteration", "epoch", "lanczos_iterations")
    return {c: (a[:, i].astype(np.int64) if c in ints else a[:, i]) for i, c in enumerate(cols)}
