r"""Beyond the paper -- the three regimes of training on the sphere at a fixed effective LR.

Kodryan et al. (NeurIPS 2022) fix the norm of the SI weights and train at a fixed ELR
:math:`\tilde\eta` (:mod:`theory.sphere`): convergence, chaotic equilibrium and divergence as
:math:`\tilde\eta` grows. Every run is labelled by :mod:`analysis.regimes` (one rule for toys and
network; final loss relative to a random guess, power-law trends of the loss and the effective
gradient norm). The runs are described in :mod:`paper_figures.regime_runs`.

Top: toys -- (a) the quadratic under projected GD, with the destabilisation condition's
prediction :math:`\tilde\eta_c = 2/h` (:mod:`theory.stability`); (b) the BN MLP under SGD, total
norm and per layer; (c) mean angle per step against :math:`\arctan(\tilde\eta G)` (relation 3 of
:mod:`theory.sphere`): divergence is where a step turns the weights by nearly 90 degrees.
Bottom: the ConvNet -- (d) the regime map, total norm and per layer, with the ranges reported for
the paper's setup; (e) train loss over iterations; (f) :math:`\tilde\eta h` at the end of each run
(sphere sharpness :math:`h`, :mod:`nets.monitor.sharpness`) against the stability threshold 2.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from analysis.regime_plots import REGIME_COLORS, draw_regime_map, regime_legend, shade_regimes
from paper_figures.common import FigureResult, save_data, save_figure, table_row
from paper_figures.regime_runs import PAPER_CONVNET, net_sweeps, toy_maps

NAME = "regimes"


def _span(elrs) -> tuple[float, float]:
    e = np.asarray(elrs, dtype=float)
    return e.min() / 1.6, e.max() * 1.6


def _toy_panels(axes, maps: dict) -> None:
    q = maps["quadratic"]
    ax = axes[0]
    lo, hi = _span(q["elr"])
    shade_regimes(ax, q["boundaries"], lo, hi)
    draw_regime_map(ax, q["elr"], np.maximum(q["level"], 1e-18), q["labels"])
    ax.axvline(q["critical_elr"], color="tab:blue", lw=1.5, label=f"theory: $\\tilde\\eta h = 2$ ({q['critical_elr']:g})")
    ax.set(xlim=(lo, hi), xlabel="effective LR $\\tilde\\eta$", ylabel="final loss / random guess",
           title="(a) toy quadratic, projected GD")
    regime_legend(ax, fontsize=7, loc="lower right")
    ax = axes[1]
    lo, hi = _span(maps["mlp"]["elr"])
    shade_regimes(ax, maps["mlp"]["boundaries"], lo, hi)
    for key, marker, label in (("mlp", "o", "total norm fixed"), ("mlp_per_layer", "s", "per layer")):
        m = maps[key]
        draw_regime_map(ax, m["elr"], m["level"], m["labels"], marker=marker, label=label,
                        line_color="0.5" if marker == "o" else "0.75")
    ax.set(xlim=(lo, hi), xlabel="effective LR $\\tilde\\eta$", ylabel="final loss / ln(classes)",
           title="(b) toy BN MLP, SGD (batch 32)")
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[2]
    for key, marker in (("quadratic", "o"), ("mlp", "s")):
        m = maps[key]
        ax.plot(m["elr"], m["angle_predicted"], "-", color="0.5", lw=0.8)
        draw_regime_map(ax, m["elr"], m["angle"], m["labels"], marker=marker, line_color="none")
        ax.plot([], [], marker, color="0.7", mec="k", mew=0.4, label=f"{key}: measured (colour: regime)")
    ax.plot([], [], "-", color="0.5", lw=0.8, label="mean of arctan($\\tilde\\eta G_t$)")
    ax.axhline(np.pi / 2, color="tab:red", ls=":", lw=0.8)
    ax.set(yscale="linear", xlabel="effective LR $\\tilde\\eta$", ylabel="mean angle per step (rad)",
           title="(c) angular update on the sphere")
    ax.legend(fontsize=7)


def _net_panels(axes, nets: dict) -> None:
    rows, bounds, _ = nets["total"]
    ax = axes[0]
    lo, hi = _span([r["fixed_elr"] for r in rows])
    shade_regimes(ax, bounds, lo, hi)
    for variant, marker in (("total", "o"), ("per_layer", "s")):
        rs = nets[variant][0]
        if rs:
            draw_regime_map(ax, [r["fixed_elr"] for r in rs], [r["level"] for r in rs], [r["regime"] for r in rs],
                            marker=marker, label="total norm fixed" if marker == "o" else "per layer",
                            line_color="0.5" if marker == "o" else "0.75")
    p = PAPER_CONVNET
    top = ax.get_ylim()[1]
    for (a, b), name in (((lo, p["convergence_upper"]), "convergence"), (p["chaotic"], "chaotic"),
                         ((p["divergence_lower"], hi), "divergence")):
        ax.plot([a, b], [top, top], "-", lw=5, color=REGIME_COLORS[name], solid_capstyle="butt")
    ax.text(lo * 1.1, top, "paper (width 32, full CIFAR-10, 1,000 epochs)", fontsize=6, va="bottom")
    ax.set(xlim=(lo, hi), xlabel="effective LR $\\tilde\\eta$", ylabel="final train loss / ln 10",
           title="(d) ConvNet: regime map")
    ax.legend(fontsize=7, loc="center left")
    ax = axes[1]
    for r, steps in zip(rows, nets["steps"]):
        w = min(5, len(steps["train_loss"]))
        y = np.convolve(steps["train_loss"], np.ones(w) / w, mode="valid")
        ax.plot(steps["iteration"][(w - 1) // 2:][:y.size], y, color=REGIME_COLORS[r["regime"]], lw=0.8,
                alpha=0.4 + 0.6 * (np.log10(r["fixed_elr"]) - np.log10(lo)) / np.log10(hi / lo))
        ax.annotate(f"{r['fixed_elr']:g}", (steps["iteration"][-1], y[-1]), fontsize=6)
    ax.set(yscale="log", xlabel="iteration", ylabel="train loss (5-record mean)",
           title="(e) ConvNet: train loss per ELR (total norm)")
    ax = axes[2]
    sharp = [r for r in rows if np.isfinite(r["eff_lr_sharpness"])]
    for r in sharp:
        ax.plot(r["fixed_elr"], r["eff_lr_sharpness"], "o", color=REGIME_COLORS[r["regime"]], mec="k", mew=0.4)
        ax.plot(r["fixed_elr"], r["eff_lr_sharpness_start"], "o", mfc="none", mec="0.4")
    ax.plot([], [], "o", color="0.6", mec="k", mew=0.4, label="end of the run (colour: regime)")
    ax.plot([], [], "o", mfc="none", mec="0.4", label="at initialisation")
    ax.axhline(2.0, color="k", ls="--", lw=0.8, label="stability threshold 2")
    ax.set(xscale="log", yscale="log", xlabel="effective LR $\\tilde\\eta$",
           ylabel="$\\tilde\\eta h$ at the end", title="(f) ConvNet: ELR x sphere sharpness")
    ax.legend(fontsize=7)


def _load_steps(rows) -> list[dict]:
    out = []
    for r in rows:
        data = np.load(Path(r["run_dir"]) / "metrics.npz")
        out.append({k: data[f"step_{k}"] for k in ("iteration", "train_loss")})
    return out


def make(out: Path, quick: bool, *, net_base=None, net_elrs=None, toy_steps: int | None = None) -> FigureResult:
    """Run (or reuse) the toy and network sweeps and draw the 2 x 3 figure; ``net_base``,
    ``net_elrs`` (total, per layer) and ``toy_steps`` override the network configuration, its ELRs
    and the toys' length (tests)."""
    res = FigureResult(NAME)
    nets = net_sweeps(out, quick, net_base, *([net_elrs] if net_elrs else []))   # first: data problems show at once
    maps = toy_maps(quick, toy_steps)
    nets["steps"] = _load_steps(nets["total"][0])
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    _toy_panels(axes[0], maps)
    _net_panels(axes[1], nets)
    for ax in axes.flat:
        ax.grid(alpha=0.3, which="both")
    cfg = nets["total"][0][0]["run_dir"] if nets["total"][0] else ""
    fig.suptitle(f"Training on the sphere at a fixed effective LR: three regimes (network runs: {Path(cfg).parent})",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, out, NAME, res)
    q = maps["quadratic"]
    res.summary = {"toy": {k: {"elr": m["elr"].tolist(), "labels": list(m["labels"]), "boundaries": m["boundaries"]}
                           for k, m in maps.items()},
                   "toy_critical_elr": q["critical_elr"],
                   "net": {v: {"rows": nets[v][0], "boundaries": nets[v][1], "completed": nets[v][2]}
                           for v in ("total", "per_layer")},
                   "paper_convnet": PAPER_CONVNET}
    if q["boundaries"]["convergence_upper"] is not None:
        res.table.append(table_row("largest converging ELR (grid midpoint)", "toy quadratic, projected GD",
                                   q["critical_elr"], q["boundaries"]["convergence_upper"]))
    arrays = {f"{k}_{f}": np.asarray(m[f]) for k, m in maps.items()
              for f in ("elr", "level", "angle", "angle_predicted", "eff_grad_norm", "loss_trend", "grad_trend")}
    save_data(out, NAME, res, arrays)
    return res
