"""Figure of a toy run: loss, weight norm and effective LR over iterations, jumps marked.

Destabilisation events (:func:`simulate.periods.detect_periods`) are drawn as thin vertical
lines on every panel and as triangles on the norm curve, as in Fig. 1 of Lobacheva et al.
(2021). Uses the non-interactive Agg backend, so it works without a display.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_trajectory"]


def _label(cfg: dict) -> str:
    parts = [f"η={cfg['eta']:.3g}", f"λ={cfg['lam']:.3g}"]
    if cfg["momentum"]:
        parts.append(f"μ={cfg['momentum']:.2g}")
    if cfg["noise"]:
        parts.append(f"σ={cfg['noise']:.2g}")
    parts.append(f"seed {cfg['seed']}")
    return ", ".join(parts)


def plot_trajectory(traj, reports, path, *, configs=None, max_configs: int = 6, title: str = "",
                    critical_eff_lr: float | None = None) -> Path:
    """Write a three-panel PNG of ``traj`` (at most ``max_configs`` configurations).

    Parameters
    ----------
    traj : simulate.engine.Trajectory
    reports : list of PeriodReport or None
        One per configuration (``None`` = nothing to mark), e.g. from
        :func:`simulate.sweep.period_reports`.
    path : str or Path
        Output file (``.png``).
    configs : sequence of int, optional
        Which configurations to draw (default: the first ``max_configs``).
    critical_eff_lr : float, optional
        Stability bound :math:`2(1+\\mu)/h` (:func:`theory.stability.critical_effective_lr`),
        drawn as a dashed line on the effective-LR panel.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = list(range(traj.n_configs))[:max_configs] if configs is None else list(configs)[:max_configs]
    it = traj.iterations
    eff_lr = traj.eff_lr
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    panels = [("loss", traj.loss, "log"), ("weight norm ρ", traj.norm, "linear"),
              ("effective LR η/ρ²", eff_lr, "log")]
    for k, i in enumerate(idx):
        color = f"C{k % 10}"
        cfg = traj.config_row(i)
        for ax, (name, arr, scale) in zip(axes, panels):
            if arr is None:
                continue
            y = np.asarray(arr[:, i], dtype=np.float64)
            if scale == "log":
                y = np.where(y > 0, y, np.nan)
            ax.plot(it, y, color=color, lw=0.9, label=_label(cfg) if ax is axes[1] else None)
        rep = reports[i] if reports is not None else None
        if rep is not None and rep.events.size:
            t_ev = it[rep.events]
            for ax in axes:
                for t in t_ev:
                    ax.axvline(t, color=color, lw=0.4, alpha=0.35)
            axes[1].plot(t_ev, traj.norm[rep.events, i], "^", color=color, ms=4)
    for ax, (name, arr, scale) in zip(axes, panels):
        ax.set_ylabel(name)
        if arr is not None:
            ax.set_yscale(scale)
        ax.grid(alpha=0.3)
    if critical_eff_lr is not None:
        axes[2].axhline(critical_eff_lr, color="k", ls="--", lw=0.8, label="stability bound 2(1+μ)/h")
        axes[2].legend(fontsize=8, loc="lower right")
    axes[-1].set_xlabel("iteration")
    axes[1].legend(fontsize=8, loc="upper right")
    axes[0].set_title(title or "SI training with weight decay: ▲ / lines = destabilisations")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
