"""Training on the sphere at fixed effective LRs, vectorised, and the regime of each toy run.

The rule that labels a run (convergence / chaotic equilibrium / divergence; Kodryan et al., NeurIPS
2022) is :mod:`analysis.regimes`; here are the toy side of it: the projected-SGD sweep
(:func:`sphere_sweep`), the loss of a random guess for each toy objective (:func:`chance_loss`) and
the rule applied to every configuration of a recorded :class:`simulate.engine.Trajectory`.
"""
from __future__ import annotations

import numpy as np

from analysis.regimes import RegimeStats, regime_statistics
from simulate.engine import Trajectory, run
from simulate.objectives import NormalizedQuadratic, Objective
from theory.sphere import project_to_sphere

__all__ = ["chance_loss", "sphere_sweep", "classify_trajectory"]


def chance_loss(objective: Objective) -> float:
    r"""Loss of a random guess: :math:`\operatorname{tr}A/(2d)` (mean of the normalised quadratic
    over the uniform sphere) or :math:`\ln k` (uniform prediction over ``k`` classes)."""
    if isinstance(objective, NormalizedQuadratic):
        return float(np.mean(objective.eigenvalues) / 2)
    k = getattr(getattr(objective, "data", None), "n_classes", None)
    if not k:
        raise ValueError(f"no chance level known for objective {objective.name!r}")
    return float(np.log(k))


def sphere_sweep(objective: Objective, eff_lrs, *, steps: int, seeds=(0,), blocks=None, noise=0.0,
                 record_every: int = 1, progress=None) -> Trajectory:
    r"""Projected SGD at every fixed ELR of ``eff_lrs`` x ``seeds`` in one vectorised run.

    The engine's ``'sphere'`` optimizer (:func:`theory.sphere.sphere_step`); every row starts
    from the seed's random direction on the unit sphere (per layer: each block rescaled to norm 1).
    Configurations are ordered ELR-major (``config['eta']`` holds :math:`\tilde\eta`).
    """
    e = np.asarray(eff_lrs, dtype=np.float64).reshape(-1)
    s = np.asarray(seeds, dtype=np.int64).reshape(-1)
    eta, seed = np.repeat(e, s.size), np.tile(s, e.size)
    x0 = objective.init(seed, norm=1.0)
    if blocks is not None:
        x0 = project_to_sphere(x0, 1.0, blocks)
    return run(objective, x0, eta, 0.0, steps=steps, noise=noise, seeds=seed, optimizer="sphere",
               blocks=blocks, record=("loss", "eff_grad_norm", "angle"), record_every=record_every,
               progress=progress)


def classify_trajectory(traj: Trajectory, reference_loss: float, **rule) -> list[RegimeStats]:
    """:func:`regime_statistics` for every configuration of a recorded run."""
    return [regime_statistics(traj.loss[:, i], traj.eff_grad_norm[:, i], traj.angle[:, i], traj.iterations,
                              reference_loss=reference_loss, **rule) for i in range(traj.n_configs)]
