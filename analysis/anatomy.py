r"""The anatomy of a period, and a whole-period prediction that uses nothing of the period it predicts.

A period of SGD + WD on SI weights (Lobacheva et al., NeurIPS 2021, Sec. 4) has two phases:

* **rise** -- from the destabilisation onset :math:`e_k` to the norm's maximum :math:`p_k`: the
  loss is high, large gradients push the norm up (re-learning);
* **decay** -- from :math:`p_k` to the next onset :math:`e_{k+1}`: the loss is small and the norm
  decays almost freely toward the critical norm.

The period formula (:func:`theory.stability.predicted_period_length`) models the decay only:
:math:`\ln(\rho_{\max}/\rho_{e_{k+1}})/(-\ln\alpha)` with :math:`\alpha = 1-\eta\lambda`
(``decay_predicted``); :func:`theory.equilibrium.approach_steps` adds the gradient's push at the
decay's RMS effective gradient norm (``decay_approach``). The rise is not modelled: its length
is measured, and :func:`power_law` fits how it scales with :math:`\eta\lambda`.

:func:`leave_one_out` predicts every period of a run from the other data only: its decay from
the formula with :math:`\rho_{\max}` and :math:`\rho_c` = medians over the *earlier* periods of the
same run, its rise from the power law fitted on the runs at *other* values of
:math:`\eta\lambda`. All lengths are in iterations.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats

from theory.equilibrium import approach_steps
from theory.stability import norm_decay_factor

__all__ = ["PeriodPhases", "PowerLaw", "period_anatomy", "power_law", "leave_one_out", "RunAnatomy"]


class PeriodPhases(NamedTuple):
    """One complete period split at the norm's maximum (iterations, norms)."""

    onset: int              # e_k, the destabilisation that starts the period
    peak: int               # p_k, the norm's maximum on [e_k, e_{k+1})
    next_onset: int         # e_{k+1}
    rise: int               # p_k - e_k
    decay: int              # e_{k+1} - p_k
    rho_onset: float
    rho_max: float
    rho_next: float         # the norm at e_{k+1}: where the decay ended (the critical norm)
    decay_predicted: float  # ln(rho_max/rho_next) / (-ln alpha): free decay
    decay_approach: float   # approach_steps at the decay's RMS effective gradient norm (NaN without it)

    @property
    def length(self) -> int:
        return self.next_onset - self.onset


class PowerLaw(NamedTuple):
    """``y = prefactor * x**exponent``, fitted by least squares in log-log, with a t-interval."""

    exponent: float
    exponent_lo: float
    exponent_hi: float
    prefactor: float
    n: int
    confidence: float

    def __call__(self, x):
        return self.prefactor * np.asarray(x, dtype=float) ** self.exponent


def period_anatomy(iteration, norm, event_iterations, eta: float, lam: float, momentum: float = 0.0,
                   eff_grad_norm=None) -> list[PeriodPhases]:
    """Split every complete period of a norm trace into rise and decay.

    Parameters
    ----------
    iteration, norm : 1-D arrays
        The recorded SI norm :math:`\\rho` and the iterations it was recorded at (increasing).
    event_iterations : sequence of int
        Destabilisation onsets (e.g. :func:`analysis.periods.detect_periods`), increasing.
    eta, lam, momentum : float
        The run's SGD hyper-parameters (:math:`\\lambda > 0`).
    eff_grad_norm : 1-D array, optional
        Effective gradient norm :math:`\\rho\\|\\nabla f\\|` at the same records (for ``decay_approach``).
    """
    it = np.asarray(iteration, dtype=float)
    rho = np.asarray(norm, dtype=float)
    g = None if eff_grad_norm is None else np.asarray(eff_grad_norm, dtype=float)
    alpha = float(norm_decay_factor(eta, lam, momentum))
    out = []
    ev = [int(e) for e in event_iterations]
    for a, b in zip(ev[:-1], ev[1:]):
        i0, i1 = np.searchsorted(it, [a, b])
        if i1 >= it.size or i1 - i0 < 2:
            continue
        j = i0 + int(np.argmax(rho[i0:i1]))
        r_max, r_next = float(rho[j]), float(rho[i1])
        free = math.log(r_max / r_next) / -math.log(alpha) if r_max > r_next else 0.0
        approach = float("nan")
        if g is not None and r_max > r_next and i1 > j:
            G = float(np.sqrt(np.nanmean(g[j:i1] ** 2)))
            approach = float(approach_steps(eta, lam, G, r_max, r_next)) if G > 0 else free
        out.append(PeriodPhases(a, int(it[j]), b, int(it[j]) - a, b - int(it[j]), float(rho[i0]), r_max, r_next,
                                free, approach))
    return out


