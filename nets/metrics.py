"""Quantities the paper plots, measured on the device without per-step host syncs.

Lobacheva et al. (NeurIPS 2021, Sec. 3 and Fig. 1-3) track, for the SI weights ``x``:
rho = ||x|| (total and per layer), the effective LR eta/rho^2, the effective gradient norm
rho * ||grad_x L|| on the mini-batch, train loss/accuracy in train-mode BN and test
loss/accuracy. We add the angular update (Wan et al., 2021) of one step. The formulas are the
single implementation in :mod:`theory.dynamics`; this module only gathers the tensors.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from theory.dynamics import angular_update, effective_grad_norm, effective_lr

from .sharpness import SHARPNESS_COLUMNS, buffers_kept

__all__ = ["SIWatch", "evaluate", "full_pass_train_loss", "Recorder", "STEP_COLUMNS", "EVAL_COLUMNS"]

STEP_COLUMNS = ("iteration", "epoch", "lr", "train_loss", "train_acc", "si_norm", "si_norm_equiv",
                "grad_norm", "eff_lr", "eff_grad_norm", "angular_update")
EVAL_COLUMNS = ("iteration", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "si_norm",
                "train_loss_full", "train_acc_full")


class SIWatch:
    """The SI group of a model as a list of tensors, with fused norm/grad/rescale helpers."""

    def __init__(self, params: list[torch.Tensor]):
        self.params = list(params)

    def layer_norms(self) -> torch.Tensor:
        """Norm of each SI tensor (1-D tensor on the device)."""
        if not self.params:
            return torch.zeros(0)
        return torch.stack(torch._foreach_norm([p.detach() for p in self.params]))

    def norm(self) -> torch.Tensor:
        """rho = total norm of the SI group (0-d tensor on the device)."""
        return torch.linalg.vector_norm(self.layer_norms())

    def grad_norm(self) -> torch.Tensor:
        """||grad_x L|| over the SI group (0-d tensor; 0 where no gradient exists yet)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.params[0].device if self.params else "cpu")
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))

    def flat(self) -> torch.Tensor:
        """A copy of the SI weights as one vector (for the angular update)."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    @torch.no_grad()
    def rescale_(self, target: float) -> None:
        """Set the total norm to ``target`` (weight rescaling, Liu et al., 2021); no host sync."""
        if self.params:
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


def full_pass_train_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, scale, shift,
                         batch_size: int) -> torch.Tensor:
    """The paper's train loss and accuracy: a full pass over the training set at fixed weights.

    Lobacheva et al. (NeurIPS 2021, Sec. 3) plot the training loss of the current weights, not
    the running mean of the batch losses seen while they changed: mean cross-entropy (and
    accuracy) over all of ``x`` in train-mode BN, i.e. normalised with the statistics of each of
    the consecutive batches of ``batch_size`` (the training batch size; the last partial batch
    included; a remainder of one image is spread by using batches of ``batch_size + 1``), as SGD
    sees it. BN running statistics and the model's mode are left as they were
    (:func:`nets.sharpness.buffers_kept`). Returns ``[loss, acc]`` on the device.
    """
    if x.shape[0] % batch_size == 1:
        batch_size += 1     # no batch of one image: train-mode BN cannot normalise it
    with buffers_kept(model):
        return evaluate(model, x, y, scale, shift, batch_size, bn_train=True)


class StepProbe:
    """What a recorded step needs from before the optimizer step (all on the device)."""

    def __init__(self, watch: SIWatch):
        self.layer_norms = watch.layer_norms()
        self.grad_norm = watch.grad_norm()
        self.before = watch.flat()


class Recorder:
    """Rows of recorded metrics, kept as Python lists (picklable, checkpointed)."""

    def __init__(self, n_layers: int = 0):
        self.steps: list[list[float]] = []
        self.layer_norms: list[list[float]] = []
        self.evals: list[list[float]] = []
        self.sharpness: list[list[float]] = []
        self.n_layers = n_layers

    def add_step(self, *, iteration: int, epoch: int, lr: float, loss_acc: torch.Tensor,
                 probe: StepProbe, after: torch.Tensor, norm_scale: float = 1.0) -> list[float]:
        """Record one step; ``after`` are the flat SI weights after it. One host sync."""
        rho_t = torch.linalg.vector_norm(probe.layer_norms)
        angle = angular_update(probe.before, after) if after.numel() else rho_t * 0
        vals = torch.cat([loss_acc.float(), torch.stack([rho_t, probe.grad_norm, angle]).float(),
                          probe.layer_norms.float()]).tolist()
        loss, acc, rho, gnorm, ang, layers = vals[0], vals[1], vals[2], vals[3], vals[4], vals[5:]
        eff_lr = float(effective_lr(lr, rho)) if rho > 0 else float("nan")
        row = [iteration, epoch, lr, loss, acc, rho, rho * norm_scale, gnorm, eff_lr,
               float(effective_grad_norm(gnorm, rho)), ang]
        self.steps.append(row)
        self.layer_norms.append(layers)
        return row

    def add_eval(self, *, iteration: int, epoch: int, train: tuple[float, float],
                 test_and_norm: torch.Tensor) -> list[float]:
        """Record one evaluation; ``test_and_norm`` = tensor [test_loss, test_acc, si_norm] or
        [test_loss, test_acc, si_norm, train_loss_full, train_acc_full]."""
        vals = test_and_norm.tolist() + [float("nan")] * 2
        row = [iteration, epoch, train[0], train[1], *vals[:5]]
        self.evals.append(row)
        return row

    def add_sharpness(self, row: list[float]) -> list[float]:
        """Record one row of :data:`nets.sharpness.SHARPNESS_COLUMNS`."""
        self.sharpness.append(list(row))
        return row

    def arrays(self) -> tuple[dict, np.ndarray, dict]:
        """``(steps, layer_norms, evals)``: dicts of 1-D arrays by column, and an
        ``n_records x n_layers`` array."""
        ln = np.asarray(self.layer_norms, dtype=float).reshape(-1, self.n_layers)
        return _table(self.steps, STEP_COLUMNS), ln, _table(self.evals, EVAL_COLUMNS)

    def sharpness_table(self) -> dict | None:
        """The sharpness measurements as a dict of 1-D arrays (None if there are none)."""
        return _table(self.sharpness, SHARPNESS_COLUMNS) if self.sharpness else None

    def state_dict(self) -> dict:
        return {"steps": self.steps, "layer_norms": self.layer_norms, "evals": self.evals,
                "sharpness": self.sharpness, "n_layers": self.n_layers}

    def load_state_dict(self, state: dict) -> None:
        self.steps = [list(r) for r in state["steps"]]
        self.layer_norms = [list(r) for r in state["layer_norms"]]
        pad = [float("nan")] * len(EVAL_COLUMNS)     # rows of checkpoints from before train_*_full
        self.evals = [(list(r) + pad)[:len(EVAL_COLUMNS)] for r in state["evals"]]
        self.sharpness = [list(r) for r in state.get("sharpness", [])]
        self.n_layers = int(state["n_layers"])


def _table(rows: list[list[float]], cols) -> dict:
    a = np.asarray(rows, dtype=float).reshape(-1, len(cols))
    ints = ("iteration", "epoch", "lanczos_iterations")
    return {c: (a[:, i].astype(np.int64) if c in ints else a[:, i]) for i, c in enumerate(cols)}
