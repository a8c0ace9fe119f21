r"""Regime of SI training from recorded series: approaching equilibrium, at equilibrium, periodic, collapsed.

Rules (applied in this order; every answer comes with its evidence):

1. **collapsed** -- the network is dead: the SI gradient is exactly zero on every record to the
   end (:func:`analysis.report.find_collapse`).
2. **periodic** -- at least two destabilisations (one complete period) were detected
   (:func:`analysis.periods.detect_periods`, Lobacheva et al., NeurIPS 2021, Sec. 4) and the
   last one lies within twice the longest period from the end.
3. **no equilibrium** -- no weight decay on the SI weights, or no formula for the optimizer
   (Adam with coupled L2): only measured values are reported.
4. **at equilibrium** / **approaching equilibrium** -- over the *window* (the last fifth of the
   records, at least 5, and only records after the last destabilisation) the RMS angular update
   per step is compared with the theory's :math:`\Delta\theta^*` for the hyper-parameters of each
   record (:mod:`nets.monitor.theory`), and the norm must be stationary: its *drift*
   :math:`\Delta\ln\rho / \sum_t \eta_t\lambda` over the window (0 at equilibrium, -1 when WD
   alone shrinks it) within +-0.5. Angle within a factor ``tolerance`` (1.3) and a stationary
   norm: at equilibrium. Slower: the norm is above its equilibrium and WD is still shrinking it;
   faster: the norm is below it and the gradient steps are pushing it out. :math:`\Delta\theta^*`
   does not depend on the gradient (Wan et al., 2021; Kosson et al., 2024), which makes it the
   robust indicator; the elapsed :math:`\sum_t\eta_t\lambda` (equilibrium takes a few units of
   it, Lobacheva et al., Sec. 2) is shown as evidence.

The same ratio test gives each individually SI tensor a state (``equilibrium``, ``slower``,
``faster``); tensors that are SI only jointly (:mod:`nets.monitor.si`) have no per-tensor theory.
"""
from __future__ import annotations

import math

import numpy as np

from analysis.report import find_collapse

__all__ = ["STATES", "analysis_window", "rms", "ratio_state", "classify_state", "format_table", "legend"]

#: where a monitored run stands (:func:`classify_state`); the three regimes of training on the sphere
#: are :data:`analysis.regimes.REGIMES`
STATES = ("approaching equilibrium", "at equilibrium", "periodic", "collapsed", "no equilibrium")
TOLERANCE = 1.3


