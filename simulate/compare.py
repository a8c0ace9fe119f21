r"""Measured versus predicted quantities for every configuration of a run.

For each configuration, over the last ``tail`` fraction of the records (the first
``1 - tail`` is burn-in), :func:`compare_with_theory` reports

========================  ======================================  =====================================
quantity                  measured                                predicted (``theory``)
========================  ======================================  =====================================
equilibrium norm          median :math:`\rho`                     :func:`~theory.equilibrium.equilibrium_norm`
                                                                  with the measured RMS of :math:`\rho\|g\|`
effective LR              median :math:`\eta/\rho^2`              :func:`~theory.equilibrium.equilibrium_effective_lr`
angular update            mean angle per step (rad)               :func:`~theory.equilibrium.equilibrium_angular_update`
period length             mean (std) spacing of jumps             :func:`~theory.stability.predicted_period_length`
                                                                  with the measured :math:`\rho_{\max}/\rho_{\min}`
period length, gradients  (same)                                  :func:`~theory.equilibrium.approach_steps`
                                                                  with the median :math:`\rho_{\max}`,
                                                                  :math:`\rho_{\min}` and the RMS of
                                                                  :math:`\rho\|g\|` in the decay phases
norm at destabilisation   median :math:`\rho` at the jump onsets  :func:`~theory.stability.critical_norm`
                                                                  (when the sharpness is known)
========================  ======================================  =====================================

The first period prediction assumes negligible gradients between jumps (pure WD decay); the
second keeps the gradient measured there (``eff_grad_decay_rms``), which pulls the norm towards
its equilibrium ``rho_decay_equilibrium`` instead of letting it decay freely. They agree when the
gradient is small; when the jumps start at or below that equilibrium (mini-batch noise, as in
``python -m simulate.toy --objective mlp --batch-size 32``) the second is infinite: the norm only
approaches the equilibrium, and the jumps are kicks of the gradient noise at irregular times, not
the end of a decay (Plain SGD only; NaN with momentum.)

Equilibrium predictions apply to the ``'equilibrium'`` regime, period predictions to the
``'periodic'`` one (Lobacheva et al., 2021, Secs. 3-4); both are listed with the regime so the
reader can tell. Rows are plain dicts; :func:`format_table` prints them and
:func:`write_comparison` saves JSON and CSV.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.periods import tail_start
from cli import write_csv, write_json
from simulate.engine import Trajectory
from simulate.sweep import classify, period_reports
from theory.equilibrium import approach_steps, equilibrium_angular_update, equilibrium_effective_lr, equilibrium_norm
from theory.stability import critical_norm, predicted_period_length

__all__ = ["compare_with_theory", "format_table", "write_comparison", "TABLE_COLUMNS"]

TABLE_COLUMNS = (
    ("eta", "eta", "{:.3g}"), ("lam", "lam", "{:.3g}"), ("mu", "momentum", "{:.2g}"),
    ("noise", "noise", "{:.2g}"), ("seed", "seed", "{:d}"), ("regime", "regime", "{}"),
    ("rho", "rho_measured", "{:.4g}"), ("rho*", "rho_predicted", "{:.4g}"),
    ("eff_lr", "eff_lr_measured", "{:.4g}"), ("eff_lr*", "eff_lr_predicted", "{:.4g}"),
    ("angle", "angle_measured", "{:.4g}"), ("angle*", "angle_predicted", "{:.4g}"),
    ("periods", "n_periods", "{:d}"), ("T", "period_measured", "{:.1f}"),
    ("T_std", "period_std", "{:.1f}"), ("T*", "period_predicted", "{:.1f}"),
    ("rho_min", "rho_min_measured", "{:.4g}"), ("rho_c*", "rho_critical", "{:.4g}"),
)


def _nan_call(fn, *args, **kw) -> float:
    """``float(fn(...))``, NaN when theory rejects the inputs (e.g. no WD, no gradient)."""
    try:
        return float(fn(*args, **kw))
    except ValueError:
        return float("nan")


def compare_with_theory(traj: Trajectory, *, sharpness: float | None = None, tail: float = 0.5,
                        **period_kw) -> list[dict]:
    r"""Rows of measured and predicted quantities, one per configuration (see module doc).

    Parameters
    ----------
    traj : Trajectory
        A run with ``eff_grad_norm`` and ``angle`` recorded (missing ones give NaN).
    sharpness : float, optional
        Sphere sharpness :math:`h` at the minimum (``objective.sphere_sharpness()`` for the
        quadratic); enables the critical-norm prediction :math:`\sqrt{\eta h/(2(1+\mu))}`.
    tail : float
        Fraction of the records (from the end) used for the equilibrium statistics and the
        regime.
    **period_kw
        Passed to :func:`analysis.periods.detect_periods`.
    """
    lo = tail_start(traj.norm.shape[0], tail)
    regimes = classify(traj, tail=tail, **period_kw)
    reports = period_reports(traj, **period_kw)
    eff_lr = traj.eff_lr
    rows = []
    for i, rep in enumerate(reports):
        c = traj.config_row(i)
        eta, lam, mu = c["eta"], c["lam"], c["momentum"]
        wd_run = traj.optimizer == "sgd" and lam > 0
        row = {**c, "optimizer": traj.optimizer, "regime": str(regimes[i]),
               "rho_measured": float(np.median(traj.norm[lo:, i])),
               "eff_lr_measured": float(np.median(eff_lr[lo:, i]))}
        g_rms = (float(np.sqrt(np.mean(traj.eff_grad_norm[lo:, i].astype(np.float64) ** 2)))
                 if traj.eff_grad_norm is not None else float("nan"))
        row["eff_grad_norm_rms"] = g_rms
        row["angle_measured"] = (float(np.mean(traj.angle[lo:, i])) if traj.angle is not None
                                 else float("nan"))
        ok = wd_run and np.isfinite(g_rms)
        row["rho_predicted"] = _nan_call(equilibrium_norm, eta, lam, g_rms, mu) if ok else np.nan
        row["eff_lr_predicted"] = _nan_call(equilibrium_effective_lr, eta, lam, g_rms, mu) if ok else np.nan
        row["angle_predicted"] = _nan_call(equilibrium_angular_update, eta, lam, mu) if wd_run else np.nan
        row.update(_period_columns(rep, traj, i, eta, lam, mu, wd_run, sharpness))
        rows.append(row)
    return rows


def _period_columns(rep, traj, i, eta, lam, mu, wd_run, sharpness) -> dict:
    nan = float("nan")
    out = {"n_periods": 0, "period_measured": nan, "period_std": nan, "norm_ratio": nan,
           "period_predicted": nan, "rho_min_measured": nan, "rho_critical": nan,
           "eff_grad_decay_rms": nan, "rho_decay_equilibrium": nan, "period_predicted_gradient": nan}
    if sharpness is not None and sharpness > 0:
        out["rho_critical"] = _nan_call(critical_norm, eta, sharpness, mu)
    if rep is None:
        return out
    out.update(n_periods=rep.n_periods, period_measured=rep.mean_length, period_std=rep.std_length,
               norm_ratio=rep.norm_ratio)
    if rep.events.size:
        out["rho_min_measured"] = float(np.median(traj.norm[rep.events, i]))
    if wd_run and np.isfinite(rep.norm_ratio) and rep.norm_ratio > 1:
        out["period_predicted"] = _nan_call(predicted_period_length, eta, lam, rep.norm_ratio, mu)
        out.update(_decay_phase_columns(rep, traj, i, eta, lam, mu))
    return out


def _decay_phase_columns(rep, traj, i, eta, lam, mu) -> dict:
    """Gradient level in the decay phases (jump top to next onset) and the period it implies."""
    if traj.eff_grad_norm is None or rep.peaks is None or rep.n_periods < 1:
        return {}
    norm, g = traj.norm[:, i], np.asarray(traj.eff_grad_norm[:, i], dtype=np.float64)
    decay = np.concatenate([np.arange(rep.peaks[j], rep.events[j + 1]) for j in range(rep.n_periods)])
    rho_max = float(np.median([norm[a:b + 1].max() for a, b in zip(rep.events[:-1], rep.events[1:])]))
    rho_min = float(np.median([norm[a:b + 1].min() for a, b in zip(rep.events[:-1], rep.events[1:])]))
    if decay.size == 0 or not rho_max > rho_min:
        return {}
    g_rms = float(np.sqrt(np.mean(g[decay] ** 2)))
    out = {"eff_grad_decay_rms": g_rms,
           "rho_decay_equilibrium": _nan_call(equilibrium_norm, eta, lam, g_rms, mu) if g_rms > 0 else 0.0}
    if mu == 0:
        out["period_predicted_gradient"] = _nan_call(approach_steps, eta, lam, g_rms, rho_max, rho_min)
    return out


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


_EQUILIBRIUM_ONLY = ("rho_predicted", "eff_lr_predicted", "angle_predicted")


def format_table(rows: list[dict], columns=TABLE_COLUMNS, max_rows: int = 40) -> str:
    """Fixed-width text table of :func:`compare_with_theory` rows (``*`` = theory's prediction;
    ``-`` = not applicable or not measured). The equilibrium predictions are shown for rows in
    the ``'equilibrium'`` regime only (the saved rows keep them all)."""
    header = [name for name, _, _ in columns]
    body = [[_fmt(None if key in _EQUILIBRIUM_ONLY and r.get("regime") != "equilibrium" else r.get(key), spec)
             for _, key, spec in columns] for r in rows[:max_rows]]
    widths = [max(len(h), *(len(b[j]) for b in body)) if body else len(h) for j, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths)) for b in body]
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more rows (see comparison.csv)")
    return "\n".join(lines)


def write_comparison(rows: list[dict], folder) -> tuple[Path, Path]:
    """Save rows as ``comparison.json`` and ``comparison.csv`` in ``folder``."""
    folder = Path(folder)
    keys = list(rows[0]) if rows else []
    cols = {k: np.array([r[k] for r in rows], dtype=object if k in ("regime", "optimizer") else None)
            for k in keys}
    return write_json(folder / "comparison.json", rows), write_csv(folder / "comparison.csv", cols)
