r"""Figure 5 -- equivalent schedules overlaid: exponential LR (Li & Arora 2019) and WRS vs WD.

Three runs of the toy quadratic (:mod:`paper_figures.toy_runs`), each next to the plain
GD + WD run :math:`(\eta, \lambda)` it is equivalent to (:mod:`theory.equivalences`):

* **TEXP**: no WD, momentum :math:`\mu`, LR :math:`\eta\alpha^{-2t-1}`; its weights times
  :math:`\alpha^t` are the WD run's (here with :math:`\mu = 0.9` on both sides);
* **WRS**: WD-free steps projected back to norm :math:`r`, with LR
  :math:`r^2\eta/((1-\eta\lambda)\rho_t^2)` from the exact norm recurrence; same directions;
* **scaling**: :math:`(c\eta, \lambda/c, \sqrt c\,x_0)`, same directions, weights :math:`\sqrt c` larger.

Bottom row: the relative distance between the equivalent runs. It stays at rounding level while
the norm is above the critical norm :math:`\rho_c`; below it the unstable direction grows from
whatever seeds it -- rounding differences included -- so after the first destabilisation the runs
agree statistically (same period length) but not digit by digit: an exactness check and a
demonstration of the instability at once.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from analysis.periods import detect_periods
from paper_figures.common import FigureResult, save_data, save_figure
from paper_figures.toy_runs import toy_objective
from theory.dynamics import next_sq_norm, sgd_step, wrs_step
from theory.equivalences import rescaled_hyperparameters, texp_schedule, wrs_lr_from_wd
from theory.stability import critical_norm

NAME = "equivalences"


def _loss_grad(obj, x):
    loss, g = obj.loss_and_grad(x[None])
    return float(loss[0]), g[0]


def _wd_run(obj, x0, eta, lam, steps, momentum=0.0):
    x, v, xs, losses = x0.copy(), None, [x0.copy()], []
    for _ in range(steps):
        f, g = _loss_grad(obj, x)
        losses.append(f)
        x, v = sgd_step(x, g, eta, lam, momentum=momentum, velocity=v)
        xs.append(x)
    return np.array(xs), np.array(losses)


def _texp_run(obj, x0, eta, lam, momentum, steps):
    sched = texp_schedule(eta, lam, momentum, steps)
    y, v, ys, losses = x0.copy(), sched.initial_velocity(x0), [x0.copy()], []
    for lr in sched.lrs:
        f, g = _loss_grad(obj, y)
        losses.append(f)
        y, v = sgd_step(y, g, lr, 0.0, momentum=momentum, velocity=v)
        ys.append(y)
    return sched.scale[:, None] * np.array(ys), np.array(losses), sched.lrs


def _wrs_run(obj, x0, eta, lam, steps, target=1.0):
    y, sq = target * x0 / np.linalg.norm(x0), float(x0 @ x0)
    ys, losses, lrs = [y.copy()], [], []
    for _ in range(steps):
        f, g = _loss_grad(obj, y)
        losses.append(f)
        lr = wrs_lr_from_wd(eta, lam, sq, target)
        lrs.append(lr)
        y, _ = wrs_step(y, g, lr, target_norm=target)
        sq = float(next_sq_norm(sq, target**2 * (g @ g) / sq, eta, lam))
        ys.append(y)
    return np.array(ys), np.array(losses), np.array(lrs)


def _rel_dist(a, b, directions=False):
    if directions:
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


def make(out: Path, quick: bool) -> FigureResult:
    res = FigureResult(NAME)
    obj = toy_objective()
    steps = 2000 if quick else 6000
    eta, lam, mu, c = 1.0, 1e-3, 0.9, 16.0
    x0 = obj.init([0], norm=2.0)[0]
    wd, wd_loss = _wd_run(obj, x0, eta, lam, steps)
    eta_m = eta * (1 - mu)                       # same effective step size with momentum
    wd_m, wd_m_loss = _wd_run(obj, x0, eta_m, lam, steps, momentum=mu)
    tx, tx_loss, tx_lrs = _texp_run(obj, x0, eta_m, lam, mu, steps)
    wr, wr_loss, wr_lrs = _wrs_run(obj, x0, eta, lam, steps)
    eta_c, lam_c, x0_c = rescaled_hyperparameters(eta, lam, x0, c)
    sc, sc_loss = _wd_run(obj, x0_c, eta_c, lam_c, steps)
    it = np.arange(steps)
    dist = {"texp": _rel_dist(tx, wd_m), "wrs": _rel_dist(wr, wd, directions=True),
            "scaling": _rel_dist(sc / np.sqrt(c), wd)}
    pairs = [("TEXP (μ=0.9, no WD) vs WD + momentum", wd_m_loss, tx_loss, "texp", tx_lrs, "TEXP LR η_t"),
             ("WRS (r=1) vs WD", wd_loss, wr_loss, "wrs", wr_lrs, "WRS LR η'_t"),
             (f"(cη, λ/c), c={c:g} vs (η, λ)", wd_loss, sc_loss, "scaling", None, None)]
    fig, axes = plt.subplots(2, 3, figsize=(14, 6.5), sharex=True, layout="constrained")
    for j, (title, base, other, key, lrs, lr_label) in enumerate(pairs):
        ax = axes[0, j]
        ax.semilogy(it, base - obj.min_loss + 1e-17, color="k", lw=2.2, label="WD run")
        ax.semilogy(it, other - obj.min_loss + 1e-17, color="gold", lw=0.9, label="equivalent run")
        ax.set(title=title, ylabel="loss − min")
        if lrs is not None:
            ax2 = ax.twinx()
            ax2.semilogy(it, lrs, color="tab:blue", lw=0.8, alpha=0.6)
            ax2.set_ylabel(lr_label, color="tab:blue", fontsize=8)
            ax2.tick_params(labelsize=7, colors="tab:blue")
        ax.legend(fontsize=7, loc="lower left")
        if np.any(dist[key] > 0):
            axes[1, j].semilogy(np.arange(steps + 1), np.maximum(dist[key], 1e-18), "k", lw=0.8)
        else:
            axes[1, j].text(0.5, 0.5, "identical bit for bit\n(c is a power of 4: every\nscaling is exact in floats)",
                            ha="center", va="center", transform=axes[1, j].transAxes)
        axes[1, j].set(xlabel="iteration", ylabel="relative distance")
        first = _first_jump(wd_m if key == "texp" else wd)
        if first < steps:
            for ax_ in axes[:, j]:
                ax_.axvline(first, color="crimson", ls="--", lw=0.8, label="first destabilisation")
        ref = wd_m if key == "texp" else wd
        unstable = _first_unstable(ref, eta_m if key == "texp" else eta, obj.sphere_sharpness(),
                                   mu if key == "texp" else 0.0)
        res.summary[key] = {"first_destabilisation": int(first), "first_unstable_step": int(unstable),
                            "max_rel_dist_while_stable": float(dist[key][:unstable + 1].max()),
                            "max_rel_dist": float(dist[key].max())}
    save_figure(fig, out, NAME, res)
    save_data(out, NAME, res, {f"dist_{k}": v for k, v in dist.items()} |
              {"wd_loss": wd_loss, "texp_loss": tx_loss, "wrs_loss": wr_loss, "scaled_loss": sc_loss})
    return res


def _first_unstable(xs: np.ndarray, eta: float, h: float, momentum: float) -> int:
    """First iteration whose norm is below the critical norm (:func:`theory.stability.critical_norm`):
    from there on the unstable direction grows, rounding differences included."""
    below = np.nonzero(np.linalg.norm(xs, axis=1) < critical_norm(eta, h, momentum))[0]
    return int(below[0]) if below.size else xs.shape[0] - 1


def _first_jump(xs: np.ndarray) -> int:
    """Iteration of the first destabilisation of a run (:func:`analysis.periods.detect_periods`
    on its norm), or the run length when there is none."""
    events = detect_periods(np.linalg.norm(xs, axis=1)).events
    return int(events[0]) if events.size else xs.shape[0] - 1
