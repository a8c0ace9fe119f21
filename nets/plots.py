"""Figures of a run and of an LR sweep (matplotlib, Agg backend, written to PNG).

The run figure follows the panels of Lobacheva et al. (NeurIPS 2021, Fig. 1): train loss, the
norm of the SI weights, the effective LR and the test accuracy over iterations, with the
detected destabilisations marked as vertical lines. The sweep figure shows period frequency
against eta*lambda, measured and predicted (Sec. 4: frequency ~ linear in eta*lambda).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from analysis.forecast import forecast_onsets

__all__ = ["plot_run", "plot_monitor", "plot_compare", "plot_sweep", "plot_regimes", "envelope", "MAX_POINTS"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


#: a line longer than this is drawn through its envelope (figure time stays flat in the run's length)
MAX_POINTS = 4000


def envelope(x, y, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` thinned to at most ``max_points`` points that keep every bucket's minimum and
    maximum of ``y`` in order (spikes survive, unlike plain striding); short series unchanged."""
    x, y = np.asarray(x), np.asarray(y, dtype=float)
    if y.size <= max_points:
        return x, y
    width = -(-y.size // (max_points // 2))                # points per bucket
    n_buckets = -(-y.size // width)
    pad = np.full(n_buckets * width, np.nan)
    pad[:y.size] = np.where(np.isfinite(y), y, np.nan)
    grid = pad.reshape(n_buckets, width)
    empty = np.isnan(grid).all(axis=1)
    filled = np.where(empty[:, None], 0.0, grid)             # all-NaN buckets: keep their first point
    lo = np.where(empty, 0, np.nanargmin(np.where(np.isnan(grid), np.inf, filled), axis=1))
    hi = np.where(empty, 0, np.nanargmax(np.where(np.isnan(grid), -np.inf, filled), axis=1))
    base = np.arange(n_buckets) * width
    keep = np.unique(np.concatenate([base + lo, base + hi]))
    keep = keep[keep < y.size]
    return x[keep], y[keep]


def _draw(panels, summary: dict, it) -> None:
    """Draw ``(ax, x, y, label, scale)`` panels with destabilisations and a collapse marked."""
    for ax, x, y, label, scale in panels:
        y = np.asarray(y, dtype=float)
        if scale == "log":
            y = np.where(y > 0, y, np.nan)
        x, y = envelope(x, y)
        ax.plot(x, y, lw=0.8, marker="." if len(x) < 200 else None)
        ax.set_ylabel(label)
        if scale == "log" and np.isfinite(y).any():
            ax.set_yscale("log")
        for e in summary.get("event_iterations", []):
            ax.axvline(e, color="tab:red", lw=0.6, alpha=0.6)
        if "collapse" in summary:
            ax.axvspan(summary["collapse"]["iteration"], it[-1], color="0.85", zorder=0)
        ax.grid(alpha=0.3)


def _save(fig, path) -> Path:
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_run(path, steps: dict, evals: dict, summary: dict, title: str = "", *,
             sharpness: dict | None = None, threshold: float = 2.0,
             eff_lr_label: str = "effective LR $\\eta/\\rho^2$") -> Path:
    """Four stacked panels over iterations (five with ``sharpness``: the measured
    :math:`\\tilde\\eta h = \\eta\\lambda_{\\max}` against ``threshold``, and the critical norm
    :math:`\\rho_c` of :mod:`analysis.forecast` on the norm panel), destabilisations marked, a collapse
    (``summary["collapse"]``, :func:`analysis.report.find_collapse`) shaded; returns ``path``."""
    plt = _pyplot()
    n = 4 if sharpness is None else 5
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.25 * n), sharex=True)
    it = steps["iteration"]
    panels = [
        (axes[0], it, steps["train_loss"], "train loss (batch)", "log"),
        (axes[1], it, steps["si_norm_equiv"], "SI weight norm $\\rho$", "linear"),
        (axes[2], it, steps["eff_lr"], eff_lr_label, "log"),
        (axes[3], evals["iteration"], evals["test_acc"], "test accuracy", "linear"),
    ]
    if sharpness is not None:
        panels.append((axes[4], sharpness["iteration"], sharpness["eff_lr_sharpness"],
                       "$\\tilde\\eta h = \\eta\\lambda_{\\max}$", "log"))
        axes[4].axhline(threshold, color="k", ls="--", lw=0.8, label=f"2(1+$\\mu$) = {threshold:g}")
        axes[4].legend(fontsize=8, loc="upper right")
    if sharpness is not None and summary.get("wd_mode") == "wd":
        fc = forecast_onsets(sharpness, summary["eta"], summary["lam"], summary["momentum"])
        axes[1].plot(fc["iteration"], fc["critical_norm"], ".", ms=3, color="tab:orange",
                     label="critical norm $\\rho_c=\\sqrt{\\eta h/2(1+\\mu)}$ (measured h)")
        axes[1].legend(fontsize=8, loc="upper right")
    _draw(panels, summary, it)
    axes[-1].set_xlabel("iteration")
    head = title + "\n" if title else ""
    if summary.get("n_periods", 0) > 0:
        head += (f"{summary['n_periods']} periods, mean {summary['mean_length']:.0f} it; predicted "
                 f"{summary['predicted_mean_length']:.0f} it (red: destabilisations)")
    else:
        head += "no complete period detected (red: destabilisations)"
    if "collapse" in summary:
        head += f"; grey: dead network from iteration {summary['collapse']['iteration']} (zero SI gradient)"
    axes[0].set_title(head, fontsize=9)
    return _save(fig, path)


