r"""One-call sweeps over :math:`(\eta, \lambda, \mu, \sigma, \text{seed})` and their classification.

:func:`sweep` builds the configurations (Cartesian grid or zipped lists), picks the fast
eigenbasis path for the normalised quadratic (:mod:`simulate.fast_quadratic`) or the generic
engine (:mod:`simulate.engine`) and returns one :class:`~simulate.engine.Trajectory` with all
configurations as columns. :func:`classify` labels each configuration by its behaviour
(:data:`BEHAVIOURS`) for a phase diagram over :math:`(\eta, \lambda)`.
"""
from __future__ import annotations

import itertools

import numpy as np

from analysis.periods import PeriodReport, detect_periods, tail_start
from simulate.engine import RECORDABLE, Trajectory, check_run_memory, run
from simulate.fast_quadratic import run_fast
from simulate.objectives import NormalizedQuadratic, Objective, make_objective

__all__ = ["make_grid", "sweep", "classify", "period_reports", "BEHAVIOURS"]

#: the late-time behaviour of a toy run with WD (:func:`classify`); the three regimes of training on
#: the sphere are :data:`analysis.regimes.REGIMES`
BEHAVIOURS = ("equilibrium", "periodic", "diverged", "transient")


def make_grid(eta=1.0, lam=1e-3, seeds=(0,), momentum=0.0, noise=0.0, *, grid: bool = True) -> dict:
    """Configurations as ``(B,)`` arrays ``eta, lam, momentum, noise, seed``.

    With ``grid=True`` every combination of the given values (order: eta, lam, momentum,
    noise, seed -- the seed varies fastest); with ``grid=False`` the inputs are broadcast
    against each other (zipped).
    """
    vals = {"eta": eta, "lam": lam, "momentum": momentum, "noise": noise, "seed": seeds}
    arrays = {k: np.atleast_1d(np.asarray(v)).reshape(-1) for k, v in vals.items()}
    if grid:
        combos = list(itertools.product(*arrays.values()))
        out = {k: np.array([c[i] for c in combos]) for i, k in enumerate(arrays)}
    else:
        b = np.broadcast_arrays(*arrays.values())
        out = {k: np.array(v) for k, v in zip(arrays, b)}
    out["seed"] = out["seed"].astype(np.int64)
    for k in ("eta", "lam", "momentum", "noise"):
        out[k] = out[k].astype(np.float64)
    return out


def sweep(objective="quadratic", eta=1.0, lam=1e-3, seeds=(0,), *, steps: int = 1000,
          momentum=0.0, noise=0.0, optimizer: str = "sgd", grid: bool = True,
          init_norm: float = 1.0, record=RECORDABLE, record_every: int = 1, method: str = "auto",
          dtype=None, progress=None, objective_kwargs: dict | None = None) -> Trajectory:
    r"""Run every configuration of a sweep together and return their curves.

    Parameters
    ----------
    objective : str or simulate.objectives.Objective
        ``'quadratic'``, ``'classifier'``, ``'mlp'`` (built with ``objective_kwargs``) or an
        instance.
    eta, lam, momentum, noise, seeds : scalar or sequence
        Values of the learning rate, weight decay, momentum, effective gradient-noise scale
        and seeds; combined by :func:`make_grid`.
    steps : int
        Iterations per configuration.
    optimizer : {'sgd', 'wrs', 'texp'}
        See :mod:`simulate.engine`.
    init_norm : float
        Norm of the initial weights (direction from the seed).
    record, record_every
        What to record and how often (see :func:`simulate.engine.run`).
    method : {'auto', 'fast', 'generic'}
        ``'auto'`` uses the eigenbasis fast path for the quadratic with ``'sgd'``.
    dtype : numpy dtype, optional
        Default float32 on the fast path, float64 otherwise.

    Returns
    -------
    Trajectory
        Curves of shape ``(n_records, B)``; ``traj.config`` lists the configurations.

    Examples
    --------
    >>> traj = sweep("quadratic", eta=1.0, lam=[1e-3, 2e-3], seeds=[0, 1], steps=2000, noise=1e-8)
    >>> classify(traj)  # doctest: +SKIP
    array(['periodic', 'periodic', 'periodic', 'periodic'], dtype='<U11')
    """
    obj = objective if isinstance(objective, Objective) else make_objective(objective, **(objective_kwargs or {}))
    cfg = make_grid(eta, lam, seeds, momentum, noise, grid=grid)
    if method not in ("auto", "fast", "generic"):
        raise ValueError(f"method must be 'auto', 'fast' or 'generic', got {method!r}")
    fast_ok = isinstance(obj, NormalizedQuadratic) and optimizer == "sgd"
    if method == "fast" and not fast_ok:
        raise ValueError("the fast path needs the quadratic objective and optimizer='sgd'")
    use_fast = fast_ok and method != "generic"
    check_run_memory(cfg["eta"].size, obj.dim, steps, record_every, len(tuple(record)),
                     np.dtype(dtype or (np.float32 if use_fast else np.float64)).itemsize)   # before x0
    x0 = obj.init(cfg["seed"], norm=init_norm)
    kw = dict(steps=steps, momentum=cfg["momentum"], noise=cfg["noise"], seeds=cfg["seed"],
              record=record, record_every=record_every, progress=progress)
    if use_fast:
        return run_fast(obj, x0, cfg["eta"], cfg["lam"], dtype=dtype or np.float32, **kw)
    return run(obj, x0, cfg["eta"], cfg["lam"], optimizer=optimizer, dtype=dtype or np.float64, **kw)


def _finite_positive(traj: Trajectory, i: int) -> bool:
    norm = traj.norm[:, i]
    ok = np.all(np.isfinite(norm)) and np.all(norm > 0)
    if traj.loss is not None:
        ok = ok and np.all(np.isfinite(traj.loss[:, i]))
    if ok and norm.size:
        span = np.log(np.max(norm)) - np.log(np.min(norm))
        ok = span < np.log(1e12)          # 12 orders of magnitude: collapse or blow-up
    return bool(ok)


def period_reports(traj: Trajectory, *, tail: float = 1.0, **period_kw) -> list[PeriodReport | None]:
    """:func:`~analysis.periods.detect_periods` for every configuration (``None`` when diverged).

    ``tail`` is the fraction of the records used (from the end); events are indices into that
    tail.
    """
    lo = tail_start(traj.norm.shape[0], tail)
    out = []
    for i in range(traj.n_configs):
        if not _finite_positive(traj, i):
            out.append(None)
            continue
        loss = None if traj.loss is None else traj.loss[lo:, i]
        out.append(detect_periods(traj.norm[lo:, i], loss=loss, step=traj.record_every, **period_kw))
    return out


def classify(traj: Trajectory, *, tail: float = 0.5, trend_tol: float = 0.05, **period_kw) -> np.ndarray:
    r"""Label each configuration of a sweep by its late-time behaviour.

    Over the last ``tail`` fraction of the records:

    * ``'diverged'`` -- a non-finite norm or loss anywhere, or a norm spanning more than 12
      orders of magnitude;
    * ``'periodic'`` -- at least two complete periods (:func:`analysis.periods.detect_periods`);
    * ``'transient'`` -- no period but :math:`\log\rho` still drifts: the medians of its first
      and last tenth of the tail differ by more than ``trend_tol`` (e.g. noiseless GD that has
      not destabilised yet);
    * ``'equilibrium'`` -- otherwise (a settled norm, Lobacheva et al., 2021, Sec. 3).

    Returns
    -------
    ndarray of str, shape (B,)
    """
    labels = []
    lo = tail_start(traj.norm.shape[0], tail)
    for i, rep in enumerate(period_reports(traj, tail=tail, **period_kw)):
        if rep is None:
            labels.append("diverged")
        elif rep.is_periodic:
            labels.append("periodic")
        else:
            y = np.log(traj.norm[lo:, i].astype(np.float64))
            k = max(y.size // 10, 1)
            drift = abs(np.median(y[-k:]) - np.median(y[:k]))
            labels.append("transient" if drift > trend_tol else "equilibrium")
    return np.array(labels)
