r"""Generic vectorised runner: many :math:`(\eta, \lambda, \mu, \sigma, \text{seed})` configurations
advance together as the rows of one ``(B, d)`` array.

Every step is made by the step functions of :mod:`theory.dynamics` (``sgd_step``,
``wrs_step``) -- the same code ``nets/`` uses -- with per-row hyper-parameters of shape
``(B, 1)``. Three optimisers:

``'sgd'``
    SGD / GD with L2 weight decay and heavy-ball momentum (PyTorch convention),
    :math:`v_t = \mu v_{t-1} + \nabla f(x_t) + \lambda x_t`, :math:`x_{t+1} = x_t - \eta v_t`.
``'wrs'``
    weight rescaling instead of WD: a WD-free step, then back to norm ``target_norm``
    (Liu et al., 2021); ``lam`` must be 0.
``'texp'``
    Li & Arora's (2019) exponential learning rate :math:`\eta_t = \eta\alpha^{-2t-1}` without
    WD (:func:`theory.equivalences.texp_schedule`), equivalent to ``'sgd'`` with WD
    :math:`\lambda`: its weights are :math:`x_t/\alpha^t`.
``'sphere'``
    projected SGD at the fixed effective LR :math:`\tilde\eta` = ``eta``
    (:func:`theory.sphere.sphere_step`; Kodryan et al., 2022): the norm of the row, or with
    ``blocks`` of each block of it, stays at its initial value; ``lam`` and ``momentum`` must be 0.

Gradients come from an :class:`simulate.objectives.Objective` (full batch, or mini-batches of
its data when ``objective.batch_size`` is set) plus optional explicit tangent noise
(:mod:`simulate.noise`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cli.resources import check_memory
from simulate.noise import SeedStreams, tangent_noise
from theory.dynamics import angular_update, effective_grad_norm, effective_lr, sgd_step, wrs_step
from theory.equivalences import texp_schedule
from theory.sphere import sphere_step

__all__ = ["Trajectory", "run", "OPTIMIZERS", "RECORDABLE", "broadcast_configs", "validate_run", "memory_estimate",
           "check_run_memory"]

OPTIMIZERS = ("sgd", "wrs", "texp", "sphere")
RECORDABLE = ("loss", "eff_grad_norm", "angle")
CONFIG_KEYS = ("eta", "lam", "momentum", "noise", "seed")


@dataclass
class Trajectory:
    r"""Recorded curves of a vectorised run.

    Attributes
    ----------
    config : dict of ndarray, shape (B,)
        ``eta``, ``lam``, ``momentum``, ``noise`` (effective noise scale) and ``seed`` per
        configuration.
    iterations : ndarray of int, shape (n,)
        Iteration of each record (every ``record_every``-th step, starting at 0).
    norm : ndarray, shape (n, B)
        :math:`\rho_t = \|x_t\|` before step ``t``.
    loss, eff_grad_norm, angle : ndarray, shape (n, B), or None
        Loss at :math:`x_t` (the mini-batch loss for SGD on data), unit-sphere gradient norm
        :math:`\rho_t\|g_t\|` of the gradient actually used (noise included), and the angle
        (radians) between :math:`x_t` and :math:`x_{t+1}`.
    lr : ndarray, shape (n, B), or None
        Per-step learning rate for ``'texp'`` (``None``: constant ``config['eta']``).
    x_final : ndarray, shape (B, d)
        Weights after the last completed step.
    """

    config: dict
    iterations: np.ndarray
    norm: np.ndarray
    loss: np.ndarray | None = None
    eff_grad_norm: np.ndarray | None = None
    angle: np.ndarray | None = None
    lr: np.ndarray | None = None
    x_final: np.ndarray | None = None
    record_every: int = 1
    steps_done: int = 0
    optimizer: str = "sgd"
    method: str = "generic"
    interrupted: bool = False
    objective: dict = field(default_factory=dict)

    @property
    def n_configs(self) -> int:
        return int(self.norm.shape[1])

    @property
    def eff_lr(self) -> np.ndarray:
        r"""Effective LR :math:`\eta_t/\rho_t^2` (:func:`theory.dynamics.effective_lr`), NaN
        where the norm is not finite and positive; for ``'sphere'`` the fixed ELR ``eta`` itself
        (of every block in the per-layer variant)."""
        if self.optimizer == "sphere":
            return np.array(np.broadcast_to(self.config["eta"], self.norm.shape), dtype=np.float64)
        lr = self.lr if self.lr is not None else np.broadcast_to(self.config["eta"], self.norm.shape)
        out = np.full(self.norm.shape, np.nan)
        ok = np.isfinite(self.norm) & (self.norm > 0)
        if ok.any():
            out[ok] = effective_lr(np.asarray(lr, dtype=np.float64)[ok], self.norm[ok].astype(np.float64))
        return out

    def series(self, i: int) -> dict:
        """1-D curves of configuration ``i``: iterations, norm, eff_lr and what was recorded."""
        out = {"iteration": self.iterations, "norm": self.norm[:, i], "eff_lr": self.eff_lr[:, i]}
        for name in RECORDABLE:
            arr = getattr(self, name)
            if arr is not None:
                out[name] = arr[:, i]
        return out

    def config_row(self, i: int) -> dict:
        return {k: self.config[k][i].item() for k in CONFIG_KEYS}


def broadcast_configs(n: int, **values) -> dict:
    """Broadcast scalar / ``(B,)`` hyper-parameters to ``(B,)`` float arrays (seed: int)."""
    out = {}
    for k, v in values.items():
        arr = np.broadcast_to(np.asarray(v, dtype=np.int64 if k == "seed" else np.float64), (n,))
        out[k] = arr.copy()
    return out


def memory_estimate(n_configs: int, dim: int, steps: int, record_every: int = 1, n_series: int = len(RECORDABLE),
                    itemsize: int = 8) -> int:
    """Bytes a run of ``n_configs`` x ``steps`` needs, roughly: the recorded series (norm, ``n_series``
    more and a learning rate, each ``n_records x n_configs``; x3 for the copies the analysis makes)
    and the state (weights, gradient, velocity, noise and scratch: ~8 arrays of ``n_configs x dim``)."""
    n_rec = (int(steps) - 1) // int(record_every) + 1
    return int(itemsize * (3 * n_rec * n_configs * (2 + n_series) + 8 * n_configs * dim))


def check_run_memory(n_configs: int, dim: int, steps: int, record_every: int = 1, n_series: int = len(RECORDABLE),
                     itemsize: int = 8) -> None:
    """Refuse (``MemoryError``, one line) a run that cannot fit in the available memory, before any
    allocation (:func:`memory_estimate`, :func:`cli.resources.check_memory`)."""
    check_memory(memory_estimate(n_configs, dim, steps, record_every, n_series, itemsize),
                 f"{n_configs:,} configuration(s) x {int(steps):,} steps (recorded every {record_every})",
                 "record less often (--record-every), or run fewer steps, seeds or settings")


def validate_run(steps, record_every, optimizer, cfg):
    """Check the run's options and every configuration before the first step."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if int(record_every) != record_every or record_every < 1:
        raise ValueError(f"record_every must be a positive integer, got {record_every!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    eta, lam, mu = cfg["eta"], cfg["lam"], cfg["momentum"]
    if not (np.all(np.isfinite(eta)) and np.all(eta > 0)):
        raise ValueError("eta must be finite and > 0")
    if not (np.all(np.isfinite(lam)) and np.all(lam >= 0) and np.all(eta * lam < 1)):
        raise ValueError("lam must be finite, >= 0 and eta*lam < 1")
    if not np.all((mu >= 0) & (mu < 1)):
        raise ValueError("momentum must lie in [0, 1)")
    if optimizer in ("wrs", "sphere") and np.any(lam != 0):
        raise ValueError(f"optimizer={optimizer!r} replaces weight decay: use lam=0")
    if optimizer == "sphere" and np.any(mu != 0):
        raise ValueError("optimizer='sphere' is plain projected SGD: use momentum=0")
    if np.any(~np.isfinite(cfg["noise"])) or np.any(cfg["noise"] < 0):
        raise ValueError("noise must be finite and >= 0")


def _texp_lrs(cfg, steps):
    """Per-configuration TEXP schedules: lrs ``(steps, B)`` and initial velocities factor."""
    scheds = [texp_schedule(e, l, m, steps) for e, l, m in zip(cfg["eta"], cfg["lam"], cfg["momentum"])]
    lrs = np.stack([s.lrs for s in scheds], axis=1)
    if not np.all(np.isfinite(lrs)):
        raise ValueError("the TEXP learning rate overflows for this many steps; use fewer steps or "
                         "smaller eta*lam")
    return lrs, scheds


def run(objective, x0, eta, lam=0.0, *, steps: int, momentum=0.0, noise=0.0, seeds=None,
        optimizer: str = "sgd", target_norm: float = 1.0, blocks=None, record=RECORDABLE,
        record_every: int = 1, dtype=np.float64, progress=None) -> Trajectory:
    r"""Advance ``B`` configurations of ``objective`` together for ``steps`` iterations.

    Parameters
    ----------
    objective : simulate.objectives.Objective
        The SI loss (its ``batch_size`` selects mini-batch SGD).
    x0 : ndarray, shape (B, d)
        Initial weights, one row per configuration.
    eta, lam, momentum, noise : float or array_like, shape (B,)
        Learning rate, weight decay, heavy-ball coefficient and effective gradient-noise scale
        :math:`\sigma` (:func:`simulate.noise.tangent_noise`).
    seeds : array_like of int, shape (B,), optional
        Seeds of the noise / mini-batch streams (default ``0`` for all).
    optimizer : {'sgd', 'wrs', 'texp', 'sphere'}
        See the module docstring.
    target_norm : float
        Norm kept by ``'wrs'``.
    blocks : sequence of int, optional
        ``'sphere'`` only: sizes of the SI tensors along a row, each kept at its own norm
        (per-layer variant); ``None`` keeps the norm of the whole row.
    record : sequence of str
        Any of ``'loss'``, ``'eff_grad_norm'``, ``'angle'`` (the norm is always recorded).
    record_every : int
        Record every this many iterations.
    dtype : numpy dtype
        Working precision (float64 default).
    progress : cli.Progress, optional
        Updated as steps complete.

    Returns
    -------
    Trajectory
        On ``KeyboardInterrupt`` the steps completed so far, with ``interrupted=True``.
    """
    x = np.array(x0, dtype=dtype, copy=True)
    if x.ndim != 2:
        raise ValueError(f"x0 must have shape (B, d), got {x.shape}")
    B, d = x.shape
    cfg = broadcast_configs(B, eta=eta, lam=lam, momentum=momentum, noise=noise,
                            seed=0 if seeds is None else seeds)
    validate_run(steps, record_every, optimizer, cfg)
    check_run_memory(B, d, steps, record_every, len(tuple(record)), np.dtype(dtype).itemsize)
    if blocks is not None and optimizer != "sphere":
        raise ValueError(f"blocks are for optimizer='sphere' (per-layer projection), not {optimizer!r}")
    record = tuple(record)
    unknown = set(record) - set(RECORDABLE)
    if unknown:
        raise ValueError(f"cannot record {sorted(unknown)}; choose from {RECORDABLE}")
    col = {k: cfg[k][:, None].astype(dtype) for k in ("eta", "lam", "momentum", "noise")}
    use_momentum, noisy = bool(np.any(cfg["momentum"] > 0)), bool(np.any(cfg["noise"] > 0))
    noise_streams, data_streams = SeedStreams(cfg["seed"], 1), SeedStreams(cfg["seed"], 2)
    lrs, velocity = None, None
    if optimizer == "texp":
        lrs, scheds = _texp_lrs(cfg, steps)
        if use_momentum:
            velocity = np.stack([s.initial_velocity(row) if s.momentum else np.zeros_like(row)
                                 for s, row in zip(scheds, x)]).astype(dtype)

    n_rec = (int(steps) - 1) // record_every + 1
    rec = {k: np.full((n_rec, B), np.nan, dtype) for k in ("norm",) + record}
    lr_rec = np.full((n_rec, B), np.nan) if lrs is not None else None
    done, r = 0, 0
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for t in range(int(steps)):
                batch = (data_streams.minibatch(objective.n_samples, objective.batch_size)
                         if objective.batch_size else None)
                loss, g = objective.loss_and_grad(x, batch)
                if noisy:
                    g = g + tangent_noise(x, col["noise"], noise_streams.normal(d, dtype))
                rho = np.linalg.norm(x, axis=1)
                mu = col["momentum"] if use_momentum else 0.0
                v_in = velocity if use_momentum else None
                if optimizer == "wrs":
                    x_new, velocity = wrs_step(x, g, col["eta"], target_norm=target_norm,
                                               momentum=mu, velocity=v_in)
                elif optimizer == "sphere":
                    x_new = sphere_step(x, g, col["eta"], blocks=blocks)
                else:
                    eta_t = col["eta"] if lrs is None else lrs[t][:, None].astype(dtype)
                    lam_t = col["lam"] if lrs is None else 0.0
                    x_new, velocity = sgd_step(x, g, eta_t, lam_t, momentum=mu, velocity=v_in)
                if t % record_every == 0:
                    _record(rec, r, rho, loss, g, x, x_new)
                    if lr_rec is not None:
                        lr_rec[r] = lrs[t]
                    r += 1
                x, done = x_new, t + 1
                if progress is not None and (done % 100 == 0 or done == steps):
                    progress.update(done - progress.n)
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
    return Trajectory(config=cfg, iterations=np.arange(r) * record_every,
                      norm=rec["norm"][:r], loss=_cut(rec.get("loss"), r),
                      eff_grad_norm=_cut(rec.get("eff_grad_norm"), r), angle=_cut(rec.get("angle"), r),
                      lr=_cut(lr_rec, r), x_final=x, record_every=int(record_every), steps_done=done,
                      optimizer=optimizer, method="generic", interrupted=interrupted,
                      objective=objective.describe())


def _record(rec, r, rho, loss, g, x, x_new):
    rec["norm"][r] = rho
    if "loss" in rec:
        rec["loss"][r] = loss
    if "eff_grad_norm" in rec:
        rec["eff_grad_norm"][r] = effective_grad_norm(np.linalg.norm(g, axis=1), rho)
    if "angle" in rec:
        rec["angle"][r] = angular_update(x, x_new)


def _cut(arr, r):
    return None if arr is None else arr[:r]
