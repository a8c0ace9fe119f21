r"""Figure 1 -- periodic behaviour of a scale-invariant ConvNet for several learning rates.

As in Lobacheva et al. (2021), Fig. 1: train loss, the norm :math:`\rho` of the SI weights and
the effective learning rate :math:`\eta/\rho^2` over training, one colour per learning rate,
destabilisations (found by :func:`analysis.periods.detect_periods`) marked. Quick mode: fully SI
ConvNet (width 8) on scikit-learn's digits on the CPU; full mode: see
:func:`paper_figures.common.net_config`.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from paper_figures.common import FigureResult, net_runs, save_data, save_figure

NAME = "periodic"
PANELS = (("train_loss", "train loss", "log"), ("si_norm", "SI weight norm ρ", "linear"),
          ("eff_lr", "effective LR η/ρ²", "log"))


def make(out: Path, quick: bool) -> FigureResult:
    res = FigureResult(NAME)
    runs = net_runs(out, quick)
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(9, 8), sharex=True)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(runs)))
    arrays = {}
    for (lr, run), color in zip(runs.items(), colors):
        st = run["steps"]
        it = np.asarray(st["iteration"])
        ev = np.asarray(run["period_summary"].get("event_iterations", []), dtype=int)
        for ax, (key, label, scale) in zip(axes, PANELS):
            y = np.asarray(st[key], dtype=float)
            ax.plot(it, y, color=color, lw=0.8, label=f"η = {lr:g}")
            if ev.size:
                ax.plot(ev, np.interp(ev, it, y), "v", color=color, ms=5, mec="crimson")
            ax.set(ylabel=label, yscale=scale)
            arrays[f"lr{lr:g}_{key}"] = y
        arrays[f"lr{lr:g}_iteration"] = it
        s = run["period_summary"]
        res.summary[f"lr{lr:g}"] = {k: s.get(k) for k in ("eta", "lam", "n_periods", "mean_length",
                                                          "predicted_mean_length", "event_iterations")}
    axes[0].legend(fontsize=8, ncol=len(runs))
    axes[0].set_title("SI ConvNet, SGD + WD: destabilisations (▼) start new periods")
    axes[-1].set_xlabel("iteration")
    save_figure(fig, out, NAME, res)
    res.summary["total_periods"] = int(sum(v["n_periods"] or 0 for v in res.summary.values()))
    save_data(out, NAME, res, arrays)
    return res