def plot_monitor(path, steps: dict, series: dict, summary: dict, *, sharpness: dict | None = None) -> Path:
    """The :class:`nets.SIMonitor` figure: train loss, SI norm, effective LR and angular update per
    step over iterations, each measured (line) against the theory's equilibrium value for the
    current hyper-parameters (dashed: ``series`` of :func:`nets.monitor.report.analyse_monitor`);
    destabilisations marked; with ``sharpness`` a fifth panel :math:`\\eta\\lambda_{\\max}`."""
    plt = _pyplot()
    n = 4 if sharpness is None else 5
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.25 * n), sharex=True)
    it = steps["iteration"]
    periods = summary.get("periods", {})
    panels = [(axes[0], it, steps["train_loss"], "train loss (batch)", "log"),
              (axes[1], it, steps["si_norm_equiv"], "SI norm $\\rho$", "log"),
              (axes[2], it, steps["eff_lr"], "effective LR\n($\\eta/\\rho^2$ SGD, $\\eta/\\rho$ Adam)", "log"),
              (axes[3], it, steps["angular_update"], "angular update (rad/step)", "log")]
    if sharpness is not None:
        panels.append((axes[4], sharpness["iteration"], sharpness["eff_lr_sharpness"],
                       "$\\eta\\lambda_{\\max}$", "log"))
    _draw(panels, periods, it)
    for ax, key in ((axes[1], "eq_si_norm"), (axes[2], "eq_eff_lr"), (axes[3], "eq_angular_update")):
        y = np.asarray(series[key], dtype=float)
        if np.isfinite(y).any():
            ax.plot(*envelope(it, y), "k--", lw=0.8, label="equilibrium (theory)")
            ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("optimizer step")
    reg = summary["regime"]
    axes[0].set_title(textwrap.fill(f"regime: {reg['regime']} -- {reg['reason']}", 130), fontsize=8)
    return _save(fig, path)


def plot_compare(path, runs: list[dict], title: str = "") -> Path:
    """Several runs on shared axes: train loss, SI norm (equilibrium dashed), effective LR, and
    the angular update over its equilibrium value (1 = at equilibrium). ``runs``: dicts with
    ``label``, ``steps`` (step table), ``series`` (equilibrium series) and ``events``
    (destabilisation iterations, marked with triangles on the norm)."""
    plt = _pyplot()
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    for k, run in enumerate(runs):
        c = f"C{k}"
        it, st, se = run["steps"]["iteration"], run["steps"], run["series"]
        ratio = np.asarray(st["angular_update"], float) / np.asarray(se["eq_angular_update"], float)
        for ax, y in zip(axes, (st["train_loss"], st["si_norm_equiv"], st["eff_lr"], ratio)):
            y = np.asarray(y, dtype=float)
            ax.plot(it, np.where(y > 0, y, np.nan), color=c, lw=0.8, label=run["label"] if ax is axes[0] else None)
        axes[1].plot(it, se["eq_si_norm"], color=c, ls="--", lw=0.7)
        ev = np.asarray(run["events"], dtype=int)
        if ev.size:
            axes[1].plot(ev, np.interp(ev, it, st["si_norm_equiv"]), "v", color=c, ms=5)
    labels = ("train loss (batch)", "SI norm $\\rho$ (dashed: $\\rho^*$)",
              "effective LR\n($\\eta/\\rho^2$ SGD, $\\eta/\\rho$ Adam)", "angular update / $\\Delta\\theta^*$")
    for ax, label in zip(axes, labels):
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[3].axhline(1.0, color="k", lw=0.8, ls=":")
    axes[0].legend(fontsize=7, loc="lower left", ncol=2)
    axes[0].set_title(title or "SI weights under different optimizers (triangles: destabilisations)", fontsize=9)
    axes[-1].set_xlabel("iteration")
    return _save(fig, path)


