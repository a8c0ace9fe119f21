r"""What the theory says for the optimizer a model is trained with: effective LR and equilibrium.

:class:`nets.SIMonitor` reads the hyper-parameters that each SI tensor's parameter group uses
*at this step* (so LR schedulers and hand-edited groups are followed) and maps them to

* the **effective LR** -- :math:`\eta/\rho^2` for SGD (Lobacheva et al., NeurIPS 2021, Sec. 2;
  :func:`theory.dynamics.effective_lr`); :math:`\eta/\rho` for Adam-type optimizers, whose step
  does not shrink with the scale of SI weights (Heo et al., 2021, Sec. 3;
  :func:`theory.rotational.adaptive_effective_lr`);
* the **equilibrium** norm :math:`\rho^*`, effective LR :math:`\tilde\eta^*` and angular update
  :math:`\Delta\theta^*` -- SGD with heavy-ball or Nesterov momentum, WD coupled (in the
  optimizer) or decoupled (applied by the user, ``SIMonitor(decoupled_weight_decay=...)``):
  :func:`theory.rotational.sgd_equilibrium_norm` / ``sgd_equilibrium_angular_update``
  (Wan et al., 2021 for heavy ball); AdamW (``torch.optim.AdamW``, or ``Adam`` with
  ``decoupled_weight_decay=True``): Kosson et al. (2024), :math:`\rho^* = \sqrt{\eta C/2\lambda}`,
  :math:`\Delta\theta^* = \sqrt{2\eta\lambda(1-\beta_1)/(1+\beta_1)}`. No formula is known for Adam
  with coupled L2 or for other optimizers: their equilibrium values are NaN with a note.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch

from theory.dynamics import effective_lr as sgd_effective_lr
from theory.rotational import (
    adamw_equilibrium_angular_update,
    adamw_equilibrium_norm,
    adaptive_effective_lr,
    sgd_equilibrium_angular_update,
    sgd_equilibrium_norm,
)

__all__ = ["Hyper", "read_hyper", "effective_lr", "effective_lrs", "equilibrium", "equilibrium_law",
           "EquilibriumLaw", "ADAPTIVE",
           "ADAPTIVE_KINDS"]

NAN = float("nan")
# optimizers that divide by a running RMS of the gradient: their step is scale-free on SI weights
ADAPTIVE = ("Adam", "AdamW", "NAdam", "RAdam", "Adamax", "Adagrad", "RMSprop", "Adadelta", "SparseAdam")
#: kinds of Hyper whose effective LR is eta/rho (their step does not shrink with rho)
ADAPTIVE_KINDS = ("adamw", "adam", "adaptive")


@dataclass(frozen=True)
class Hyper:
    """The update rule one SI tensor gets at one step.

    ``kind``: "sgd" (torch.optim.SGD), "adamw" (decoupled WD), "adam" (Adam with coupled L2),
    "adaptive" (another RMS-normalised optimizer) or "other"; ``optimizer`` its class name; ``lr``,
    ``wd`` (lambda, whichever way it is applied), ``momentum`` (SGD's mu or Adam's beta1),
    ``nesterov``, ``dampening``, ``decoupled`` (WD outside the momentum filter).
    """

    kind: str
    optimizer: str
    lr: float
    wd: float
    momentum: float = 0.0
    nesterov: bool = False
    dampening: float = 0.0
    decoupled: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def plain_sgd(self) -> bool:
        """SGD with heavy ball (or none), coupled WD, no dampening: the paper's setting."""
        return self.kind == "sgd" and not self.nesterov and not self.decoupled and self.dampening == 0


def _float(v) -> float:
    return float(v.item() if isinstance(v, torch.Tensor) else v)


def read_hyper(optimizer: torch.optim.Optimizer, group: dict, decoupled_weight_decay: float = 0.0) -> Hyper:
    """The :class:`Hyper` of parameter group ``group`` of ``optimizer`` (one host read if the LR
    is a tensor). ``decoupled_weight_decay``: WD the caller applies outside the optimizer."""
    name = type(optimizer).__name__
    lr, wd = _float(group.get("lr", NAN)), _float(group.get("weight_decay", 0.0))
    extra = float(decoupled_weight_decay)
    if isinstance(optimizer, torch.optim.SGD):
        if extra and wd:
            raise ValueError("the optimizer already applies weight decay to the SI weights; do not also "
                             "pass decoupled_weight_decay")
        return Hyper("sgd", name, lr, wd or extra, float(group.get("momentum", 0.0)),
                     bool(group.get("nesterov", False)), float(group.get("dampening", 0.0)), decoupled=bool(extra))
    if name in ADAPTIVE:
        beta1 = float(group.get("betas", (0.0,))[0])
        adam = isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW))
        decoupled = isinstance(optimizer, torch.optim.AdamW) or bool(group.get("decoupled_weight_decay", False))
        if adam and decoupled and not extra:
            return Hyper("adamw", name, lr, wd, beta1, decoupled=True)
        if adam and extra and not wd:
            return Hyper("adamw", name, lr, extra, beta1, decoupled=True)
        return Hyper("adam" if adam else "adaptive", name, lr, wd + extra, beta1, decoupled=decoupled)
    return Hyper("other", name, lr, wd + extra, float(group.get("momentum", 0.0)))


