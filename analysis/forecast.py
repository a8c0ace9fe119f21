r"""A forecast of the next destabilisation from what is known before it (no future data).

:mod:`analysis.report` predicts a period's length from the norm ratio measured over that same
period, so its agreement is partly by construction. The theory (Lobacheva et al., NeurIPS 2021,
Sec. 4; :mod:`theory.stability`) also says *when* a period ends: GD on the SI weights becomes
unstable once the norm has decayed to the critical norm

.. math:: \rho_c = \sqrt{\eta h / (2(1+\mu))},

:math:`h` the sharpness on the unit sphere (:mod:`nets.monitor.sharpness`), and between jumps the norm
decays as :math:`\rho_{t+s} = \alpha^s\rho_t` (:math:`\alpha = 1-\eta\lambda` without momentum).

Forecast issued at a sharpness measurement (iteration :math:`t_m`, norm :math:`\rho_m`, sphere
sharpness :math:`h_m`, both measured at the weights of that iteration): **the latest measured h
is assumed to hold until the crossing**, so the next destabilisation is forecast at

.. math:: \hat t = t_m + \frac{\ln(\rho_m/\rho_c(h_m))}{-\ln\alpha}
          \quad (\hat t = t_m \text{ if } \rho_m \le \rho_c),

:func:`theory.stability.predicted_period_length` with the ratio :math:`\rho_m/\rho_c`. It uses
only the measurement at :math:`t_m`. Per complete period (detected onset :math:`e_k` to the next,
:math:`e_{k+1}`) the *reported* forecast is the one issued at the first measurement after the top
of the jump that starts the period (the norm's maximum on :math:`[e_k, e_{k+1})`, reached within a
few dozen iterations of the onset): the forecast of the whole decay phase. Its error is
:math:`\hat t - e_{k+1}`, in iterations and as a fraction of the period :math:`e_{k+1}-e_k`. The
last forecast before the onset (shortest horizon), the drift of :math:`h` between the two, and
:math:`\rho/\rho_c` at the onset (with the last :math:`h` before it) are reported alongside, so a
poor forecast can be traced to its cause (for instance :math:`h` falling as the norm decays).

Two references put the theory's forecast in context, both also free of future data:

* **calibrated**: the same rule with the critical norm scaled by :math:`c` = the median of
  :math:`\rho/\rho_c` at the onsets seen so far (up to and including the one that starts the
  period), i.e. the threshold learned from past destabilisations instead of :math:`2(1+\mu)`;
* **persistence**: the next period lasts as long as the previous one.

Only runs with plain weight decay on the SI group (not WRS or the exponential LR) are forecast.
"""
from __future__ import annotations

import math

import numpy as np

from theory.stability import critical_norm, predicted_period_length

__all__ = ["forecast_onsets", "forecast_destabilisations", "forecast_line", "finite_median"]


def _crossing(t: float, rho: float, target: float, eta: float, lam: float, momentum: float) -> float:
    """Iteration at which a norm ``rho`` at ``t`` decaying by alpha per step reaches ``target``."""
    ratio = rho / target
    return t + (float(predicted_period_length(eta, lam, ratio, momentum)) if ratio > 1 else 0.0)


def forecast_onsets(sharpness: dict, eta: float, lam: float, momentum: float = 0.0) -> dict:
    """The forecast issued at every sharpness measurement (see the module docstring).

    Returns a dict of arrays: ``iteration`` (issue time), ``si_norm``, ``sphere_sharpness``,
    ``critical_norm`` (:func:`theory.stability.critical_norm` with the measurement's LR) and
    ``forecast`` (the forecast onset iteration; NaN where h is not positive and finite, and
    everywhere when ``lam`` is 0: without decay there is no crossing to forecast).
    """
    it = np.asarray(sharpness["iteration"], dtype=float)
    rho = np.asarray(sharpness["si_norm"], dtype=float)
    h = np.asarray(sharpness["sphere_sharpness"], dtype=float)
    lr = np.asarray(sharpness["lr"], dtype=float)
    rho_c = np.full_like(rho, np.nan)
    forecast = np.full_like(rho, np.nan)
    for i in range(it.size):
        if not (math.isfinite(h[i]) and h[i] > 0 and math.isfinite(rho[i]) and rho[i] > 0):
            continue
        rho_c[i] = float(critical_norm(lr[i], h[i], momentum))
        if lam > 0:
            forecast[i] = _crossing(it[i], rho[i], rho_c[i], eta, lam, momentum)
    return {"iteration": it, "si_norm": rho, "sphere_sharpness": h, "critical_norm": rho_c,
            "forecast": forecast}


