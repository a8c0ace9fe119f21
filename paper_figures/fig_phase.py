r"""Figure 4 -- equilibrium vs instability: the regimes of :math:`(\eta, \lambda)`.

Toy quadratic (:mod:`paper_figures.toy_runs`) with explicit tangent gradient noise of RMS
effective norm :math:`\sigma` (:mod:`simulate.noise`), one vectorised sweep per panel.

Theory (:mod:`theory.equilibrium`, :mod:`theory.stability`): with effective gradient norm
:math:`G` the norm settles at :math:`\rho^{*4} = \eta G^2/(\lambda(2-\eta\lambda))` *if* that
equilibrium is stable, i.e. :math:`\rho^* > \rho_c = \sqrt{\eta h/2}`; the boundary is
:math:`\eta\lambda(2-\eta\lambda) = 4G^2/h^2`, a line of constant :math:`\eta\lambda`. Beyond it
the norm cannot settle above :math:`\rho_c`: runs are periodic (norm jumps) or hover at the edge
of stability :math:`\rho \approx \rho_c`. Steps with :math:`\eta\lambda \ge 1` are invalid (WD would
flip or zero the weights).

Left: :math:`(\eta, \lambda)` grid at fixed :math:`\sigma`; colour = tail median of
:math:`\rho/\rho_c`; markers = regime. Right: the :math:`(\eta\lambda, \sigma)` plane, where the
whole diagram lives (dynamics depend on :math:`\eta\lambda` only).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from paper_figures.common import FigureResult, save_data, save_figure, table_row
from paper_figures.toy_runs import toy_objective, toy_sweep
from simulate import compare_with_theory
from theory.stability import critical_norm

NAME = "phase"
SIGMA = 0.05
EDGE_TOL = 0.05        # |rho/rho_c - 1| below this: at the edge of stability
MARKERS = {"equilibrium": ("o", "tab:blue"), "edge": ("s", "tab:orange"), "periodic": ("^", "tab:red"),
           "transient": ("d", "grey"), "diverged": ("X", "k")}


def regimes(rows: list[dict], rho_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Regime labels and tail-median :math:`\rho/\rho_c` from :func:`simulate.compare_with_theory` rows.

    ``'equilibrium'`` of :func:`simulate.classify` is split by the norm: settled above the
    critical norm (a stable equilibrium) or pinned at it (``'edge'``).
    """
    base = np.array([r["regime"] for r in rows])
    ratio = np.array([r["rho_measured"] for r in rows]) / rho_c
    labels = np.where((base == "equilibrium") & (np.abs(ratio - 1) < EDGE_TOL), "edge", base)
    return labels, ratio


def boundary_eta_lam(G: np.ndarray, h: float) -> np.ndarray:
    """Solve eta*lam*(2 - eta*lam) = 4 G^2 / h^2 for eta*lam (smaller root)."""
    c = np.minimum(4 * G**2 / h**2, 1.0)
    return 1 - np.sqrt(1 - c)


def _scatter(ax, x, y, labels):
    for name, (m, col) in MARKERS.items():
        sel = labels == name
        if sel.any():
            ax.scatter(x[sel], y[sel], marker=m, c=col, s=18, label=name, zorder=3,
                       edgecolors="white", linewidths=0.3)


