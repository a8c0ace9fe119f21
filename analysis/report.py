"""Measured periods of a real run vs the theory's prediction.

Destabilisations are found in the recorded SI norm (and train loss) with the same detector as
the toy simulations, :func:`analysis.periods.detect_periods`. The prediction is
:func:`theory.stability.predicted_period_length`: a period lasts while WD shrinks the norm from
rho_max to rho_min, T = ln(rho_max/rho_min) / (-ln alpha), alpha = 1 - eta*lambda for plain SGD
(Lobacheva et al., NeurIPS 2021, Sec. 4), evaluated with the norm ratio *measured* in the same
run. For each complete period (onset to next onset) the ratio is rho at the top of its jump over
rho at the next onset -- the decay the formula times (the jump itself lasts a few iterations).
The run's prediction is the mean of the per-period predictions (``predicted_mean_length``);
``predicted_length`` uses the median ratio. Frequency = 1/T, which at a fixed ratio grows
linearly in eta*lambda.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis.periods import detect_periods
from theory.stability import predicted_period_length, stability_threshold

__all__ = ["RunInfo", "analyse_run", "analyse_periods", "find_collapse", "period_line", "collapse_line",
           "stability_at_destabilisations", "stability_line"]


@dataclass
class RunInfo:
    """What the period analysis reads from a run's configuration (:class:`nets.TrainConfig` has
    these attributes too): LR eta, the WD lambda the SI norm decays with, momentum mu, the
    recording interval, the optimizer, and how the norm is controlled (WD, weight rescaling to
    ``wrs_norm``, Li & Arora's exponential LR, or a fixed effective LR on the sphere)."""

    lr: float
    lam_si_equivalent: float
    momentum: float
    record_every: int
    optimizer: str = "sgd"
    wrs_norm: float | None = None
    exp_lr: bool = False
    fixed_elr: float | None = None


def _predict(eta: float, lam: float, ratio: float, momentum: float) -> float:
    if lam <= 0 or not math.isfinite(ratio) or ratio <= 1:
        return float("nan")
    return float(predicted_period_length(eta, lam, ratio, momentum))


def _inv(x: float) -> float:
    return 1.0 / x if math.isfinite(x) and x > 0 else float("nan")


def analyse_periods(steps: dict, config) -> tuple[object, dict]:
    """Detect periods in a run's step metrics and compare them with the prediction.

    Parameters
    ----------
    steps : dict of arrays
        The recorded step table (:data:`nets.monitor.metrics.STEP_COLUMNS`).
    config : RunInfo or TrainConfig
        The run's configuration (eta, lambda, momentum, recording interval, WD/WRS/TEXP).

    Returns
    -------
    (PeriodReport, dict)
        The detector's report, and a JSON-ready summary: event iterations, measured lengths and
        their mean/std, the measured norm ratio, predicted lengths (per complete period and from
        the median ratio), frequencies, and measured/predicted.
    """
    k = int(config.record_every)
    it = np.asarray(steps["iteration"])
    regular = it % k == 0                         # drop the extra final record: uniform spacing
    norm = np.asarray(steps["si_norm_equiv"])[regular]
    loss = np.asarray(steps["train_loss"], dtype=float)[regular]
    iters = it[regular]
    # the loss confirms jumps only where it was recorded throughout (SIMonitor without losses: NaN)
    rep = detect_periods(norm, loss=loss if np.all(np.isfinite(loss)) else None, step=k)
    eta, lam, mu = float(config.lr), float(config.lam_si_equivalent), float(config.momentum)
    optimizer = getattr(config, "optimizer", "sgd")
    lam_pred = lam if optimizer == "sgd" else 0.0   # the formula times SGD's WD decay at small gradients
    ev = np.asarray(rep.events, dtype=int)
    per_period = []
    for a, b in zip(ev[:-1], ev[1:]):
        # decay phase of the period: from the top of its jump down to the next onset
        ratio = float(norm[a:b + 1].max() / norm[b])
        per_period.append({"start": int(iters[a]), "end": int(iters[b]), "length": int((b - a) * k),
                           "decay_ratio": ratio, "predicted_length": _predict(eta, lam_pred, ratio, mu)})
    ratios = [p["decay_ratio"] for p in per_period]
    ratio = float(np.median(ratios)) if ratios else float("nan")
    predicted = _predict(eta, lam_pred, ratio, mu)
    pred_each = [p["predicted_length"] for p in per_period]
    pred_mean = float(np.mean(pred_each)) if pred_each else float("nan")
    mean = float(rep.mean_length)
    summary = {
        "eta": eta, "lam": lam, "eta_lam": eta * lam, "momentum": mu,
        "wd_mode": ("fixed_elr" if config.fixed_elr is not None else "wrs" if config.wrs_norm
                    is not None else "exp_lr" if config.exp_lr else "wd"),
        "record_every": k,
        "event_iterations": [int(iters[i]) for i in ev],
        "n_periods": int(rep.n_periods), "is_periodic": bool(rep.is_periodic),
        "lengths": [int(v) for v in np.asarray(rep.lengths)],
        "mean_length": mean, "std_length": float(rep.std_length),
        "norm_ratio": ratio, "detector_norm_ratio": float(rep.norm_ratio),
        "predicted_length": predicted, "predicted_mean_length": pred_mean,
        "periods": per_period,
        "measured_frequency": _inv(mean), "predicted_frequency": _inv(pred_mean),
        "measured_over_predicted": mean / pred_mean if math.isfinite(pred_mean) else float("nan"),
    }
    if optimizer != "sgd":
        summary["note"] = (f"{optimizer}: the period formula assumes SGD with WD, where small gradients leave "
                           "the norm to decay as (1 - eta*lambda)^t; no prediction")
    elif lam <= 0:
        summary["note"] = ("no WD on the SI group (WRS or wd_on excludes it): the norm does not "
                           "decay, so the period formula does not apply")
    return rep, summary


def find_collapse(steps: dict, min_records: int = 3) -> dict | None:
    """Where the network died: the SI gradient is exactly zero on every record to the end.

    A dead network (its ReLUs off for every input, or its SI weights underflowed to zero) gets no
    gradient in its SI weights, so WD alone shrinks them, rho_t = (1 - eta*lambda)^t rho_0, and
    the effective LR grows without bound while nothing is learned. This happens in practical mode
    (trainable BN affine and last layer) at large eta*lambda. The dead stretch must hold at least
    ``min_records`` records; returns None for a living run, else a JSON-ready dict: first dead
    iteration, number of dead records, median train loss over them, SI norm at the first dead and
    the last record.
    """
    if min_records < 1:
        raise ValueError(f"min_records must be >= 1, got {min_records}")
    g = np.asarray(steps["grad_norm"], dtype=float)
    alive = np.flatnonzero(g != 0)                 # NaN counts as alive: divergence is reported apart
    start = int(alive[-1]) + 1 if alive.size else 0
    if g.size - start < min_records:
        return None
    norm = np.asarray(steps["si_norm_equiv"], dtype=float)
    return {"iteration": int(np.asarray(steps["iteration"])[start]), "records": int(g.size - start),
            "train_loss": float(np.median(np.asarray(steps["train_loss"], dtype=float)[start:])),
            "si_norm_start": float(norm[start]), "si_norm_end": float(norm[-1])}


def analyse_run(steps: dict, config) -> tuple[object | None, dict]:
    """:func:`analyse_periods` on the part of a run that can have periods.

    Records from a collapse on (:func:`find_collapse`) are left out and reported under
    ``summary["collapse"]``; a run with fewer than three records, or a non-finite or zero SI norm
    before any collapse, gets no analysis (``(None, summary)`` with a ``note``).
    """
    collapse = find_collapse(steps)
    if collapse is not None:
        keep = np.asarray(steps["iteration"]) < collapse["iteration"]
        steps = {k: np.asarray(v)[keep] for k, v in steps.items()}
    norm = np.asarray(steps["si_norm_equiv"], dtype=float)
    rep, summary = None, {"n_periods": 0, "event_iterations": []}
    if norm.size < 3:
        summary["note"] = "too few records" + (" before the collapse" if collapse else "")
    elif not (np.all(np.isfinite(norm)) and np.all(norm > 0)):
        summary["note"] = "non-finite or zero SI norm"
    else:
        rep, summary = analyse_periods(steps, config)
    if collapse is not None:
        summary["collapse"] = collapse
    return rep, summary


def collapse_line(collapse: dict) -> str:
    """One human-readable line for the CLI."""
    c = collapse
    return (f"collapse: the network is dead from iteration {c['iteration']} on (SI gradient exactly 0 "
            f"on the last {c['records']} records, train loss {c['train_loss']:.3g}); WD alone shrinks "
            f"the SI norm ({c['si_norm_start']:.3g} -> {c['si_norm_end']:.3g}); periods are measured before it")


def period_line(summary: dict) -> str:
    """One human-readable line for the CLI."""
    n = summary["n_periods"]
    if n == 0:
        return (f"periods: none complete ({len(summary['event_iterations'])} destabilisation(s) at "
                f"iterations {summary['event_iterations']})")
    head = (f"periods: {n} complete, length {summary['mean_length']:.0f} +/- "
            f"{summary['std_length']:.0f} it (frequency {summary['measured_frequency']:.3g}/it); ")
    if not math.isfinite(summary["predicted_mean_length"]):
        return head + (f"no prediction ({summary.get('note', 'no WD decay')}); destabilisations at "
                       f"{summary['event_iterations']}")
    return (head +
            f"predicted {summary['predicted_mean_length']:.0f} it from the measured norm ratios "
            f"(median {summary['norm_ratio']:.3g}) at eta*lam = {summary['eta_lam']:.3g}; measured/predicted "
            f"{summary['measured_over_predicted']:.2f}; destabilisations at {summary['event_iterations']}")


def stability_at_destabilisations(sharpness: dict, event_iterations, momentum: float = 0.0) -> dict:
    r"""The destabilisation condition measured on the run (:mod:`nets.monitor.sharpness`).

    For each destabilisation onset, the largest :math:`\tilde\eta h = \eta\lambda_{\max}`
    measured in the later half of the interval since the previous onset (the end of the decay
    phase, where the theory puts the crossing of :math:`2(1+\mu)`), and the last value measured
    at or before the onset. Returns a JSON-ready dict with the threshold, those per-onset
    values, their median over the threshold, and the fraction of all measurements above it.
    """
    it = np.asarray(sharpness["iteration"], dtype=float)
    prod = np.asarray(sharpness["eff_lr_sharpness"], dtype=float)
    threshold = float(stability_threshold(momentum))
    onsets, prev = [], 0.0
    for e in event_iterations:
        window = (it >= prev + 0.5 * (e - prev)) & (it <= e)
        before = it <= e
        if window.any():
            j = np.flatnonzero(window)[np.argmax(prod[window])]
            onsets.append({"onset": int(e), "peak": float(prod[j]), "peak_iteration": int(it[j]),
                           "last": float(prod[np.flatnonzero(before)[-1]]),
                           "last_iteration": int(it[np.flatnonzero(before)[-1]])})
        prev = float(e)
    peaks = [o["peak"] for o in onsets]
    finite = np.isfinite(prod)
    return {"threshold": threshold, "n_measurements": int(it.size), "onsets": onsets,
            "median_peak": float(np.median(peaks)) if peaks else float("nan"),
            "median_peak_over_threshold": float(np.median(peaks) / threshold) if peaks else float("nan"),
            "fraction_above_threshold": float(np.mean(prod[finite] > threshold)) if finite.any() else float("nan")}


def stability_line(stability: dict) -> str:
    """One human-readable line for the CLI."""
    n = len(stability["onsets"])
    if n == 0:
        return (f"sharpness: {stability['n_measurements']} measurements, no destabilisation to compare "
                f"with; {100 * stability['fraction_above_threshold']:.0f}% above the threshold "
                f"{stability['threshold']:g}")
    return (f"sharpness: before {n} destabilisation(s) eta*lambda_max peaks at "
            f"{stability['median_peak']:.3g} (median), threshold 2(1+mu) = {stability['threshold']:g} "
            f"(ratio {stability['median_peak_over_threshold']:.2f}); "
            f"{100 * stability['fraction_above_threshold']:.0f}% of {stability['n_measurements']} "
            f"measurements above it")
