"""Drawing of a regime map (:mod:`analysis.regimes`) on a matplotlib axis, shared by the toy and
network figures (``nets.plots.plot_regimes``, ``paper_figures.fig_regimes``)."""
from __future__ import annotations

import numpy as np

from analysis.regimes import REGIMES

__all__ = ["REGIME_COLORS", "draw_regime_map", "shade_regimes", "regime_legend"]

REGIME_COLORS = {"convergence": "tab:green", "chaotic": "tab:orange", "divergence": "tab:red"}


def shade_regimes(ax, boundaries: dict, lo: float, hi: float, *, alpha: float = 0.12) -> None:
    """Shade the ELR ranges of the three regimes between ``lo`` and ``hi`` (log axis), using
    ``boundaries`` from :func:`analysis.regimes.regime_boundaries`; dashed lines at the edges."""
    b1, b2 = boundaries.get("convergence_upper"), boundaries.get("divergence_lower")
    edges = [lo, b1 if b1 is not None else lo, b2 if b2 is not None else hi, hi]
    for name, a, b in zip(REGIMES, edges[:-1], edges[1:]):
        if b > a:
            ax.axvspan(a, b, color=REGIME_COLORS[name], alpha=alpha, lw=0)
    for b in (b1, b2):
        if b is not None:
            ax.axvline(b, color="0.3", ls="--", lw=0.8)


def draw_regime_map(ax, eff_lrs, values, labels, *, marker: str = "o", label: str | None = None,
                    line_color: str = "0.5") -> None:
    """Plot ``values`` (e.g. final loss / chance loss) against the ELRs, each point coloured by its
    regime, joined by a thin line; log-log axes."""
    e = np.asarray(eff_lrs, dtype=float)
    v = np.asarray(values, dtype=float)
    order = np.argsort(e)
    ax.plot(e[order], v[order], "-", color=line_color, lw=0.8, label=label)
    for name in REGIMES:
        sel = np.asarray(labels) == name
        if sel.any():
            ax.plot(e[sel], v[sel], marker, ls="none", color=REGIME_COLORS[name], mec="k", mew=0.4, ms=6)
    ax.set(xscale="log", yscale="log")


def regime_legend(ax, **kw) -> None:
    """Legend entries for the three regime colours (plus whatever ``ax`` already labels)."""
    from matplotlib.lines import Line2D

    handles, names = ax.get_legend_handles_labels()
    for name in REGIMES:
        handles.append(Line2D([], [], marker="o", ls="none", color=REGIME_COLORS[name], mec="k", mew=0.4))
        names.append(name if name != "chaotic" else "chaotic equilibrium")
    ax.legend(handles, names, **kw)
