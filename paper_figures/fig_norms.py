r"""Beyond the paper's main text -- periodic behaviour with other normalisation layers.

Lobacheva et al. (2021) study BatchNorm; their appendix asks whether the periodic behaviour is a
property of scale invariance as such. Here the ConvNet of the network figures
(:func:`paper_figures.common.net_config` at :math:`\eta = 1`) is trained with each normalisation
of :mod:`nets.models` -- BatchNorm, LayerNorm, GroupNorm, weight normalisation -- everything else
equal; :mod:`nets.monitor.si` finds the SI weights of each variant by testing (the four conv tensors in
every case). Columns: one normalisation each; rows: train loss, SI norm :math:`\rho` and effective
LR :math:`\eta/\rho^2`, destabilisations (:func:`analysis.periods.detect_periods`) marked; the
title gives the measured and predicted period lengths and the range of the norm ratios
:math:`\rho_{\max}/\rho_{\min}` of the periods (:func:`analysis.report.analyse_periods`).
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from paper_figures.common import FigureResult, net_config, save_data, save_figure, table_row

NAME = "norms"
NORM_NAMES = {"bn": "BatchNorm", "ln": "LayerNorm", "gn": "GroupNorm", "wn": "weight norm"}
PANELS = (("train_loss", "train loss", "log"), ("si_norm", "SI norm ρ", "linear"),
          ("eff_lr", "effective LR η/ρ²", "log"))


def default_base(quick: bool):
    """:func:`paper_figures.common.net_config` at eta = 1; quick runs on one CPU thread (a fixed order
    of float operations: a rerun on the same machine reproduces the runs)."""
    cfg = net_config(1.0, quick)
    return replace(cfg, threads=1) if quick else cfg


def norm_runs(out: Path, quick: bool, base=None) -> dict:
    """Train (or reuse) one run per normalisation in ``out/norm_runs/<norm>/``; returns
    ``{norm: {"steps": ..., "summary": ..., "si": [...]}}``."""
    from nets.training.sweep import run_or_resume

    base = base or default_base(quick)
    runs = {}
    for norm in NORM_NAMES:
        run_dir = out / "norm_runs" / norm
        run_or_resume(replace(base, norm=norm), run_dir)
        data = np.load(run_dir / "metrics.npz")
        runs[norm] = {"steps": {k[5:]: data[k] for k in data.files if k.startswith("step_")},
                      "summary": json.loads((run_dir / "periods.json").read_text())["summary"],
                      "si": json.loads((run_dir / "config.json").read_text())["si_groups"]["si"]}
    return runs


def make(out: Path, quick: bool, *, base=None) -> FigureResult:
    """Train (or reuse) the four runs and draw the 3 x 4 figure; ``base`` overrides the run
    configuration (tests)."""
    res = FigureResult(NAME)
    runs = norm_runs(out, quick, base)
    fig, axes = plt.subplots(len(PANELS), len(runs), figsize=(16, 8), sharex=True, squeeze=False)
    arrays = {}
    for col, (norm, run) in enumerate(runs.items()):
        st, s = run["steps"], run["summary"]
        it = np.asarray(st["iteration"])
        ev = np.asarray(s.get("event_iterations", []), dtype=int)
        for row, (key, label, scale) in enumerate(PANELS):
            ax = axes[row, col]
            y = np.asarray(st[key], dtype=float)
            ax.plot(it, y, lw=0.7, color=f"C{col}")
            if ev.size:
                ax.plot(ev, np.interp(ev, it, y), "v", color="crimson", ms=4)
            ax.set(yscale=scale)
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel(label)
            arrays[f"{norm}_{key}"] = y
        arrays[f"{norm}_iteration"] = it
        n = s.get("n_periods", 0)
        ratios = [p["decay_ratio"] for p in s.get("periods", [])]
        head = (f"{n} periods: {s['mean_length']:.0f} it vs {s['predicted_mean_length']:.0f} predicted;\n"
                f"norm ratio per period {min(ratios):.2g}-{max(ratios):.3g}" if n else "no complete period")
        axes[0, col].set_title(f"{NORM_NAMES[norm]} ({len(run['si'])} SI tensors)\n{head}", fontsize=9)
        axes[-1, col].set_xlabel("iteration")
        res.summary[norm] = {"si_tensors": run["si"], "decay_ratios": ratios, **{k: s.get(k) for k in (
            "n_periods", "mean_length", "std_length", "predicted_mean_length", "measured_over_predicted",
            "event_iterations")}}
        if n:
            res.table.append(table_row("mean period length (it)", f"ConvNet with {NORM_NAMES[norm]}",
                                       s["predicted_mean_length"], s["mean_length"]))
    cfg = base or default_base(quick)
    fig.suptitle(f"SI ConvNet (width {cfg.width}, {cfg.dataset}), SGD + WD η = {cfg.lr:g}, λ = {cfg.wd:g}: "
                 "periodic behaviour with each normalisation (▼ destabilisations)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out, NAME, res)
    save_data(out, NAME, res, arrays)
    return res