def plot_sweep(path, rows: list[dict], title: str = "") -> Path:
    """Measured and predicted period frequency vs eta*lambda (log-log), one point per run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    x = np.array([r["eta_lam"] for r in rows], dtype=float)
    meas = np.array([r["measured_frequency"] for r in rows], dtype=float)
    pred = np.array([r["predicted_frequency"] for r in rows], dtype=float)
    ax.plot(x, meas, "o-", label="measured 1/period")
    ax.plot(x, pred, "s--", label="predicted (measured norm ratio)")
    ok = np.isfinite(meas) & (meas > 0)
    if ok.any():
        c = np.exp(np.mean(np.log(meas[ok] / x[ok])))
        xs = np.geomspace(x.min(), x.max(), 20)
        ax.plot(xs, c * xs, ":", color="gray", label="slope 1 (freq $\\propto \\eta\\lambda$)")
    ax.set_xscale("log")
    if np.isfinite(np.r_[meas, pred]).any():
        ax.set_yscale("log")
    ax.set_xlabel("$\\eta\\lambda$")
    ax.set_ylabel("destabilisations per iteration")
    ax.set_title(title or "period frequency vs $\\eta\\lambda$", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def plot_regimes(path, rows: list[dict], boundaries: dict, title: str = "") -> Path:
    """Regime map of a fixed-ELR sweep (:mod:`nets.regimes`): final train loss / chance against
    the ELR, coloured by regime, regions shaded; with measured sharpness, ELR x h against 2."""
    from analysis.regime_plots import draw_regime_map, regime_legend, shade_regimes

    plt = _pyplot()
    sharp = [r for r in rows if np.isfinite(r["eff_lr_sharpness"])]
    fig, axes = plt.subplots(1, 2 if sharp else 1, figsize=(11 if sharp else 6, 4.2), squeeze=False)
    ax = axes[0, 0]
    e = np.array([r["fixed_elr"] for r in rows], dtype=float)
    for variant, flag, marker in (("total", False, "o"), ("per_layer", True, "s")):
        sel = [r for r in rows if r["per_layer"] == flag]
        if sel:
            draw_regime_map(ax, [r["fixed_elr"] for r in sel], [r["level"] for r in sel],
                            [r["regime"] for r in sel], marker=marker, label=f"{variant.replace('_', ' ')} norm fixed")
    shade_regimes(ax, boundaries.get("total") or boundaries.get("per_layer", {}), e.min() / 2, e.max() * 2)
    ax.set(xlabel="effective LR $\\tilde\\eta$", ylabel="final train loss / ln(classes)", xlim=(e.min() / 2, e.max() * 2))
    regime_legend(ax, fontsize=8)
    ax.grid(alpha=0.3, which="both")
    if sharp:
        ax2 = axes[0, 1]
        ax2.plot([r["fixed_elr"] for r in sharp], [r["eff_lr_sharpness"] for r in sharp], "o-", color="0.3",
                 label="end of the run")
        ax2.plot([r["fixed_elr"] for r in sharp], [r["eff_lr_sharpness_start"] for r in sharp], "o:", mfc="none",
                 color="0.6", label="at initialisation")
        ax2.axhline(2.0, color="k", ls="--", lw=0.8, label="destabilisation: $\\tilde\\eta h = 2$")
        ax2.set(xscale="log", yscale="log", xlabel="effective LR $\\tilde\\eta$",
                ylabel="$\\tilde\\eta h$ (sphere sharpness h)")
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3, which="both")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)
