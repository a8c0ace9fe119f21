r"""Figure 3 -- period frequency vs :math:`\eta\lambda`: measured points and the theory.

Theory (:func:`theory.stability.predicted_period_length`, Lobacheva et al. 2021, Sec. 4): a
period lasts :math:`T = \ln(\rho_{\max}/\rho_{\min})/(-\ln(1-\eta\lambda))`, the time weight
decay needs to shrink the norm across the period's range. For each run the figure puts the
measured frequency :math:`1/T` (mean spacing of the detected destabilisations) next to the
prediction from the run's own norm range. Pairs with the same product :math:`\eta\lambda` but
different :math:`(\eta, \lambda)` land on the same point (the scaling equivalence).

Left: the toy quadratic, a vectorised sweep. Right: the ConvNet runs of :mod:`nets` (quick:
digits on the CPU).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from paper_figures.common import FigureResult, net_runs, save_data, save_figure, table_row
from paper_figures.toy_runs import toy_reports, toy_sweep
from theory.stability import predicted_period_frequency

NAME = "frequency"
#: (eta, lam) pairs of the toy sweep: eta*lam from 3e-4 to 1e-2, plus equal-product twins
TOY_PAIRS = [(1.0, 3e-4), (1.0, 1e-3), (1.0, 3e-3), (1.0, 1e-2), (0.25, 4e-3), (4.0, 2.5e-4)]
#: |measured/predicted - 1| allowed for every point (checked by the tests). The formula times the
#: decay phase only; the jump itself adds ~10 % to a period on the toy (measured 0.89-0.90).
TOLERANCE = 0.2
#: legend of the theory markers: a frequency 1/T, like the y-axis
THEORY_LABEL = "theory: 1/T = −ln(1−ηλ)/ln(ρmax/ρmin)"


def _toy_points(quick: bool) -> dict:
    eta = np.array([p[0] for p in TOY_PAIRS])
    lam = np.array([p[1] for p in TOY_PAIRS])
    steps = 12_000 if quick else 40_000
    traj = toy_sweep(eta, lam, steps=steps)
    reps, _ = toy_reports(traj)
    meas, pred, n = [], [], []
    for i, rep in enumerate(reps):
        ok = rep is not None and rep.n_periods >= 2 and np.isfinite(rep.norm_ratio) and rep.norm_ratio > 1
        meas.append(1 / rep.mean_length if ok else np.nan)
        pred.append(predicted_period_frequency(eta[i], lam[i], rep.norm_ratio) if ok else np.nan)
        n.append(rep.n_periods if rep is not None else 0)
    return {"eta": eta, "lam": lam, "eta_lam": eta * lam, "measured": np.array(meas),
            "predicted": np.array(pred), "n_periods": np.array(n)}


def _net_points(out: Path, quick: bool) -> dict:
    """Measured and predicted frequency of each network run (:func:`analysis.report.analyse_periods`)."""
    summaries = [run["period_summary"] for run in net_runs(out, quick).values()]
    keys = {"eta": "eta", "lam": "lam", "eta_lam": "eta_lam", "measured": "measured_frequency",
            "predicted": "predicted_frequency", "n_periods": "n_periods"}
    return {k: np.array([s.get(src, np.nan) for s in summaries], dtype=float) for k, src in keys.items()}


def _panel(ax, pts: dict, title: str) -> None:
    x = pts["eta_lam"]
    ax.loglog(x, pts["predicted"], "s", mfc="none", mec="k", ms=9, label=THEORY_LABEL)
    sc = ax.scatter(x, pts["measured"], c=np.log10(pts["eta"]), cmap="viridis", zorder=3, label="measured")
    ax.set(xlabel="ηλ", ylabel="destabilisations per iteration", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    plt.colorbar(sc, ax=ax, label="log10 η")


def make(out: Path, quick: bool) -> FigureResult:
    res = FigureResult(NAME)
    toy = _toy_points(quick)
    net = _net_points(out, quick)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    _panel(axes[0], toy, "toy quadratic (GD + WD)")
    _panel(axes[1], net, "ConvNet (SGD + WD)")
    save_figure(fig, out, NAME, res)
    for label, pts in (("toy", toy), ("net", net)):
        ratio = pts["measured"] / pts["predicted"]
        res.summary[label] = {k: v.tolist() for k, v in pts.items()}
        res.summary[label]["max_rel_error"] = float(np.nanmax(np.abs(ratio - 1))) if np.isfinite(ratio).any() else None
        for i in range(len(pts["eta"])):
            res.table.append(table_row("period frequency (1/iter)",
                                       f"{label} η={pts['eta'][i]:g} λ={pts['lam'][i]:g}",
                                       pts["predicted"][i], pts["measured"][i]))
    res.summary["tolerance"] = TOLERANCE
    save_data(out, NAME, res, {f"{lab}_{k}": v for lab, pts in (("toy", toy), ("net", net)) for k, v in pts.items()})
    return res
