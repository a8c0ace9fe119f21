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

from .sharpness import SHARPNESS_COLUMNS

__all__ = ["SIWatch", "evaluate", "Recorder", "STEP_COLUMNS", "EVAL_COLUMNS"]

STEP_COLUMNS = ("iteration", "epoch", "lr", "train_loss", "train_acc", "si_norm", "si_norm_equiv",
                "grad_norm", "eff_lr", "eff_grad_norm", "angular_update")
EVAL_COLUMNS = ("iteration", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "si_norm")


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
             batch_size: int = 1000) -> torch.Tensor:
    """Mean cross-entropy and accuracy of ``model`` in eval mode (running BN statistics).

    Returns a 2-element tensor ``[loss, acc]`` on the device (one sync when read). The model
    is put back in train mode.
    """
    was_training = model.training
    model.eval()
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
        """Record one evaluation; ``test_and_norm`` = tensor [test_loss, test_acc, si_norm]."""
        tl, ta, rho = test_and_norm.tolist()
        row = [iteration, epoch, train[0], train[1], tl, ta, rho]
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
        self.evals = [list(r) for r in state["evals"]]
        self.sharpness = [list(r) for r in state.get("sharpness", [])]
        self.n_layers = int(state["n_layers"])


def _table(rows: list[list[float]], cols) -> dict:
    a = np.asarray(rows, dtype=float).reshape(-1, len(cols))
    ints = ("iteration", "epoch", "lanczos_iterations")
    return {c: (a[:, i].astype(np.int64) if c in ints else a[:, i]) for i, c in enumerate(cols)}
