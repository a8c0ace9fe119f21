r"""Figure 2 -- one period in detail, its phases marked, from the toy and from a network.

Phases (Lobacheva et al. 2021, Sec. 4; :mod:`theory.stability`):

1. *decay*: after the jump the loss falls, gradients become small and weight decay shrinks the
   norm geometrically, :math:`\rho_t \approx \rho_0(1-\eta\lambda)^t`, so the effective LR grows;
2. *unstable*: the norm has passed the critical norm :math:`\rho_c = \sqrt{\eta h/2}`
   (:math:`\tilde\eta h > 2`, toy only: there the sphere sharpness ``h`` is known exactly);
   the unstable direction grows from noise;
3. *jump*: the loss spikes, large gradients push the norm up (from the detected onset to the
   top of the jump), the effective LR drops, and the next period begins.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from paper_figures.common import FigureResult, net_runs, save_data, save_figure, table_row
from paper_figures.toy_runs import toy_objective, toy_reports, toy_sweep
from theory.dynamics import effective_lr
from theory.stability import critical_effective_lr, critical_norm, predicted_period_length

NAME = "period_detail"
PHASE_COLORS = {"decay": "#cfe8cf", "unstable": "#fde2b5", "jump": "#f6b8b8"}


def _one_period(norm: np.ndarray, events: np.ndarray, which: int = -2):
    """Slice [onset_k, onset_{k+1} + margin] of a complete period and its peak index."""
    a, b = int(events[which - 1]), int(events[which])
    peak = a + int(np.argmax(norm[a:b]))
    return a, b, peak


def _shade(ax, x, spans) -> None:
    for name, (lo, hi) in spans.items():
        if hi > lo:
            ax.axvspan(x[lo], x[min(hi, len(x) - 1)], color=PHASE_COLORS[name], alpha=0.8, lw=0, label=name)


def _toy_panel(axes, quick: bool, res: FigureResult) -> dict:
    eta, lam = 1.0, 1e-3
    obj = toy_objective()
    h = obj.sphere_sharpness()
    traj = toy_sweep([eta], [lam], steps=3000 if quick else 6000)
    reps, off = toy_reports(traj)
    rep = reps[0]
    norm, loss = traj.norm[off:, 0], traj.loss[off:, 0]
    a, b, peak = _one_period(norm, rep.events)
    end = min(b + (peak - a) + 20, norm.size)
    rho_c = critical_norm(eta, h)
    cross = a + int(np.argmax(norm[peak:b] < rho_c)) + (peak - a) if np.any(norm[peak:b] < rho_c) else b
    spans = {"jump": (a, peak), "decay": (peak, cross), "unstable": (cross, b)}
    x = np.arange(norm.size)
    sl = slice(a, end)
    for ax in axes:
        _shade(ax, x, spans)
    axes[0].semilogy(x[sl], loss[sl] - obj.min_loss + 1e-16, "k", lw=1)
    axes[1].plot(x[sl], norm[sl], "k", lw=1)
    axes[1].axhline(rho_c, color="crimson", ls="--", lw=0.8, label="ρc = √(ηh/2)")
    axes[2].semilogy(x[sl], effective_lr(eta, norm[sl]), "k", lw=1)
    axes[2].axhline(critical_effective_lr(h), color="crimson", ls="--", lw=0.8, label="2/h")
    axes[0].set_title(f"toy quadratic, η={eta:g}, λ={lam:g}")
    axes[0].set_ylabel("loss − min")
    rho_onsets = norm[rep.events]
    res.table.append(table_row("norm at destabilisation", "toy η=1 λ=1e-3", rho_c, float(np.median(rho_onsets))))
    measured_T = rep.mean_length
    pred_T = predicted_period_length(eta, lam, rep.norm_ratio)
    res.table.append(table_row("period length (iter)", "toy η=1 λ=1e-3", pred_T, measured_T))
    return {"toy_norm": norm[sl], "toy_loss": loss[sl], "toy_spans": np.array(list(spans.values())) - a,
            "rho_critical": rho_c, "rho_onsets_median": float(np.median(rho_onsets)),
            "n_periods": rep.n_periods, "period_measured": measured_T, "period_predicted": pred_T}


def _irregularity(summary: dict) -> float:
    """Coefficient of variation of a run's period lengths (inf with fewer than 2 periods)."""
    if summary.get("n_periods", 0) < 2:
        return float("inf")
    return summary["std_length"] / summary["mean_length"]


def _net_panel(axes, out: Path, quick: bool, res: FigureResult) -> dict:
    runs = net_runs(out, quick)
    lr = min(runs, key=lambda k: _irregularity(runs[k]["period_summary"]))
    run = runs[lr]
    st, s = run["steps"], run["period_summary"]
    it = np.asarray(st["iteration"])
    ev_it = np.asarray(s.get("event_iterations", []), dtype=int)
    if ev_it.size < 2:
        axes[0].set_title(f"ConvNet η={lr:g}: fewer than 2 destabilisations recorded")
        return {"net_n_periods": int(s.get("n_periods", 0))}
    ev = np.searchsorted(it, ev_it)
    norm = np.asarray(st["si_norm"], dtype=float)
    a, b, peak = _one_period(norm, ev)
    end = min(b + (peak - a) + 5, norm.size)
    spans = {"jump": (a, peak), "decay": (peak, b)}
    sl = slice(a, end)
    for ax in axes:
        _shade(ax, it, spans)
    axes[0].semilogy(it[sl], np.asarray(st["train_loss"])[sl], "k", lw=1)
    axes[1].plot(it[sl], norm[sl], "k", lw=1)
    axes[2].semilogy(it[sl], np.asarray(st["eff_lr"])[sl], "k", lw=1)
    axes[0].set_title(f"SI ConvNet, η={lr:g}, λ={s.get('lam', float('nan')):g}")
    axes[0].set_ylabel("train loss")
    return {"net_iteration": it[sl], "net_norm": norm[sl], "net_n_periods": int(s.get("n_periods", 0))}


def make(out: Path, quick: bool) -> FigureResult:
    res = FigureResult(NAME)
    fig, axes = plt.subplots(3, 2, figsize=(11, 7.5), layout="constrained")
    data = _toy_panel(axes[:, 0], quick, res)
    data.update(_net_panel(axes[:, 1], out, quick, res))
    for ax in axes[1]:
        ax.set_ylabel("SI weight norm ρ")
    for ax in axes[2]:
        ax.set_ylabel("effective LR η/ρ²")
        ax.set_xlabel("iteration")
    handles, labels = [], []
    for ax in axes[:, 0]:
        for hd, lb in zip(*ax.get_legend_handles_labels()):
            if lb not in labels:
                handles.append(hd)
                labels.append(lb)
    fig.legend(handles, labels, loc="outside upper center", ncol=5, fontsize=8)
    save_figure(fig, out, NAME, res)
    res.summary = {k: v for k, v in data.items() if np.ndim(v) == 0}
    save_data(out, NAME, res, {k: v for k, v in data.items() if np.ndim(v) > 0})
    return res
