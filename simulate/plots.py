"""Figure of a toy run: loss, weight norm and effective LR over iterations, jumps marked.

Destabilisation events (:func:`analysis.periods.detect_periods`) are drawn as thin vertical
lines on every panel and as triangles on the norm curve, as in Fig. 1 of Lobacheva et al.
(2021). Every configuration is drawn: one colour per setting (eta, lambda, momentum, noise),
its seeds in that colour with different line styles. Beyond :data:`MAX_SETTINGS` settings the
figure draws the first ones and says, in its title, how many it left out
(:func:`settings_left_out` gives the same line to the command line). Uses the
non-interactive Agg backend, so it works without a display.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_trajectory", "setting_groups", "settings_left_out", "MAX_SETTINGS"]

#: settings (colours) one figure draws; more would be unreadable
MAX_SETTINGS = 10
_SETTING_KEYS = ("eta", "lam", "momentum", "noise")
_STYLES = ("-", "--", ":", "-.")


def _label(cfg: dict, n_seeds: int) -> str:
    parts = [f"η={cfg['eta']:.3g}", f"λ={cfg['lam']:.3g}"]
    if cfg["momentum"]:
        parts.append(f"μ={cfg['momentum']:.2g}")
    if cfg["noise"]:
        parts.append(f"σ={cfg['noise']:.2g}")
    parts.append(f"seed {cfg['seed']}" if n_seeds == 1 else f"{n_seeds} seeds")
    return ", ".join(parts)


def setting_groups(traj, configs=None) -> list[list[int]]:
    """Indices of ``configs`` (default: all) grouped by setting (eta, lambda, momentum, noise),
    in order of first appearance; the seeds of a setting form one group."""
    idx = range(traj.n_configs) if configs is None else configs
    groups: dict = {}
    for i in idx:
        key = tuple(float(traj.config[k][i]) for k in _SETTING_KEYS)
        groups.setdefault(key, []).append(int(i))
    return list(groups.values())


def settings_left_out(traj, configs=None, max_settings: int = MAX_SETTINGS) -> str | None:
    """``"showing 10 of 27 settings (30 of 81 runs)"`` when the figure cannot draw them all, else None."""
    groups = setting_groups(traj, configs)
    if len(groups) <= max_settings:
        return None
    shown = sum(len(g) for g in groups[:max_settings])
    return (f"showing {max_settings} of {len(groups)} settings ({shown} of {sum(map(len, groups))} runs; "
            "all are in curves.csv)")


def plot_trajectory(traj, reports, path, *, configs=None, max_settings: int = MAX_SETTINGS, title: str = "",
                    critical_eff_lr: float | None = None) -> Path:
    """Write a three-panel PNG of ``traj``: every configuration, up to ``max_settings`` settings.

    Parameters
    ----------
    traj : simulate.engine.Trajectory
    reports : list of PeriodReport or None
        One per configuration (``None`` = nothing to mark), e.g. from
        :func:`simulate.sweep.period_reports`.
    path : str or Path
        Output file (``.png``).
    configs : sequence of int, optional
        Which configurations to draw (default: all).
    max_settings : int
        At most this many settings (colours); the title says what was left out.
    critical_eff_lr : float, optional
        Stability bound :math:`2(1+\\mu)/h` (:func:`theory.stability.critical_effective_lr`),
        drawn as a dashed line on the effective-LR panel.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = setting_groups(traj, configs)
    it = traj.iterations
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    panels = [("loss", traj.loss, "log"), ("weight norm ρ", traj.norm, "linear"),
              ("effective LR η/ρ²", traj.eff_lr, "log")]
    for k, group in enumerate(groups[:max_settings]):
        color = f"C{k % 10}"
        for s, i in enumerate(group):
            style = _STYLES[s % len(_STYLES)]
            label = _label(traj.config_row(i), len(group)) if s == 0 else None
            for ax, (name, arr, scale) in zip(axes, panels):
                if arr is None:
                    continue
                y = np.asarray(arr[:, i], dtype=np.float64)
                if scale == "log":
                    y = np.where(y > 0, y, np.nan)
                ax.plot(it, y, color=color, ls=style, lw=0.9, label=label if ax is axes[1] else None)
            _mark_events(axes, it, traj.norm[:, i], reports[i] if reports is not None else None, color)
    for ax, (name, arr, scale) in zip(axes, panels):
        ax.set_ylabel(name)
        if arr is not None:
            ax.set_yscale(scale)
        ax.grid(alpha=0.3)
    if critical_eff_lr is not None:
        axes[2].axhline(critical_eff_lr, color="k", ls="--", lw=0.8, label="stability bound 2(1+μ)/h")
        axes[2].legend(fontsize=8, loc="lower right")
    axes[-1].set_xlabel("iteration")
    axes[1].legend(fontsize=8, loc="upper right", ncol=2 if len(groups) > 5 else 1)
    head = title or "SI training with weight decay: ▲ / lines = destabilisations"
    left_out = settings_left_out(traj, configs, max_settings)
    axes[0].set_title(head + (f"\n{left_out}" if left_out else ""))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _mark_events(axes, it, norm, rep, color) -> None:
    """Destabilisations of one run: thin vertical lines on every panel, triangles on the norm."""
    if rep is None or not rep.events.size:
        return
    t_ev = it[rep.events]
    for ax in axes:
        for t in t_ev:
            ax.axvline(t, color=color, lw=0.4, alpha=0.35)
    axes[1].plot(t_ev, norm[rep.events], "^", color=color, ms=4)
