r"""The eta*lambda study of periods, from finished run folders (:mod:`nets.training.run`) to records.

For each run (:func:`run_record`): the anatomy of every complete period
(:func:`analysis.anatomy.period_anatomy`: rise, decay, the decay formula), the forecasts of each
next destabilisation (:mod:`analysis.edge_forecast` from the batch sharpness, and
:mod:`analysis.forecast` from the top eigenvalue with its calibrated variant and persistence, as
the run's ``periods.json`` holds them) and where :math:`\tilde\eta h_B` sits relative to the
threshold. Across runs (:func:`study_summary`): the leave-one-out whole-period prediction, the
fitted scaling of the rise and of the frequency with eta*lambda (power laws with 95 % intervals).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from analysis.anatomy import RunAnatomy, leave_one_out, period_anatomy, power_law
from analysis.edge_forecast import edge_forecasts, hover_statistics
from analysis.forecast import finite_median
from theory.stability import projected_stability_threshold

__all__ = ["run_record", "study_summary", "periodic_mean", "FORECAST_METHODS"]

#: forecast methods compared per run: name -> what it is
FORECAST_METHODS = {
    "batch_sharpness": "eta_eff*h_B (step's own batch) at free-decay slope, crossing 2(1+mu-eta*lambda)",
    "batch_sharpness_trend": "the same with the slope fitted on the window",
    "lambda_max": "top eigenvalue on a fixed batch, rho_c = sqrt(eta*h/(2(1+mu))), latest h",
    "calibrated": "lambda_max with the threshold scaled by past onsets",
    "persistence": "next period as long as the previous one",
}


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _median(values) -> float | None:
    return _finite(finite_median(values))


def periodic_mean(iteration, values, events) -> float | None:
    """Mean of ``values`` from the first destabilisation (``events[0]``) on (None without one): the
    periodic phase's level, e.g. of the SI norm or the angular update."""
    keep = np.asarray(iteration) >= events[0] if len(events) else np.zeros(len(values), bool)
    return float(np.mean(np.asarray(values)[keep])) if keep.any() else None


def run_record(run_dir: Path, min_points: int = 5, start: int = 0) -> tuple[dict, dict, RunAnatomy]:
    """``(record, arrays, anatomy)`` of one finished run folder of :mod:`nets.training.run`.

    Destabilisations before iteration ``start`` (the first phase, while the network is still
    fitting its training set) open no period of the study."""
    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())["config"]
    rep = json.loads((run_dir / "periods.json").read_text())
    s = rep["summary"]
    z = np.load(run_dir / "metrics.npz")
    eta, lam, mu = float(cfg["lr"]), float(cfg["wd"]), float(cfg.get("momentum", 0.0))
    it, rho = z["step_iteration"], z["step_si_norm"]
    events = [e for e in s.get("event_iterations", []) if e >= start]
    phases = period_anatomy(it, rho, events, eta, lam, mu, eff_grad_norm=z["step_eff_grad_norm"])
    thr = float(projected_stability_threshold(eta, lam, mu))
    has_bs = "batch_sharpness_iteration" in z.files
    bs_it = z["batch_sharpness_iteration"] if has_bs else np.zeros(0)
    bs_e = z["batch_sharpness_eff_batch_sharpness"] if has_bs else np.zeros(0)
    edge = edge_forecasts(bs_it, bs_e, phases, eta=eta, lam=lam, threshold=thr, momentum=mu, min_points=min_points)
    hover = hover_statistics(bs_it, bs_e, phases, thr)
    old = s.get("forecast", {})
    forecast = {
        "batch_sharpness": edge["level"], "batch_sharpness_trend": edge["trend"],
        "lambda_max": {"median_abs_error_fraction": _finite(old.get("median_abs_error_fraction")),
                       "median_error_fraction": _finite(old.get("median_error_fraction")), "n": old.get("n", 0)},
        "calibrated": {"median_abs_error_fraction": _finite(old.get("median_abs_calibrated_error_fraction")),
                       "n": old.get("n", 0)},
        "persistence": edge["persistence"],
        "batch_sharpness_horizon_fraction": edge["median_horizon_fraction"],
    }
    lengths = [p.length for p in phases]
    rec = {"eta": eta, "lam": lam, "eta_lam": eta * lam, "width": cfg["width"], "train_subset": cfg["train_subset"],
           "seed": cfg.get("seed", 0), "precision": cfg.get("precision", "fp32"),
           "iterations": rep.get("iterations"), "elapsed_s": _finite(rep.get("elapsed_s")),
           "images_per_s": _finite((rep.get("iters_per_s") or float("nan")) * cfg["batch_size"]),
           "n_periods": len(phases), "event_iterations": [int(e) for e in events],
           "measured_period": float(np.mean(lengths)) if lengths else None,
           "std_period": float(np.std(lengths, ddof=1)) if len(lengths) > 1 else None,
           "rise": _median(p.rise for p in phases), "decay": _median(p.decay for p in phases),
           "decay_predicted": _median(p.decay_predicted for p in phases),
           "decay_approach": _median(p.decay_approach for p in phases),
           "decay_measured_over_predicted": _median(p.decay / p.decay_predicted for p in phases
                                                    if p.decay_predicted > 0),
           "rise_share": _median(p.rise / p.length for p in phases),
           "same_period_ratio": _finite(s.get("measured_over_predicted")),   # the old reference: ratio of that period
           "threshold": thr, "hover": hover, "forecast": forecast,
           "periods": [p._asdict() for p in phases]}
    arrays = {"iteration": it, "si_norm": rho, "train_loss": z["step_train_loss"],
              "angular_update": z["step_angular_update"], "bs_iteration": bs_it,
              "bs_eff": bs_e, "events": np.asarray(events, dtype=float),
              "peaks": np.array([p.peak for p in phases], dtype=float)}
    return rec, arrays, RunAnatomy(eta, lam, mu, phases)


def _fit_dict(fit) -> dict | None:
    if fit is None:
        return None
    return {"exponent": fit.exponent, "interval": [fit.exponent_lo, fit.exponent_hi], "confidence": fit.confidence,
            "prefactor": fit.prefactor, "n": fit.n}


def study_summary(records: list[dict], anatomies: list[RunAnatomy]) -> dict:
    """Fill each record's ``predicted_period`` / ``measured_over_predicted`` (leave-one-out) and
    return the fits across runs: rise and frequency vs eta*lambda, and the median forecast errors."""
    loo = leave_one_out(anatomies)
    for rec, row in zip(records, loo):
        rec["predicted_period"] = _finite(row["predicted_period"])
        rec["measured_over_predicted"] = _finite(row["measured_over_predicted"])
        rec["loo_measured_period"] = _finite(row["measured_period"])
        rec["rise_predicted"] = _finite(row["rise_predicted"])
    x = [r["eta_lam"] for r in records]
    rise = power_law(x, [r["rise"] or float("nan") for r in records])
    decay = power_law(x, [r["decay"] or float("nan") for r in records])
    freq = power_law(x, [1 / r["measured_period"] if r["measured_period"] else float("nan") for r in records])
    errors = {m: _median(r["forecast"][m]["median_abs_error_fraction"] for r in records) for m in FORECAST_METHODS}
    return {"rise_fit": _fit_dict(rise), "decay_fit": _fit_dict(decay), "frequency_fit": _fit_dict(freq),
            "forecast_median_abs_error_fraction": errors, "forecast_methods": FORECAST_METHODS,
            "min_periods": min(r["n_periods"] for r in records) if records else 0}