def effective_lr(h: Hyper, rho: float) -> float:
    """Effective LR of an SI tensor (or group) of norm ``rho`` under ``h`` (module docstring;
    :func:`effective_lrs` for one value)."""
    return float(effective_lrs(h, rho))


def equilibrium(h: Hyper, eff_grad_norm: float, numel: int) -> tuple[dict, str]:
    """``({"norm", "eff_lr", "angular_update"}, note)`` at equilibrium for the current ``h``.

    ``eff_grad_norm`` is the RMS of :math:`\\rho\\|\\nabla f\\|` (SGD's equilibrium norm needs it),
    ``numel`` the number of elements (AdamW's needs it). NaN values and a note where no formula
    applies (no WD, Adam with coupled L2, other optimizers, eta*lambda >= 1).
    """
    out = {"norm": NAN, "eff_lr": NAN, "angular_update": NAN}
    if not h.wd > 0:
        return out, "no weight decay on the SI weights: the norm grows, there is no equilibrium"
    if not (h.lr > 0 and h.lr * h.wd < 1):
        return out, f"lr*wd = {h.lr * h.wd:.3g} outside (0, 1)"
    if h.kind == "sgd":
        out["angular_update"] = float(sgd_equilibrium_angular_update(
            h.lr, h.wd, h.momentum, nesterov=h.nesterov, dampening=h.dampening, decoupled=h.decoupled))
        note = "" if h.plain_sgd else "SGD variant: leading order in eta*lambda (theory.rotational)"
    elif h.kind == "adamw":
        out["angular_update"] = float(adamw_equilibrium_angular_update(h.lr, h.wd, h.momentum))
        note = "AdamW rotational equilibrium (Kosson et al., 2024)"
    else:
        what = "Adam with coupled L2" if h.kind == "adam" else h.optimizer
        return out, f"no equilibrium formula for {what}; measured values only"
    out["norm"], out["eff_lr"] = equilibrium_law(h, numel).at(float(eff_grad_norm))
    return out, note


class EquilibriumLaw(NamedTuple):
    r"""The equilibrium for one :class:`Hyper` as a function of the RMS effective gradient norm G.

    :math:`\rho^*(G) = \rho^*_1 G^{p}` and :math:`\tilde\eta^*(G) = \tilde\eta^*_1 G^{q}`: SGD's
    :math:`\rho^{*4} \propto G^2` (:func:`theory.rotational.sgd_equilibrium_norm`, every variant)
    gives :math:`p = 1/2` and, with :math:`\tilde\eta = \eta/\rho^2`, :math:`q = -1`; AdamW's
    :math:`\rho^* = \sqrt{\eta C/2\lambda}` does not depend on G (:math:`p = q = 0`). The values at
    :math:`G = 1` come from the theory's formulas once; :meth:`at` scales them (NaN where no
    formula applies, or where SGD's needs a G that is not finite and > 0); :func:`equilibrium` and
    every record of :class:`nets.SIMonitor` (:mod:`nets.monitor.track`) use it.
    """

    norm_1: float
    eff_lr_1: float
    norm_power: float
    eff_lr_power: float

    def at(self, eff_grad_norm: float) -> tuple[float, float]:
        """``(norm, eff_lr)`` at equilibrium for the RMS effective gradient norm ``eff_grad_norm``."""
        if self.norm_power == 0:
            return self.norm_1, self.eff_lr_1
        if not (math.isfinite(eff_grad_norm) and eff_grad_norm > 0):
            return NAN, NAN
        return self.norm_1 * eff_grad_norm ** self.norm_power, self.eff_lr_1 * eff_grad_norm ** self.eff_lr_power


def equilibrium_law(h: Hyper, numel: int) -> EquilibriumLaw:
    """The :class:`EquilibriumLaw` of ``h`` for SI weights of ``numel`` elements."""
    none = EquilibriumLaw(NAN, NAN, 1.0, 1.0)
    if not (h.wd > 0 and h.lr > 0 and h.lr * h.wd < 1):
        return none
    if h.kind == "sgd":
        norm = float(sgd_equilibrium_norm(h.lr, h.wd, 1.0, h.momentum, nesterov=h.nesterov,
                                          dampening=h.dampening, decoupled=h.decoupled))
        return EquilibriumLaw(norm, effective_lr(h, norm), 0.5, -1.0)
    if h.kind == "adamw":
        norm = float(adamw_equilibrium_norm(h.lr, h.wd, numel))
        return EquilibriumLaw(norm, effective_lr(h, norm), 0.0, 0.0)
    return none


def effective_lrs(h: Hyper, rho) -> np.ndarray:
    """:func:`effective_lr` for an array of norms (NaN where ``rho`` is not finite and > 0)."""
    rho = np.asarray(rho, dtype=float)
    out = np.full(rho.shape, NAN)
    ok = np.isfinite(rho) & (rho > 0)
    if ok.any() and h.lr > 0:
        fn = adaptive_effective_lr if h.kind in ADAPTIVE_KINDS else sgd_effective_lr
        out[ok] = fn(h.lr, rho[ok])
    return out
