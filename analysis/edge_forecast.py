r"""Forecast the next destabilisation from the batch sharpness on the sphere (no future data).

The measured quantity is :math:`E_t = \tilde\eta_t h_{B_t} = \eta s_{B_t}`
(:mod:`nets.monitor.batch_sharpness`: the batch sharpness of the step's own mini-batch), and the
step is unstable once :math:`E` exceeds :math:`E_c = 2(1+\mu-\eta\lambda)`
(:func:`theory.stability.projected_stability_threshold`; Andreyev & Beneventano, 2024, find the
batch sharpness of plain SGD hovering at :math:`2/\eta`). During the decay phase of a period
:math:`\tilde\eta = \eta/\rho^2` grows by :math:`\alpha^{-2}` per step, so with :math:`h_B`
constant :math:`\ln E` grows linearly at the rate :math:`-2\ln\alpha`.

Per complete period (onset :math:`e_k`, norm maximum :math:`p_k`, next onset :math:`e_{k+1}`,
:class:`analysis.anatomy.PeriodPhases`) the forecast is issued at the ``min_points``-th
measurement after :math:`p_k` (time :math:`t_i`), from the measurements on :math:`[p_k, t_i]`:

* ``level`` -- the slope fixed at :math:`-2\ln\alpha` (free decay at constant :math:`h_B`), the
  level at :math:`t_i` the mean of :math:`\ln E - \text{slope}\,(t - t_i)` over the window
  (the expectation over batches), crossing :math:`\ln E_c` at
  :math:`\hat t = t_i + (\ln E_c - \text{level})/\text{slope}`;
* ``trend`` -- the same with the slope fitted by least squares on the window (NaN when it is not
  positive): it follows a drifting :math:`h_B`, at the price of noise;
* ``persistence`` -- the next period lasts as long as the previous one (issued at :math:`e_k`).

Errors are :math:`\hat t - e_{k+1}`, also as a fraction of the period :math:`e_{k+1}-e_k`.
"""
from __future__ import annotations

import math

import numpy as np

from analysis.forecast import finite_median
from theory.stability import norm_decay_factor

__all__ = ["edge_forecasts", "hover_statistics"]

METHODS = ("level", "trend")


def edge_forecasts(iteration, eff_sharpness, periods, *, eta: float, lam: float, threshold: float,
                   momentum: float = 0.0, min_points: int = 5) -> dict:
    """The forecasts of the module docstring for every period; returns per-period rows and medians.

    ``iteration``, ``eff_sharpness``: the batch-sharpness measurements (:math:`E`, increasing
    iterations); ``periods``: :class:`analysis.anatomy.PeriodPhases` of the run.
    """
    it = np.asarray(iteration, dtype=float)
    E = np.asarray(eff_sharpness, dtype=float)
    good = np.isfinite(E) & (E > 0)
    it, logE = it[good], np.log(E[good])
    slope0 = -2 * math.log(float(norm_decay_factor(eta, lam, momentum)))
    target = math.log(threshold)
    rows = []
    for k, p in enumerate(periods):
        row = {"onset": p.onset, "peak": p.peak, "next_onset": p.next_onset, "length": p.length}
        if k:
            prev = periods[k - 1]
            row["persistence"] = p.onset + (p.onset - prev.onset)
        idx = np.flatnonzero((it >= p.peak) & (it < p.next_onset))
        if idx.size >= min_points:
            win = idx[:min_points]
            t_i = float(it[win[-1]])
            dt, y = it[win] - t_i, logE[win]
            fitted = float(np.polyfit(dt, y, 1)[0]) if np.ptp(dt) > 0 else float("nan")
            row["issued"] = t_i
            for name, s in (("level", slope0), ("trend", fitted)):
                if not (math.isfinite(s) and s > 0):
                    row[name] = float("nan")
                    continue
                level = float(np.mean(y - s * dt))
                row[name] = t_i + max(target - level, 0.0) / s
            row["trend_slope"], row["free_decay_slope"] = fitted, slope0
        for name in (*METHODS, "persistence"):
            f = row.get(name, float("nan"))
            row[f"{name}_error"] = f - p.next_onset if math.isfinite(f) else float("nan")
            row[f"{name}_error_fraction"] = row[f"{name}_error"] / p.length
        rows.append(row)
    summary = {"threshold": threshold, "min_points": min_points, "n": len(rows), "periods": rows}
    for name in (*METHODS, "persistence"):
        fr = [abs(r[f"{name}_error_fraction"]) for r in rows]
        summary[name] = {"median_abs_error_fraction": finite_median(fr),
                         "median_error_fraction": finite_median([r[f"{name}_error_fraction"] for r in rows]),
                         "n": int(sum(math.isfinite(x) for x in fr))}
    lead = [(r["next_onset"] - r["issued"]) / r["length"] for r in rows if "issued" in r]
    summary["median_horizon_fraction"] = finite_median(lead)
    return summary


def hover_statistics(iteration, eff_sharpness, periods, threshold: float, tail: float = 0.2) -> dict:
    """Where :math:`E = \\tilde\\eta h_B` sits relative to the threshold: the median of
    :math:`E/E_c` over the last ``tail`` of every decay phase (just before the onset), over the
    rest of the decay phases, and the fraction of all decay-phase measurements above
    :math:`E_c`."""
    it = np.asarray(iteration, dtype=float)
    r = np.asarray(eff_sharpness, dtype=float) / threshold
    late, early = [], []
    for p in periods:
        cut = p.next_onset - tail * p.decay
        late.extend(r[(it >= cut) & (it < p.next_onset)])
        early.extend(r[(it >= p.peak) & (it < cut)])
    decay = np.array(late + early, dtype=float)
    return {"median_ratio_before_onset": finite_median(late), "median_ratio_early_decay": finite_median(early),
            "fraction_above": float(np.mean(decay > 1)) if decay.size else float("nan"), "tail": tail}
