r"""The three regimes of training on the sphere at a fixed effective LR, and their map over it.

Kodryan, Lobacheva, Nakhodnov & Vetrov (NeurIPS 2022) train SI weights with their norm
held fixed (:mod:`theory.sphere`) and find, as the effective LR :math:`\tilde\eta` grows,
**convergence** (the loss keeps falling towards a minimum), a **chaotic equilibrium** (loss and
gradient statistics fluctuate around stationary, non-zero levels) and **divergence** (nothing is
learned: the loss stays at the level of a random guess).

Classification rule (:func:`classify_regime`), applied to the end of one run
-----------------------------------------------------------------------------
Inputs: the recorded loss :math:`L_t` (mini-batch or full-batch), the effective gradient norm
:math:`G_t = \rho_t\|\nabla f(x_t)\|` (:func:`theory.dynamics.effective_grad_norm`), the angle
:math:`\theta_t` of each step (:func:`theory.dynamics.angular_update`; on the sphere
:math:`\theta_t = \arctan(\tilde\eta G_t)`, :func:`theory.sphere.sphere_angular_update`) and a
reference loss :math:`L_0` = the loss of a random guess (:func:`chance_loss`: :math:`\ln k` for
:math:`k` classes, :math:`\operatorname{tr}A/(2d)` for the normalised quadratic, the mean of
:math:`f` over the uniform sphere). Over the last ``tail`` fraction of the records, cut into
``windows`` equal windows with the median of each (robust to mini-batch noise):

* ``level`` = median loss of the last window divided by :math:`L_0`;
* ``angle`` = median angle per step of the last window (radians);
* ``loss_trend``, ``grad_trend`` = least-squares slopes of log(window median) against
  log(window centre iteration): the power of :math:`t` by which :math:`L` and :math:`G` change
  (0 for a stationary series, -1 for :math:`1/t`, very negative for an exponential decay).

Then, in this order:

1. **divergence** -- a non-finite loss, gradient or angle anywhere, or ``level >= diverge_level`` (0.9)
   with ``angle >= diverge_angle`` (0.1 rad): no better than a random guess while every step turns
   the weights by a sizeable angle (a random walk on the sphere that forgets its direction within
   tens of steps; in the runs of ``python -m paper_figures regimes --quick`` every divergent run turns
   by 0.78 rad or more, the converging and chaotic network runs by 0.15 rad or less). A loss at
   the random-guess level with *tiny* steps is a run that has not learned yet, not a divergent one,
   and falls to the next rules;
2. **convergence** -- ``level <= converge_level`` (1e-3: at the minimum for losses whose minimum
   is 0), or ``loss_trend <= -converge_slope`` or ``grad_trend <= -converge_slope`` (0.5): the
   loss or the effective gradient norm is still falling at least like :math:`t^{-1/2}`;
3. **chaotic equilibrium** -- otherwise: loss and gradient stationary (to within
   :math:`t^{\pm 1/2}`), at a level between the minimum and a random guess.

The rule classifies where a run *is* at its end; a short run at a small ELR that is still
descending is "convergence", which is how the map of a short run can differ from a long one.

Relation to the destabilisation condition (:mod:`theory.stability`, relation 4 of
:mod:`theory.sphere`): projected GD can settle in a minimum of sphere sharpness :math:`h` only if
:math:`\tilde\eta h < 2`; on the normalised quadratic (one minimum, :math:`h = a_{\max} - a_{\min}`)
the convergence / chaos boundary of GD is exactly :math:`\tilde\eta_c = 2/h`
(:func:`theory.stability.critical_effective_lr`), checked in ``tests/test_simulate_regimes.py``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from analysis.periods import tail_start

__all__ = ["REGIMES", "RegimeStats", "regime_statistics", "classify_regime", "regime_boundaries"]

REGIMES = ("convergence", "chaotic", "divergence")
_TINY = 1e-300


@dataclass(frozen=True)
class RegimeStats:
    """The statistics of :func:`classify_regime` (module docstring) and the label."""

    regime: str
    level: float
    angle: float
    loss_trend: float
    grad_trend: float
    final_loss: float
    final_grad: float

    def to_dict(self) -> dict:
        return asdict(self)


def _window_medians(t: np.ndarray, y: np.ndarray, windows: int) -> tuple[np.ndarray, np.ndarray]:
    parts = np.array_split(np.arange(y.size), min(windows, y.size))
    centre = np.array([np.mean(t[p]) for p in parts])
    return centre, np.array([np.median(y[p]) for p in parts])


def _log_slope(t: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log t (0 when fewer than two points)."""
    if t.size < 2:
        return 0.0
    lt, ly = np.log(t), np.log(np.maximum(y, _TINY))
    lt = lt - lt.mean()
    den = float(lt @ lt)
    return float(lt @ (ly - ly.mean()) / den) if den > 0 else 0.0