def make(out: Path, quick: bool) -> FigureResult:
    res = FigureResult(NAME)
    obj = toy_objective()
    h = obj.sphere_sharpness()
    n, steps = (8, 12_000) if quick else (16, 40_000)
    eta = np.geomspace(0.03, 30, n)
    lam = np.geomspace(1e-5, 1e-1, n)
    E, L = np.meshgrid(eta, lam, indexing="ij")
    valid = E * L < 0.9
    traj = toy_sweep(E[valid], L[valid], steps=steps, noise=SIGMA, method="auto")
    rows = compare_with_theory(traj, tail=0.5)
    lab, ratio = regimes(rows, critical_norm(E[valid], h))
    g_rms = np.array([r["eff_grad_norm_rms"] for r in rows])

    s_vals = np.geomspace(3e-3, 0.3, n)
    el_vals = np.geomspace(1e-5, 0.3, n)
    S, EL = np.meshgrid(s_vals, el_vals, indexing="ij")
    traj2 = toy_sweep(1.0, EL.ravel(), steps=steps, noise=S.ravel(), method="auto")
    lab2, ratio2 = regimes(compare_with_theory(traj2, tail=0.5), critical_norm(1.0, h))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    grid_ratio = np.full(E.shape, np.nan)
    grid_ratio[valid] = ratio
    pc = axes[0].pcolormesh(eta, lam, np.log10(grid_ratio).T, shading="nearest", cmap="Greens", vmin=0)
    _scatter(axes[0], E[valid], L[valid], lab)
    bnd = boundary_eta_lam(np.median(g_rms), h)
    axes[0].plot(eta, bnd / eta, "k--", lw=1.2, label="theory: ρ* = ρc")
    axes[0].fill_between(eta, 0.9 / eta, 1, color="lightgrey", label="ηλ ≥ 0.9 (not run)")
    axes[0].set(xscale="log", yscale="log", xlabel="η", ylabel="λ", ylim=(lam[0], lam[-1]),
                title=f"(η, λ) at noise σ = {SIGMA:g}")
    plt.colorbar(pc, ax=axes[0], label="log10 (ρ / ρc), tail median")
    axes[0].legend(fontsize=7, loc="lower left")

    pc2 = axes[1].pcolormesh(el_vals, s_vals, np.log10(ratio2.reshape(S.shape)), shading="nearest",
                             cmap="Greens", vmin=0)
    _scatter(axes[1], EL.ravel(), S.ravel(), lab2)
    g_axis = np.geomspace(s_vals[0], s_vals[-1], 50)
    axes[1].plot(boundary_eta_lam(g_axis, h), g_axis, "k--", lw=1.2, label="theory: ρ* = ρc (G = σ)")
    axes[1].set(xscale="log", yscale="log", xlabel="ηλ (η = 1)", ylabel="gradient noise σ",
                title="(ηλ, σ): the whole diagram")
    plt.colorbar(pc2, ax=axes[1], label="log10 (ρ / ρc)")
    axes[1].legend(fontsize=7, loc="upper left")
    save_figure(fig, out, NAME, res)

    # theory check: where the run settled above the critical norm, does it sit at rho*?
    stable = (lab == "equilibrium") & (E[valid] * L[valid] > 1e-4)
    pred = np.array([r["rho_predicted"] for r in rows])[stable]
    meas = np.array([r["rho_measured"] for r in rows])[stable]
    errs = np.abs(meas / pred - 1)
    for k in np.argsort(E[valid][stable] * L[valid][stable])[-3:]:
        res.table.append(table_row("equilibrium norm", f"toy η={E[valid][stable][k]:.3g} "
                                   f"λ={L[valid][stable][k]:.2g} σ={SIGMA:g}", pred[k], meas[k]))
    counts = {k: int(np.sum(lab == k)) for k in MARKERS}
    counts2 = {k: int(np.sum(lab2 == k)) for k in MARKERS}
    res.summary = {"sigma": SIGMA, "h": h, "counts_eta_lam": counts, "counts_eta_lam_sigma": counts2,
                   "equilibrium_norm_max_rel_error": float(errs.max()) if errs.size else None,
                   "n_stable_checked": int(stable.sum()),
                   "boundary_eta_lam": float(bnd)}
    save_data(out, NAME, res, {"eta": E[valid], "lam": L[valid], "labels": lab.astype(str), "rho_over_rho_c": ratio,
                               "sigma2": S.ravel(), "eta_lam2": EL.ravel(), "labels2": lab2.astype(str),
                               "rho_over_rho_c2": ratio2})
    return res