def power_law(x, y, confidence: float = 0.95) -> PowerLaw | None:
    """Least-squares fit of ``log y = log c + k log x`` with the ``confidence`` t-interval of k.

    Needs >= 3 positive finite pairs (None otherwise); with exactly 2 distinct x the interval is
    infinite."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[keep]), np.log(y[keep])
    if lx.size < 3 or np.ptp(lx) == 0:
        return None
    fit = stats.linregress(lx, ly)
    half = stats.t.ppf(0.5 + confidence / 2, lx.size - 2) * fit.stderr if lx.size > 2 else math.inf
    return PowerLaw(float(fit.slope), float(fit.slope - half), float(fit.slope + half), float(math.exp(fit.intercept)),
                    int(lx.size), confidence)


class RunAnatomy(NamedTuple):
    """What :func:`leave_one_out` needs of one run."""

    eta: float
    lam: float
    momentum: float
    periods: list      # of PeriodPhases


def _rise_fit(runs: list[RunAnatomy], skip_eta_lam: float, confidence: float) -> PowerLaw | None:
    x, y = [], []
    for r in runs:
        if math.isclose(r.eta * r.lam, skip_eta_lam, rel_tol=1e-9):
            continue
        rises = [p.rise for p in r.periods if p.rise > 0]
        if rises:
            x.append(r.eta * r.lam)
            y.append(float(np.median(rises)))
    if len(set(x)) < 2:
        return None
    if len(x) == 2:      # two points: the line through them, no interval
        k = math.log(y[1] / y[0]) / math.log(x[1] / x[0])
        return PowerLaw(k, -math.inf, math.inf, y[0] / x[0] ** k, 2, confidence)
    return power_law(x, y, confidence)


def leave_one_out(runs: list[RunAnatomy], confidence: float = 0.95) -> list[dict]:
    """Predict each run's periods without using them (see the module docstring).

    Period ``k >= 1`` of a run is predicted as ``rise(eta*lambda) + decay_k`` with ``rise`` the power
    law fitted on the median rises of the runs at other values of eta*lambda, and
    ``decay_k = ln(median rho_max / median rho_next over periods < k) / (-ln alpha)``. Returns one
    dict per run: ``predicted`` and ``measured`` lengths of the predicted periods, their means,
    ``measured_over_predicted`` (ratio of the means; NaN without a prediction), the rise fit used
    (``rise_exponent``, ``rise_predicted``) and the mean predicted decay.
    """
    out = []
    for r in runs:
        eta_lam = r.eta * r.lam
        fit = _rise_fit(runs, eta_lam, confidence)
        rise = float(fit(eta_lam)) if fit is not None else float("nan")
        alpha = float(norm_decay_factor(r.eta, r.lam, r.momentum))
        predicted, measured, decays = [], [], []
        for k in range(1, len(r.periods)):
            earlier = r.periods[:k]
            top = float(np.median([p.rho_max for p in earlier]))
            bottom = float(np.median([p.rho_next for p in earlier]))
            decay = math.log(top / bottom) / -math.log(alpha) if top > bottom else 0.0
            decays.append(decay)
            predicted.append(rise + decay)
            measured.append(r.periods[k].length)
        mean_p = float(np.mean(predicted)) if predicted else float("nan")
        mean_m = float(np.mean(measured)) if measured else float("nan")
        out.append({"eta": r.eta, "lam": r.lam, "eta_lam": eta_lam, "predicted": predicted, "measured": measured,
                    "predicted_period": mean_p, "measured_period": mean_m,
                    "measured_over_predicted": mean_m / mean_p if predicted and mean_p > 0 else float("nan"),
                    "rise_predicted": rise, "decay_predicted": float(np.mean(decays)) if decays else float("nan"),
                    "rise_exponent": fit.exponent if fit is not None else float("nan")})
    return out
