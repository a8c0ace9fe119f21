r"""Fast path for the normalised quadratic: run in :math:`A`'s eigenbasis at O(d) per step.

GD / SGD + WD (with or without momentum and isotropic tangent noise) is rotation-equivariant:
with :math:`A = Q\,\mathrm{diag}(a)\,Q^\top` the coordinates :math:`z = Q^\top x` follow the
same update with the diagonal matrix, and norms, losses, gradient norms and angles are the same.
For plain GD + WD (no momentum, no noise) one step is fused into a per-coordinate product,

.. math:: z_{t+1} = z_t\odot\Bigl(1-\eta\lambda+\frac{\eta q_t}{s_t^2}-\frac{\eta}{s_t}\,a'\Bigr),
          \qquad s_t = \textstyle\sum_i z_i^2,\quad q_t = \sum_i a'_i z_i^2,

(:math:`a' = a - a_{\min}`), which is exactly
:func:`theory.dynamics.sgd_step` with :math:`\nabla f = (a'z - (q/s)z)/s`. The moments and
the factor each come from one thin matrix product per step (BLAS) and every array update is in
place (float32 by default).
The recorded quantities follow from the moments (with :math:`r_t = \sum_i a_i'^2 z_i^2`):

.. math:: \rho = \sqrt s,\quad f = \frac{q}{2s} + \frac{a_{\min}}{2},\quad
          \rho\|\nabla f\| = \sqrt{(r - q^2/s)/s},\quad
          \tan\theta = \frac{\eta\,\|\nabla f\|}{(1-\eta\lambda)\,\rho},

the last because :math:`\nabla f \perp x` (Lobacheva et al., 2021, Sec. 2). Other cases
(momentum, noise) run the generic engine (:func:`simulate.engine.run`, hence the ``theory``
step functions) on the diagonal problem, still O(d) per step.

Precision caveat: in noiseless GD the components along unstable directions decay
geometrically between destabilisations and can underflow (below ~1e-38 in float32, ~1e-308 in
float64), after which the timing of the next destabilisation is set by rounding. Add a little
noise (``noise > 0``) when periods over long runs matter.
"""
from __future__ import annotations

import numpy as np

from simulate.engine import RECORDABLE, Trajectory, broadcast_configs, check_run_memory, validate_run
from simulate.engine import run as run_generic

__all__ = ["run_fast", "supports_fused"]


def supports_fused(cfg: dict, optimizer: str = "sgd") -> bool:
    """True when the fused GD loop applies: ``'sgd'``, no momentum, no noise."""
    return optimizer == "sgd" and not np.any(cfg["momentum"] > 0) and not np.any(cfg["noise"] > 0)


def run_fast(objective, x0, eta, lam=0.0, *, steps: int, momentum=0.0, noise=0.0, seeds=None,
             record=RECORDABLE, record_every: int = 1, dtype=np.float32, progress=None) -> Trajectory:
    r"""Run the :class:`~simulate.objectives.NormalizedQuadratic` in its eigenbasis.

    Same parameters and result as :func:`simulate.engine.run` (optimizer ``'sgd'`` only);
    ``x_final`` is rotated back to the original basis. Records are in ``dtype``.
    """
    x0 = np.asarray(x0, dtype=np.float64)
    B = x0.shape[0]
    cfg = broadcast_configs(B, eta=eta, lam=lam, momentum=momentum, noise=noise,
                            seed=0 if seeds is None else seeds)
    z0 = objective.to_eigenbasis(x0)
    if not supports_fused(cfg):
        traj = run_generic(objective.diagonal(), z0, cfg["eta"], cfg["lam"], steps=steps,
                           momentum=cfg["momentum"], noise=cfg["noise"], seeds=cfg["seed"],
                           record=record, record_every=record_every, dtype=dtype, progress=progress)
    else:
        traj = _run_fused(objective, z0, cfg, int(steps), tuple(record), int(record_every), dtype, progress)
    traj.x_final = objective.from_eigenbasis(traj.x_final.astype(np.float64))
    traj.method = "fast"
    traj.objective = objective.describe()
    return traj


def _run_fused(objective, z0, cfg, steps, record, record_every, dtype, progress) -> Trajectory:
    validate_run(steps, record_every, "sgd", cfg)
    B, d = z0.shape
    check_run_memory(B, d, steps, record_every, len(record), np.dtype(dtype).itemsize)
    z = z0.astype(dtype)
    need_r = "eff_grad_norm" in record or "angle" in record
    M = np.stack([np.ones(d), objective.shifted] + ([objective.shifted**2] if need_r else []), axis=1)
    M = np.ascontiguousarray(M.astype(dtype))
    n_rec = (steps - 1) // record_every + 1
    moments = np.full((n_rec, B, M.shape[1]), np.nan, dtype)
    scratch = np.empty((B, M.shape[1]), dtype)
    z2, F = np.empty_like(z), np.empty_like(z)
    # F = c1 - c2 * a' as one rank-2 product [c1, -c2] @ [1; a'] (a broadcast op is ~5x slower)
    coef = np.empty((B, 2), dtype)
    c1, neg_c2 = coef[:, 0], coef[:, 1]
    basis = np.ascontiguousarray(np.stack([np.ones(d), objective.shifted]).astype(dtype))
    neg_e, decay = (-cfg["eta"]).astype(dtype), (1 - cfg["eta"] * cfg["lam"]).astype(dtype)
    done, r = 0, 0
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            for t in range(steps):
                out = moments[r] if t % record_every == 0 else scratch
                np.multiply(z, z, out=z2)
                np.matmul(z2, M, out=out)
                s, q = out[:, 0], out[:, 1]
                np.divide(neg_e, s, out=neg_c2)         # -eta / s
                np.multiply(neg_c2, q, out=c1)
                np.divide(c1, s, out=c1)
                np.subtract(decay, c1, out=c1)          # 1 - eta*lam + eta*q/s^2
                np.matmul(coef, basis, out=F)
                z *= F
                if out is not scratch:
                    r += 1
                done = t + 1
                if progress is not None and (done % 500 == 0 or done == steps):
                    progress.update(done - progress.n)
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
    mom = moments[:r]
    curves = _curves_from_moments(mom, objective.min_loss, cfg, record)
    return Trajectory(config=cfg, iterations=np.arange(r) * record_every, x_final=z,
                      record_every=record_every, steps_done=done, optimizer="sgd",
                      interrupted=interrupted, **curves)


def _curves_from_moments(mom, min_loss, cfg, record) -> dict:
    """Norm, loss, effective gradient norm and angle from the moments ``(n, B, 2 or 3)``."""
    s, q = mom[..., 0], mom[..., 1]
    dtype = mom.dtype
    out = {"norm": np.sqrt(s)}
    if "loss" in record:
        out["loss"] = (q / (2 * s) + dtype.type(min_loss)).astype(dtype)
    if "eff_grad_norm" in record or "angle" in record:
        s64, q64 = s.astype(np.float64), q.astype(np.float64)
        egn = np.sqrt(np.maximum(mom[..., 2] - q64 * q64 / s64, 0.0) / s64)
        if "eff_grad_norm" in record:
            out["eff_grad_norm"] = egn.astype(dtype)
        if "angle" in record:
            eta, lam = cfg["eta"], cfg["lam"]
            out["angle"] = np.arctan2(eta * egn / s64, 1 - eta * lam).astype(dtype)
    return out
