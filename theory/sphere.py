r"""Training on the sphere at a fixed effective learning rate (projected SGD).

Kodryan, Lobacheva, Nakhodnov & Vetrov (NeurIPS 2022, "Training scale-invariant neural
networks on the sphere can happen in three regimes") remove the norm dynamics of Lobacheva et al.
(NeurIPS 2021, Sec. 2) altogether: the SI weights are kept at a fixed norm and trained with a
*fixed* effective learning rate (ELR) :math:`\tilde\eta`. One step of projected SGD on the sphere
of radius :math:`r` is

.. math:: x_{t+1} = r\,\frac{x_t - \tilde\eta\,r^2\,\nabla f(x_t)}{\|x_t - \tilde\eta\,r^2\,\nabla f(x_t)\|}.

With :math:`u = x/r` and :math:`\nabla f(x) = \tilde g(u)/r` (:mod:`theory.dynamics`) this is
:math:`u_{t+1} = (u_t - \tilde\eta\,\tilde g_t)/\|u_t - \tilde\eta\,\tilde g_t\|`: the direction
moves exactly as SGD on the unit sphere with LR :math:`\tilde\eta`, whatever :math:`r`.

**Per-layer variant.** With blocks :math:`x = (x^{(1)}, \dots, x^{(K)})` (one SI tensor each, every
one SI on its own), each block keeps its own norm :math:`r_k` and moves on its own sphere at the
same ELR: :math:`x^{(k)}_{t+1} = r_k\,\Pi(x^{(k)}_t - \tilde\eta\,r_k^2\,\nabla_k f(x_t))`.

**Relations** (all exact for SI ``f``; tested against simulation in ``tests/test_theory_sphere.py``):

1. *Weight rescaling* (WRS, Liu et al., 2021): a WD-free step with LR :math:`\eta` followed by a
   rescaling to norm :math:`r` (:func:`theory.dynamics.wrs_step`) *is* the projected step at
   :math:`\tilde\eta = \eta/r^2` (:func:`theory.dynamics.effective_lr`).
2. *Weight decay*: SGD + WD, :math:`x_{t+1} = (1-\eta\lambda)x_t - \eta\nabla f(x_t)
   = (1-\eta\lambda)(x_t - \tfrac{\eta}{1-\eta\lambda}\nabla f(x_t))`, moves the direction as the
   projected step at the *time-varying* ELR :math:`\tilde\eta_t = \eta/((1-\eta\lambda)\rho_t^2)`
   (:func:`theory.equivalences.wrs_lr_from_wd` with ``target_norm=1``); WD makes
   :math:`\tilde\eta_t` grow while the loss is small, a fixed ELR does not.
3. *Angular update*: the step is orthogonal to :math:`u` (:math:`\langle\tilde g, u\rangle = 0`), so
   one projected step turns the weights by exactly :math:`\theta = \arctan(\tilde\eta\,G)`,
   :math:`G = \|\tilde g\| = \rho\|\nabla f\|` the effective gradient norm
   (:func:`sphere_angular_update`).
4. *Stability*: near a minimum of the sphere sharpness :math:`h` the normalisation is second order,
   so projected GD is stable iff :math:`\tilde\eta h < 2(1+\mu)`
   (:func:`theory.stability.critical_effective_lr`): the largest ELR at which GD can still
   converge to that minimum. Above it, training cannot settle in that minimum.

Array-generic like :mod:`theory.dynamics`: numpy arrays or torch tensors of shape ``(..., d)``,
``eff_lr`` broadcast against the leading axes (shape ``(B, 1)`` for ``B`` configurations).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._arrays import check_positive, is_torch, scalar_or_array, torch

__all__ = ["block_norms", "project_to_sphere", "sphere_step", "sphere_angular_update"]


def _check_blocks(blocks: Sequence[int] | None, d: int) -> tuple[int, ...]:
    if blocks is None:
        return (d,)
    sizes = tuple(int(b) for b in blocks)
    if not sizes or any(b < 1 for b in sizes) or sum(sizes) != d:
        raise ValueError(f"blocks must be positive sizes summing to the last axis ({d}), got {tuple(blocks)!r}")
    return sizes


def block_norms(x, blocks: Sequence[int] | None = None, *, expand: bool = False):
    r"""Euclidean norm of each block of the last axis of ``x``.

    Parameters
    ----------
    x : array or torch.Tensor, shape (..., d)
    blocks : sequence of int, optional
        Sizes of consecutive blocks along the last axis (summing to ``d``); ``None``: one block.
    expand : bool
        ``False``: shape ``(..., K)``; ``True``: each block's norm repeated over its entries,
        shape ``(..., d)``.
    """
    sizes = _check_blocks(blocks, x.shape[-1])
    if is_torch(x):
        norms = torch.stack([torch.linalg.vector_norm(c, dim=-1) for c in torch.split(x, sizes, dim=-1)], -1)
        if expand:
            return torch.repeat_interleave(norms, torch.tensor(sizes, device=x.device), dim=-1)
        return norms
    x = np.asarray(x)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    norms = np.sqrt(np.add.reduceat(x * x, starts, axis=-1))
    return np.repeat(norms, sizes, axis=-1) if expand else norms


def project_to_sphere(y, radius=1.0, blocks: Sequence[int] | None = None):
    r"""Rescale each block of ``y`` to norm ``radius``: :math:`r_k\,y^{(k)}/\|y^{(k)}\|`.

    ``radius`` is a scalar, or per block (shape ``(..., K)``). Used after an unconstrained step to
    put the weights back on the sphere (total: ``blocks=None``; per layer: one block per tensor).
    """
    sizes = _check_blocks(blocks, y.shape[-1])
    if not is_torch(radius):
        check_positive("radius", radius)
    norms = block_norms(y, sizes)
    scale = radius / norms
    if len(sizes) == 1:
        return y * scale
    if is_torch(scale):
        return y * torch.repeat_interleave(scale, torch.tensor(sizes, device=y.device), dim=-1)
    return y * np.repeat(scale, sizes, axis=-1)


def sphere_step(x, grad, eff_lr, *, blocks: Sequence[int] | None = None):
    r"""One projected SGD step at the fixed effective LR :math:`\tilde\eta` (module docstring).

    .. math:: x^{(k)}_{t+1} = r_k\,\frac{x^{(k)}_t - \tilde\eta\,r_k^2\,\nabla_k f(x_t)}
              {\|x^{(k)}_t - \tilde\eta\,r_k^2\,\nabla_k f(x_t)\|}, \qquad r_k = \|x^{(k)}_t\|,

    so every block keeps its norm (to rounding) and, for SI ``f``, its direction takes an SGD step
    of LR :math:`\tilde\eta` on its unit sphere (Kodryan et al., 2022).

    Parameters
    ----------
    x, grad : array or torch.Tensor, shape (..., d)
        Weights and the loss gradient at ``x``.
    eff_lr : float or array
        :math:`\tilde\eta > 0`, broadcastable against the leading axes of ``x`` (e.g. ``(B, 1)``).
    blocks : sequence of int, optional
        Block sizes for the per-layer variant; ``None`` keeps the total norm.

    Returns
    -------
    The new weights, same shape as ``x``.
    """
    if tuple(grad.shape) != tuple(x.shape):
        raise ValueError(f"grad has shape {tuple(grad.shape)} but x has shape {tuple(x.shape)}")
    if not is_torch(eff_lr):
        check_positive("eff_lr", eff_lr)
    r = block_norms(x, blocks, expand=True)
    return project_to_sphere(x - eff_lr * r**2 * grad, block_norms(x, blocks), blocks)


def sphere_angular_update(eff_lr, eff_grad_norm):
    r"""Angle (radians) of one projected step: :math:`\theta = \arctan(\tilde\eta\,G)` (relation 3).

    ``eff_grad_norm`` is :math:`G = \rho\|\nabla f(x)\|` (:func:`theory.dynamics.effective_grad_norm`),
    the gradient norm at the unit-sphere point. Exact for the total-norm variant (one block).
    """
    e = check_positive("eff_lr", eff_lr)
    g = check_positive("eff_grad_norm", eff_grad_norm, allow_zero=True)
    return scalar_or_array(np.arctan(e * g))