def rms(x) -> float:
    """Root mean square of the finite values of ``x`` (NaN if there are none)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(np.sqrt(np.mean(x ** 2))) if x.size else float("nan")


def analysis_window(iterations, events, fraction: float = 0.2, minimum: int = 5) -> np.ndarray:
    """Boolean mask of the window: the last ``max(minimum, fraction * n)`` records, after the last
    destabilisation onset in ``events`` (iterations)."""
    it = np.asarray(iterations)
    mask = np.zeros(it.size, dtype=bool)
    mask[max(it.size - max(minimum, int(fraction * it.size)), 0):] = True
    if len(events):
        mask &= it > max(events)
    return mask


def ratio_state(ratio: float, tolerance: float = TOLERANCE) -> str:
    """``equilibrium`` / ``slower`` / ``faster`` for measured over equilibrium angular update."""
    if not math.isfinite(ratio):
        return "-"
    if ratio < 1 / tolerance:
        return "slower"
    return "faster" if ratio > tolerance else "equilibrium"


def classify_state(steps: dict, eq_angle, events, period_summary: dict | None = None, *, eta_lam, end: int,
                    theory_note: str = "", tolerance: float = TOLERANCE, max_drift: float = 0.5) -> dict:
    """The regime of a run (module docstring).

    Parameters
    ----------
    steps : dict of arrays
        The step table (:data:`nets.monitor.metrics.STEP_COLUMNS`).
    eq_angle : array
        :math:`\\Delta\\theta^*` at each record (NaN where no formula applies).
    events : list of int
        Destabilisation onsets (iterations).
    period_summary : dict, optional
        :func:`analysis.report.analyse_run`'s summary (periods measured vs predicted), as evidence.
    eta_lam : array
        :math:`\\eta\\lambda` at each record (each record stands for the iterations up to the next).
    end : int
        Iterations done (the last record covers those after it).
    theory_note : str
        Why no equilibrium formula applies, if none does.

    Returns
    -------
    dict
        ``regime`` (one of :data:`STATES`), ``reason`` (one sentence) and ``evidence``.
    """
    it = np.asarray(steps["iteration"])
    wd_steps = np.asarray(eta_lam, dtype=float) * np.diff(np.r_[it, max(end, it[-1] + 1 if it.size else 0)])
    wd_time = float(np.sum(wd_steps))
    ev = {"records": int(it.size), "destabilisations": [int(e) for e in events], "wd_time": wd_time}
    if it.size == 0:
        return {"regime": "approaching equilibrium", "reason": "nothing recorded yet", "evidence": ev}
    collapse = find_collapse(steps)
    if collapse is not None:
        ev["collapse"] = collapse
        return {"regime": "collapsed", "evidence": ev,
                "reason": f"dead network from iteration {collapse['iteration']}: the SI gradient is exactly 0 "
                          f"on the last {collapse['records']} records and only WD moves the weights"}
    ps = period_summary or {}
    if len(events) >= 2:
        longest = float(np.max(np.diff(events)))
        ev.update({k: ps[k] for k in ("n_periods", "mean_length", "std_length", "predicted_mean_length",
                                      "measured_over_predicted") if k in ps})
        if it[-1] - events[-1] <= 2 * longest:
            pred = ps.get("predicted_mean_length", float("nan"))
            tail = f" (predicted {pred:.0f} from the measured norm ratios)" if math.isfinite(pred) else ""
            return {"regime": "periodic", "evidence": ev,
                    "reason": f"{len(events)} destabilisations, periods of {np.mean(np.diff(events)):.0f} "
                              f"iterations{tail}; last at iteration {events[-1]}"}
        ev["periodic_until"] = int(events[-1])
    window = analysis_window(it, events)
    eq = np.asarray(eq_angle, dtype=float)
    measured, expected = rms(np.asarray(steps["angular_update"])[window]), rms(eq[window])
    ev.update({"window_from": int(it[window][0]) if window.any() else None, "angular_update": measured,
               "eq_angular_update": expected})
    if not math.isfinite(expected):
        return {"regime": "no equilibrium", "evidence": ev, "reason": theory_note or "no equilibrium formula"}
    ratio = measured / expected
    idx = np.flatnonzero(window)
    log_rho = np.log(np.asarray(steps["si_norm_equiv"], dtype=float)[idx[[0, -1]]])
    wd_window = float(np.sum(wd_steps[idx[:-1]]))
    drift = (log_rho[1] - log_rho[0]) / wd_window if wd_window > 0 else float("nan")
    ev.update({"ratio": ratio, "norm_drift": drift})
    state = ratio_state(ratio, tolerance)
    if state == "equilibrium" and not abs(drift) <= max_drift:
        return {"regime": "approaching equilibrium", "evidence": ev,
                "reason": f"angular update {measured:.3g} rad/step = {ratio:.2f} x the equilibrium {expected:.3g}, "
                          f"but the norm is not stationary: ln(rho) changed by {log_rho[1] - log_rho[0]:+.2g} over "
                          f"the last {idx.size} records, where eta*lambda adds up to {wd_window:.2g}; "
                          f"sum(eta*lambda) = {wd_time:.2g} so far (equilibrium takes a few units)"}
    if state == "equilibrium":
        return {"regime": "at equilibrium", "evidence": ev,
                "reason": f"angular update {measured:.3g} rad/step = {ratio:.2f} x the equilibrium {expected:.3g} "
                          f"and a stationary norm (drift {drift:+.2f}) over the last {idx.size} records"}
    side = ("slower: the norm is above equilibrium and WD still shrinks it" if state == "slower" else
            "faster: the norm is below equilibrium and the steps push it out")
    return {"regime": "approaching equilibrium", "evidence": ev,
            "reason": f"angular update {measured:.3g} rad/step = {ratio:.2f} x the equilibrium {expected:.3g} "
                      f"({side}); "
                      f"sum(eta*lambda) = {wd_time:.2g} so far (equilibrium takes a few units)"}


def _fmt(v, spec=".3g") -> str:
    return format(v, spec) if isinstance(v, (int, float)) and math.isfinite(v) else "-"


COLUMNS = (("tensor", "name", "s"), ("SI", "si", "s"), ("numel", "numel", "d"), ("rho", "norm", ".3g"),
           ("rho*", "eq_norm", ".3g"), ("eff_lr", "eff_lr", ".3g"), ("eff_lr*", "eq_eff_lr", ".3g"),
           ("G", "eff_grad_norm", ".3g"), ("dtheta", "angular_update", ".3g"),
           ("dtheta*", "eq_angular_update", ".3g"), ("ratio", "ratio", ".2f"), ("state", "state", "s"))


def legend(window: dict | None = None) -> str:
    """What every number of :func:`format_table` is (one line; ``window``: its iterations and records)."""
    where = (f"iterations {window['from']}-{window['to']}, {window['records']} records"
             if window and window.get("records") else "the last fifth of the records after the last destabilisation")
    return (f"rho, eff_lr, G = rho*|grad|, dtheta: RMS over the analysis window ({where}); rho*, eff_lr*: "
            "equilibrium at the window's RMS LR and G; dtheta*: RMS of the equilibrium angle per record; "
            "ratio = dtheta/dtheta*")


def format_table(rows: list[dict], regime: dict | None = None, window: dict | None = None) -> str:
    """Plain-text table of per-tensor rows (and the total as the last row), the :func:`legend` saying
    what the numbers are, then the regime."""
    cells = [[h for h, _, _ in COLUMNS]]
    for r in rows:
        cells.append([str(r[k]) if f in ("s", "d") else _fmt(r[k], f) for _, k, f in COLUMNS])
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    if len(rows) > 1:
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
    lines.append(legend(window))
    if regime is not None:
        lines.append(f"regime: {regime['regime']} -- {regime['reason']}")
    return "\n".join(lines)