def regime_statistics(loss, eff_grad_norm, angle, iterations=None, *, reference_loss: float, tail: float = 0.5,
                      windows: int = 8, diverge_level: float = 0.9, diverge_angle: float = 0.1,
                      converge_level: float = 1e-3, converge_slope: float = 0.5) -> RegimeStats:
    r"""Statistics and regime of one run (the rule of the module docstring).

    Parameters
    ----------
    loss, eff_grad_norm, angle : array_like, shape (n,)
        Recorded loss, effective gradient norm :math:`G_t` and angle of the step (radians), in
        recording order.
    iterations : array_like of int, shape (n,), optional
        Iteration of each record (default ``0, 1, ...``); times are taken as ``iteration + 1``.
    reference_loss : float
        :math:`L_0 > 0`, the loss of a random guess (:func:`chance_loss`).
    tail, windows, diverge_level, diverge_angle, converge_level, converge_slope
        The rule's parameters (module docstring).
    """
    loss = np.asarray(loss, dtype=np.float64).reshape(-1)
    grad = np.asarray(eff_grad_norm, dtype=np.float64).reshape(-1)
    ang = np.asarray(angle, dtype=np.float64).reshape(-1)
    if not loss.shape == grad.shape == ang.shape or loss.size < 2:
        raise ValueError("loss, eff_grad_norm and angle must have the same length >= 2, got "
                         f"{loss.size}, {grad.size} and {ang.size}")
    t = np.arange(loss.size, dtype=np.float64) if iterations is None else np.asarray(iterations, dtype=np.float64)
    if t.shape != loss.shape:
        raise ValueError(f"iterations has length {t.size}, the series {loss.size}")
    if not (np.isfinite(reference_loss) and reference_loss > 0):
        raise ValueError(f"reference_loss must be finite and > 0, got {reference_loss!r}")
    if not (windows >= 2 and diverge_level > converge_level > 0 and converge_slope > 0 and diverge_angle > 0):
        raise ValueError("need windows >= 2, diverge_level > converge_level > 0, converge_slope > 0 and "
                         "diverge_angle > 0")
    if not (np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)) and np.all(np.isfinite(ang))):
        nan = float("nan")
        return RegimeStats("divergence", nan, nan, nan, nan, nan, nan)
    lo = tail_start(loss.size, tail)
    tc, lm = _window_medians(t[lo:] + 1, loss[lo:], windows)
    _, gm = _window_medians(t[lo:] + 1, grad[lo:], windows)
    step_angle = float(_window_medians(t[lo:], ang[lo:], windows)[1][-1])
    level = float(lm[-1] / reference_loss)
    loss_trend, grad_trend = _log_slope(tc, lm), _log_slope(tc, gm)
    if level >= diverge_level and step_angle >= diverge_angle:
        regime = "divergence"
    elif level <= converge_level or min(loss_trend, grad_trend) <= -converge_slope:
        regime = "convergence"
    else:
        regime = "chaotic"
    return RegimeStats(regime, level, step_angle, loss_trend, grad_trend, float(lm[-1]), float(gm[-1]))


def classify_regime(loss, eff_grad_norm, angle, iterations=None, *, reference_loss: float, **rule) -> str:
    """``'convergence'``, ``'chaotic'`` or ``'divergence'`` (:func:`regime_statistics`)."""
    return regime_statistics(loss, eff_grad_norm, angle, iterations, reference_loss=reference_loss, **rule).regime


def regime_boundaries(eff_lrs, labels) -> dict:
    r"""Boundaries of the regimes along a sweep of ELRs (one label per run).

    Returns ``{"convergence_upper": b1, "divergence_lower": b2, "ordered": ok}``. ``b1`` separates
    the runs labelled convergence from the others, ``b2`` the runs labelled divergence from the
    others: each is the threshold on :math:`\tilde\eta` that misplaces the fewest runs (the smallest
    such threshold when several tie), placed at the geometric mean of the two neighbouring ELRs;
    ``None`` when one side is empty. ``ok`` is True when both thresholds misplace no run, i.e.
    the labels are monotone in :math:`\tilde\eta`; a single stray label then moves no boundary.
    """
    e = np.asarray(eff_lrs, dtype=np.float64).reshape(-1)
    lab = np.asarray(labels).reshape(-1)
    if e.size != lab.size:
        raise ValueError(f"{e.size} ELRs but {lab.size} labels")
    unknown = set(lab.tolist()) - set(REGIMES)
    if unknown:
        raise ValueError(f"unknown regime labels {sorted(unknown)}")
    order = np.argsort(e, kind="stable")
    e, rank = e[order], np.array([REGIMES.index(v) for v in lab[order]], dtype=int)
    out, ordered = {}, True
    for k, key in enumerate(("convergence_upper", "divergence_lower")):
        high = rank > k
        if high.all() or not high.any():
            out[key] = None
            continue
        # errors of a threshold before position j: high runs below it + low runs above it
        errors = np.array([high[:j].sum() + (~high[j:]).sum() for j in range(1, e.size)])
        j = int(np.argmin(errors)) + 1
        out[key] = float(np.sqrt(e[j - 1] * e[j]))
        ordered = ordered and errors[j - 1] == 0
    out["ordered"] = bool(ordered)
    return out
