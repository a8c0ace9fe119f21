r"""Random-walk simulation of SI weights under PyTorch's own optimizers (checks :mod:`theory.rotational`).

The gradient of a scale-invariant loss is orthogonal to the weights and scales as
:math:`1/\rho`; near equilibrium its direction is close to random from step to step. Here it
*is* random: each row of a ``(seeds, d)`` weight tensor gets the tangent noise of
:func:`simulate.noise.tangent_noise`,
:math:`g = (\sigma/\rho) P_x\xi/\sqrt{d-1}` (:math:`\mathbb E\|g\|^2 = \sigma^2/\rho^2`, i.e. effective
gradient norm :math:`G = \sigma`), and the step is made by ``torch.optim`` itself -- SGD (heavy ball
or Nesterov, WD coupled or applied as :math:`x \leftarrow (1-\eta\lambda)x`, decoupled), Adam with
L2, AdamW -- so the simulation tests the formulas against the very update rules that
:class:`nets.SIMonitor` observes. Every configuration is one parameter group holding all seeds
(rows evolve independently: every update is elementwise or per row), so many seeds cost one
optimizer call.

Lobacheva et al. (NeurIPS 2021, Sec. 2) for the equilibrium of plain SGD; Wan et al. (2021) and
Kosson et al. (2024) for momentum and AdamW.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from simulate.noise import tangent_noise

__all__ = ["WalkConfig", "random_walk", "steady_state"]


@dataclass(frozen=True)
class WalkConfig:
    """One optimizer setting: ``kind`` in {"sgd", "adam", "adamw"}; ``decoupled`` applies SGD's
    WD as :math:`x \\leftarrow (1-\\eta\\lambda)x` before each step (the optimizer gets none)."""

    kind: str
    eta: float
    lam: float
    momentum: float = 0.0
    nesterov: bool = False
    decoupled: bool = False
    beta1: float = 0.9
    beta2: float = 0.999


def _optimizer(configs, params):
    """One torch optimizer per kind, a group per configuration; returns [(optimizer, groups)]."""
    made = []
    for kind, cls in (("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        groups = []
        for c, p in zip(configs, params):
            if c.kind != kind:
                continue
            g = {"params": [p], "lr": c.eta, "weight_decay": 0.0 if c.decoupled else c.lam}
            g.update({"momentum": c.momentum, "nesterov": c.nesterov} if kind == "sgd"
                     else {"betas": (c.beta1, c.beta2)})
            groups.append(g)
        if groups:
            made.append(cls(groups, lr=groups[0]["lr"], foreach=True))
    return made


def random_walk(configs, *, d: int = 256, seeds: int = 8, steps: int = 4000, sigma: float = 1.0,
                init_norm: float = 1.0, record_every: int = 10, seed: int = 0, dtype=torch.float64) -> dict:
    r"""Run every configuration of ``configs`` on ``seeds`` independent random walks.

    Parameters
    ----------
    configs : list of WalkConfig
    d : int
        Number of SI weights (elements) per walk.
    seeds : int
        Independent rows per configuration.
    steps : int
        Optimizer steps.
    sigma : float
        Effective gradient norm :math:`G` (RMS of :math:`\rho\|g\|`).
    init_norm : float
        Initial norm of every row (random direction).
    record_every : int
        Record every this many steps.

    Returns
    -------
    dict
        ``iteration`` (n,), ``norm`` (n, configs, seeds) before the step, ``angle`` (n, configs,
        seeds) in radians between :math:`x_t` and :math:`x_{t+1}`.
    """
    if d < 2 or seeds < 1 or steps < 1 or record_every < 1:
        raise ValueError("need d >= 2, seeds >= 1, steps >= 1, record_every >= 1")
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(len(configs), seeds, d, generator=gen, dtype=dtype)
    weights = x0 * (init_norm / x0.norm(dim=2, keepdim=True))    # every row of every config
    params = [torch.nn.Parameter(w) for w in weights]               # views: steps update ``weights``
    optimizers = _optimizer(configs, params)
    decay = [(p, 1 - c.eta * c.lam) for c, p in zip(configs, params) if c.decoupled]
    n_rec = (steps - 1) // record_every + 1
    norm = np.zeros((n_rec, len(configs), seeds))
    angle = np.zeros_like(norm)
    noise = np.random.default_rng(seed)
    flat = weights.view(-1, d).numpy()
    for t in range(steps):
        record = t % record_every == 0
        before = weights.clone() if record else None
        grads = torch.from_numpy(tangent_noise(flat, sigma, noise.standard_normal(flat.shape)))
        grads = grads.view(len(configs), seeds, d)
        with torch.no_grad():
            for j, p in enumerate(params):
                p.grad = grads[j]
            for p, f in decay:
                p.mul_(f)
        for opt in optimizers:
            opt.step()
        if record:
            r = t // record_every
            a, b = before / before.norm(dim=2, keepdim=True), weights / weights.norm(dim=2, keepdim=True)
            norm[r] = before.norm(dim=2).numpy()
            angle[r] = (2 * torch.atan2((a - b).norm(dim=2), (a + b).norm(dim=2))).numpy()
    return {"iteration": np.arange(n_rec) * record_every, "norm": norm, "angle": angle}


def steady_state(walk: dict, fraction: float = 0.5) -> dict:
    """Per configuration: RMS norm and RMS angular update over the last ``fraction`` of the
    records, pooled over seeds (arrays of length ``len(configs)``)."""
    k = int(len(walk["iteration"]) * (1 - fraction))
    return {"norm": np.sqrt(np.mean(walk["norm"][k:] ** 2, axis=(0, 2))),
            "angle": np.sqrt(np.mean(walk["angle"][k:] ** 2, axis=(0, 2)))}
