"""The CIFAR-10 eta*lambda study's figure: anatomy, measured/predicted, frequency, batch sharpness."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

__all__ = ["plot_study"]


def _label(rec: dict, twin: bool = False) -> str:
    return f"ηλ={rec['eta_lam']:.2g} (η={rec['eta']:g}, λ={rec['lam']:g})" + (" twin" if twin else "")


def _anatomy(ax, records, arrays, picks, colors, n_show=3):
    for k in picks:
        rec, arr = records[k], arrays[k]
        ev, pk = arr["events"], arr["peaks"]
        if ev.size < 2:
            continue
        start = ev[0]
        stop = ev[min(n_show, ev.size - 1)]
        m = (arr["iteration"] >= start) & (arr["iteration"] <= stop)
        t = (arr["iteration"][m] - start) * rec["eta_lam"]
        rho = arr["si_norm"][m] / arr["si_norm"][m].max()
        ax.plot(t, rho, color=colors[k], lw=0.9, label=_label(rec))
        for a, p in zip(ev[:n_show], pk[:n_show]):
            ax.axvspan((a - start) * rec["eta_lam"], (p - start) * rec["eta_lam"], color=colors[k], alpha=0.12)
    ax.set(xlabel="ηλ · iterations since the first destabilisation", ylabel="ρ / max ρ in the window",
           title="anatomy: rise (shaded, onset → norm max), then decay")
    _legend(ax)
    ax.grid(alpha=0.3)


def _legend(ax):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _ratios(ax, records, twin_index):
    x = np.array([r["eta_lam"] for r in records])
    for key, marker, label in (("measured_over_predicted", "o", "whole period, leave-one-out prediction"),
                               ("decay_measured_over_predicted", "x", "decay phase vs ln(ρmax/ρnext)/ηλ"),
                               ("same_period_ratio", "s", "reference: formula on the same period")):
        y = np.array([r[key] if r[key] is not None else np.nan for r in records], dtype=float)
        ax.plot(x, y, marker, mfc="none" if marker == "s" else None, ms=7, label=label)
        if twin_index is not None and math.isfinite(y[twin_index]):
            ax.plot(x[twin_index], y[twin_index], marker, color="crimson", ms=4)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlim(x.min() / 1.5, x.max() * 1.5)          # defined even where no ratio could be measured
    ax.set(xscale="log", xlabel="ηλ", ylabel="measured / predicted period",
           title="where the theory holds (red: the equal-ηλ twin)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")


def _frequency(ax, records, summary):
    x = np.array([r["eta_lam"] for r in records])
    f = np.array([1 / r["measured_period"] if r["measured_period"] else np.nan for r in records])
    ax.plot(x, f, "o", label="measured")
    fit = summary.get("frequency_fit")
    if fit:
        xs = np.geomspace(x.min(), x.max(), 50)
        lo, hi = fit["interval"]
        ax.plot(xs, fit["prefactor"] * xs ** fit["exponent"], "-",
                label=f"fit: slope {fit['exponent']:.2f} [{lo:.2f}, {hi:.2f}]")
        ref = np.nanmedian(f / x)
        ax.plot(xs, ref * xs, "k--", lw=0.8, label="slope 1 (free decay alone)")
    ax.set_xlim(x.min() / 1.5, x.max() * 1.5)
    ax.set(xscale="log", xlabel="ηλ", ylabel="destabilisations per iteration", title="frequency vs ηλ")
    if np.any(np.isfinite(f) & (f > 0)):
        ax.set_yscale("log")
    _legend(ax)
    ax.grid(alpha=0.3, which="both")


def _edge(ax, records, arrays, picks, colors):
    for k in picks:
        rec, arr = records[k], arrays[k]
        if not arr["bs_iteration"].size or arr["events"].size < 2:
            continue
        t = arr["bs_iteration"] * rec["eta_lam"]
        ratio = arr["bs_eff"] / rec["threshold"]
        order = max(1, int(len(ratio) ** 0.5 / 3))       # a running median over a few measurements
        smooth = np.array([np.median(ratio[max(0, i - order):i + order + 1]) for i in range(ratio.size)])
        ax.plot(t, ratio, ".", color=colors[k], ms=1.5, alpha=0.35)
        ax.plot(t, smooth, color=colors[k], lw=0.9, label=_label(rec))
        for e in arr["events"]:
            ax.axvline(e * rec["eta_lam"], color=colors[k], lw=0.5, ls=":")
    ax.axhline(1.0, color="crimson", lw=1.0, label="threshold 2(1+μ−ηλ)")
    ax.set(xlabel="ηλ · iteration", ylabel="η̃ · h_B / threshold",
           title="batch sharpness on the sphere vs the stability threshold (⋮ onsets)")
    if any(np.any(arrays[k]["bs_eff"] > 0) for k in picks):
        ax.set_yscale("log")
    _legend(ax)
    ax.grid(alpha=0.3, which="both")


def plot_study(records: list[dict], arrays: list[dict], summary: dict, title: str, twin_index: int | None = None):
    """The 2x2 figure of the study (a matplotlib Figure)."""
    fig, axes = plt.subplots(2, 2, figsize=(14, 9.5), layout="constrained")
    order = np.argsort([r["eta_lam"] for r in records])
    colors = dict(zip(order, plt.cm.viridis(np.linspace(0, 0.85, len(records)))))
    ends = [int(order[0]), int(order[len(order) // 2]), int(order[-1])]
    picks = list(dict.fromkeys(ends))
    _anatomy(axes[0, 0], records, arrays, picks, colors)
    _ratios(axes[0, 1], records, twin_index)
    _frequency(axes[1, 0], records, summary)
    _edge(axes[1, 1], records, arrays, [picks[0], picks[-1]], colors)
    ticks = sorted({r["eta_lam"] for r in records})
    for ax in (axes[0, 1], axes[1, 0]):
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(ticks, [f"{t:.2g}" for t in ticks], fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig
