r"""Toy runs shared by several figures: the normalised quadratic under GD + WD.

The default toy of the figures is the quadratic :math:`f(x) = \tfrac12 u^\top A u` in
:math:`d = 100` with eigenvalues evenly spaced in :math:`[0, 1]` (sphere sharpness at the minimum
:math:`h = 1`, so :math:`\rho_c = \sqrt{\eta/2}`), GD in float64 on the generic engine with a
tiny tangent gradient noise :math:`\sigma = 10^{-8}` (:mod:`simulate.noise`). Between jumps the
unstable component of the weights decays far below any rounding level; the noise re-seeds it (as
mini-batch noise does in a network), so when the norm drops below :math:`\rho_c` the jump grows out
of a controlled perturbation rather than out of rounding errors, and the timing is reproducible
across implementations and precisions.
"""
from __future__ import annotations

from analysis.periods import tail_start
from simulate import NormalizedQuadratic, period_reports
from simulate.sweep import sweep

__all__ = ["TOY_DIM", "toy_objective", "toy_sweep", "toy_reports"]

TOY_DIM = 100


def toy_objective() -> NormalizedQuadratic:
    """The figures' quadratic (d = 100, spectrum linspace(0, 1), seed 0)."""
    return NormalizedQuadratic(TOY_DIM, a_min=0.0, a_max=1.0, seed=0)


TOY_NOISE = 1e-8


def toy_sweep(eta, lam, *, steps: int, seeds=(0,), noise=TOY_NOISE, grid: bool = False, **kw):
    """:func:`simulate.sweep` of the figures' quadratic (zipped configurations by default).

    Ctrl-C stops the sweep with ``KeyboardInterrupt`` (the engine would return the steps done so
    far; a figure must not be drawn from them)."""
    traj = sweep(toy_objective(), eta=eta, lam=lam, seeds=seeds, steps=steps, noise=noise, grid=grid,
                 method=kw.pop("method", "generic"), **kw)
    if traj.interrupted:
        raise KeyboardInterrupt(f"toy sweep stopped after {traj.steps_done} of {steps} steps")
    return traj


def toy_reports(traj, burn_in: float = 0.25):
    """Period reports over the records after ``burn_in`` (fraction), with the offset to add."""
    tail = 1.0 - burn_in
    return period_reports(traj, tail=tail), tail_start(traj.norm.shape[0], tail)