def finite_median(values) -> float:
    """Median of the finite values (None and NaN skipped); NaN when there is none."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.median(v)) if v else float("nan")


def forecast_destabilisations(steps: dict, sharpness: dict, event_iterations, eta: float, lam: float,
                              momentum: float = 0.0) -> dict:
    """Forecast vs actual onset for every complete period of a run (JSON-ready).

    Parameters
    ----------
    steps : dict of arrays
        The run's step table (``iteration``, ``si_norm_equiv``) for the top of each jump.
    sharpness : dict of arrays
        :data:`nets.monitor.sharpness.SHARPNESS_COLUMNS` of the run.
    event_iterations : sequence of int
        Detected destabilisation onsets (:func:`analysis.report.analyse_periods`).
    eta, lam, momentum : float
        The run's LR, WD on the SI group and momentum.

    Returns
    -------
    dict
        ``periods``: per complete period with a measurement after its jump, the onset, the next
        onset, the issue time and value of the reported forecast, its error in iterations and as a
        fraction of the period, the last forecast before the next onset and its error, ``h_drift``
        (h at the last measurement over h at the issue) and ``rho_over_rho_c_at_onset``, and the
        two references (module docstring): ``calibrated_*`` (NaN before any onset with a
        measurement before it) and ``persistence_*`` (NaN in the first period); and summaries:
        ``n``, ``median_abs_error_fraction``, ``median_error_fraction`` (signed: negative =
        forecast too early), the same for the last, calibrated and persistence forecasts,
        ``median_h_drift``.
        ``all_forecasts`` lists, for every measurement inside a complete period, the issue time,
        the forecast and the actual next onset (the data of the forecast figure).
    """
    fc = forecast_onsets(sharpness, eta, lam, momentum)
    it_s, f, rho_c = fc["iteration"], fc["forecast"], fc["critical_norm"]
    it = np.asarray(steps["iteration"], dtype=float)
    norm = np.asarray(steps["si_norm_equiv"], dtype=float)
    ev = [int(e) for e in event_iterations]
    at_onset = {}                    # rho / rho_c at each onset, rho_c from the last h before it
    for e in ev:
        before = np.flatnonzero((it_s <= e) & np.isfinite(rho_c))
        if before.size and (it <= e).any():
            at_onset[e] = float(norm[np.flatnonzero(it <= e)[-1]] / rho_c[before[-1]])
    periods, every = [], []
    for k, (a, b) in enumerate(zip(ev[:-1], ev[1:])):
        inside = (it >= a) & (it < b)
        if not inside.any():
            continue
        top = it[inside][np.argmax(norm[inside])]
        for j in np.flatnonzero((it_s >= a) & (it_s < b) & np.isfinite(f)):
            every.append({"issued": int(it_s[j]), "forecast": float(f[j]), "onset": b, "period_start": a})
        cand = np.flatnonzero((it_s >= top) & (it_s < b) & np.isfinite(f))
        if cand.size == 0:
            continue
        first, last = cand[0], cand[-1]
        length = b - a
        scale = finite_median([v for e, v in at_onset.items() if e <= a])
        calibrated = (_crossing(it_s[first], fc["si_norm"][first], scale * rho_c[first], eta, lam, momentum)
                      if math.isfinite(scale) else float("nan"))
        persistence = a + (a - ev[k - 1]) if k > 0 else float("nan")
        periods.append({
            "start": a, "onset": b, "length": length, "top": int(top),
            "issued": int(it_s[first]), "forecast": float(f[first]),
            "error": float(f[first] - b), "error_fraction": float((f[first] - b) / length),
            "last_issued": int(it_s[last]), "last_forecast": float(f[last]),
            "last_error": float(f[last] - b), "last_error_fraction": float((f[last] - b) / length),
            "h_issued": float(fc["sphere_sharpness"][first]), "h_last": float(fc["sphere_sharpness"][last]),
            "h_drift": float(fc["sphere_sharpness"][last] / fc["sphere_sharpness"][first]),
            "rho_c_last": float(rho_c[last]), "rho_over_rho_c_at_onset": at_onset.get(b, float("nan")),
            "calibration": scale, "calibrated_forecast": calibrated,
            "calibrated_error_fraction": float((calibrated - b) / length),
            "persistence_forecast": float(persistence),
            "persistence_error_fraction": float((persistence - b) / length),
        })

    def col(key):
        return [p[key] for p in periods]

    return {"rule": "latest measured sphere sharpness h held constant; norm decays as alpha^t; "
                    "reported forecast issued at the first measurement after the top of the jump",
            "n": len(periods), "periods": periods,
            "median_abs_error_fraction": finite_median(np.abs(col("error_fraction"))),
            "median_error_fraction": finite_median(col("error_fraction")),
            "median_abs_error": finite_median(np.abs(col("error"))),
            "median_abs_last_error_fraction": finite_median(np.abs(col("last_error_fraction"))),
            "median_last_error_fraction": finite_median(col("last_error_fraction")),
            "median_abs_calibrated_error_fraction": finite_median(np.abs(col("calibrated_error_fraction"))),
            "median_abs_persistence_error_fraction": finite_median(np.abs(col("persistence_error_fraction"))),
            "median_h_drift": finite_median(col("h_drift")),
            "median_rho_over_rho_c_at_onset": finite_median(col("rho_over_rho_c_at_onset")),
            "all_forecasts": every}


def forecast_line(forecast: dict) -> str:
    """One human-readable line for the CLI."""
    n = forecast["n"]
    if n == 0:
        return "forecast: no complete period with a sharpness measurement after its jump"
    return (f"forecast of the next destabilisation (rho_c from the latest h, issued after each jump): "
            f"{n} period(s), median error {100 * forecast['median_error_fraction']:+.0f}% of the period "
            f"(|error| {100 * forecast['median_abs_error_fraction']:.0f}%, {forecast['median_abs_error']:.0f} it); "
            f"last forecast before the onset {100 * forecast['median_last_error_fraction']:+.0f}%; "
            f"|error| with the threshold calibrated on past onsets "
            f"{100 * forecast['median_abs_calibrated_error_fraction']:.0f}%, of 'as long as the previous period' "
            f"{100 * forecast['median_abs_persistence_error_fraction']:.0f}%; h drifts "
            f"x{forecast['median_h_drift']:.2g} within a period; rho/rho_c at onset "
            f"{forecast['median_rho_over_rho_c_at_onset']:.2f}")
