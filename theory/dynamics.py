r"""SGD with weight decay on scale-invariant weights: steps, norm recurrence, effective quantities.

Notation (Lobacheva et al., 2021, Sec. 2): ``x`` are the scale-invariant (SI) weights,
:math:`\rho = \|x\|` their norm, :math:`\eta` the learning rate, :math:`\lambda` the weight
decay (L2 coefficient, the gradient of :math:`\tfrac{\lambda}{2}\|x\|^2` is :math:`\lambda x`)
and :math:`\mu` the heavy-ball momentum.

For an SI loss, :math:`\langle\nabla f(x), x\rangle = 0` and
:math:`\nabla f(x) = \tilde g(x/\rho)/\rho`, where :math:`\tilde g` is the gradient on the unit
sphere. Hence one SGD + WD step

.. math:: x_{t+1} = (1-\eta\lambda)\,x_t - \eta\nabla f(x_t)

changes the norm *exactly* as

.. math:: \rho_{t+1}^2 = (1-\eta\lambda)^2\rho_t^2 + \eta^2\|\nabla f(x_t)\|^2
          = (1-\eta\lambda)^2\rho_t^2 + \eta^2\|\tilde g_t\|^2/\rho_t^2,

and the direction :math:`x/\rho` moves as if by SGD on the sphere with the *effective
learning rate* :math:`\tilde\eta = \eta/\rho^2`.

The step functions are the single implementation that ``simulate/`` and ``nets/`` use. They
are array-generic: numpy arrays and torch tensors work, ``eta``/``lam``/``momentum`` broadcast
against ``x`` (use shape ``(B, 1)`` for a batch of ``B`` configurations of shape ``(B, d)``).
"""
from __future__ import annotations

import numpy as np

from ._arrays import check_decay, check_momentum, check_positive, is_torch, scalar_or_array, torch, vector_norm

__all__ = [
    "sgd_step",
    "wrs_step",
    "next_sq_norm",
    "norm_trajectory",
    "effective_lr",
    "effective_grad_norm",
    "angular_update",
]


def _check_hyper(eta, lam, momentum):
    """Validate hyper-parameters unless they are torch tensors (validated by the caller)."""
    if not is_torch(eta) and not is_torch(lam):
        check_decay(eta, lam)
    if not is_torch(momentum):
        check_momentum(momentum)


def _check_same_shape(name: str, a, x) -> None:
    if tuple(a.shape) != tuple(x.shape):
        raise ValueError(f"{name} has shape {tuple(a.shape)} but x has shape {tuple(x.shape)}")


def sgd_step(x, grad, eta, lam, *, momentum=0.0, velocity=None):
    r"""One SGD step with L2 weight decay and optional heavy-ball momentum (PyTorch convention).

    .. math::
        v_{t} = \mu v_{t-1} + \nabla f(x_t) + \lambda x_t, \qquad
        x_{t+1} = x_t - \eta\, v_t .

    With :math:`\mu = 0` this is :math:`x_{t+1} = (1-\eta\lambda)x_t - \eta\nabla f(x_t)`
    (Lobacheva et al., 2021, Eq. (2); Li & Arora, 2019, Sec. 2).

    Parameters
    ----------
    x, grad : array_like or torch.Tensor
        Current weights and the loss gradient at ``x`` (same shape).
    eta : float or array
        Learning rate (> 0), broadcastable against ``x``.
    lam : float or array
        Weight-decay coefficient (>= 0), with ``eta * lam < 1``.
    momentum : float or array, optional
        Heavy-ball coefficient :math:`\mu \in [0, 1)`.
    velocity : array, optional
        Momentum buffer :math:`v_{t-1}`; ``None`` means zero (first step).

    Returns
    -------
    x_next, velocity_next
        The new weights and the new momentum buffer :math:`v_t`.
    """
    _check_hyper(eta, lam, momentum)
    _check_same_shape("grad", grad, x)
    v = grad + lam * x
    if velocity is not None:
        _check_same_shape("velocity", velocity, x)
        v = momentum * velocity + v
    return x - eta * v, v


def wrs_step(x, grad, eta, *, target_norm=1.0, momentum=0.0, velocity=None):
    r"""SGD step without WD followed by weight rescaling (WRS; Liu et al., 2021, Sec. 4).

    .. math:: x_{t+1} = r\,\frac{x_t - \eta v_t}{\|x_t - \eta v_t\|}, \qquad
              v_t = \mu v_{t-1} + \nabla f(x_t),

    with ``r = target_norm``; the norm is taken along the last axis (one SI group per row).
    WRS keeps the effective learning rate fixed at :math:`\eta/r^2` instead of letting WD
    drive it (see :func:`theory.equivalences.wrs_lr_from_wd` for the exact correspondence).
    """
    _check_hyper(eta, 0.0, momentum)
    if not is_torch(target_norm):
        check_positive("target_norm", target_norm)
    y, v = sgd_step(x, grad, eta, 0.0, momentum=momentum, velocity=velocity)
    return y * (target_norm / vector_norm(y, axis=-1, keepdims=True)), v


def next_sq_norm(sq_norm, grad_sq_norm, eta, lam):
    r"""Exact norm recurrence of SGD + WD on SI weights (Lobacheva et al., 2021, Eq. (3)).

    .. math:: \|x_{t+1}\|^2 = (1-\eta\lambda)^2\|x_t\|^2 + \eta^2\|\nabla f(x_t)\|^2 .

    Exact because :math:`\langle\nabla f(x), x\rangle = 0` for SI ``f`` (plain SGD, no momentum).

    Parameters
    ----------
    sq_norm : float or array
        :math:`\|x_t\|^2` (> 0).
    grad_sq_norm : float or array
        :math:`\|\nabla f(x_t)\|^2` (>= 0), the gradient w.r.t. ``x`` itself (not the sphere).
    """
    eta_a, lam_a = check_decay(eta, lam)
    s = check_positive("sq_norm", sq_norm)
    g = check_positive("grad_sq_norm", grad_sq_norm, allow_zero=True)
    return scalar_or_array((1 - eta_a * lam_a) ** 2 * s + eta_a**2 * g)


def norm_trajectory(sq_norm0, eff_grad_sq_norms, eta, lam):
    r"""Iterate the recurrence :math:`\rho_{t+1}^2 = (1-\eta\lambda)^2\rho_t^2 + \eta^2 G_t^2/\rho_t^2`.

    ``eff_grad_sq_norms`` holds :math:`G_t^2 = \|\tilde g_t\|^2`, the squared *unit-sphere*
    gradient norms (:math:`\rho_t\|\nabla f(x_t)\|`)². Returns the ``len(G)+1`` squared norms,
    starting with ``sq_norm0``. Used to predict a norm path from measured gradients.
    """
    eta_a, lam_a = check_decay(eta, lam)
    g = check_positive("eff_grad_sq_norms", eff_grad_sq_norms, allow_zero=True).reshape(-1)
    out = np.empty(g.size + 1)
    out[0] = float(check_positive("sq_norm0", sq_norm0))
    a, e2 = (1 - float(eta_a) * float(lam_a)) ** 2, float(eta_a) ** 2
    for t, gt in enumerate(g):
        out[t + 1] = a * out[t] + e2 * gt / out[t]
    return out


def effective_lr(eta, norm):
    r"""Effective learning rate on the unit sphere, :math:`\tilde\eta = \eta/\rho^2`.

    (Lobacheva et al., 2021, Sec. 2; van Laarhoven, 2017.) ``norm`` is :math:`\rho = \|x\|`
    (the total norm of the SI group), not its square.
    """
    if is_torch(norm):
        return eta / norm**2
    rho = check_positive("norm", norm)
    return scalar_or_array(np.asarray(eta, dtype=float) / rho**2)


def effective_grad_norm(grad_norm, norm):
    r"""Gradient norm on the unit sphere, :math:`\|\tilde g\| = \rho\,\|\nabla f(x)\|`.

    By :math:`\nabla f(\alpha x) = \nabla f(x)/\alpha` this is the gradient norm at
    :math:`x/\rho` (Lobacheva et al., 2021, "effective gradient norm").
    """
    if is_torch(norm) or is_torch(grad_norm):
        return norm * grad_norm
    return scalar_or_array(np.asarray(grad_norm, dtype=float) * np.asarray(norm, dtype=float))


def angular_update(x_prev, x_next, axis: int = -1):
    r"""Angle (radians) between consecutive weights (Wan et al., 2021, "angular update").

    .. math:: \theta = \angle(x_t, x_{t+1}) = 2\,\operatorname{atan2}(\|a-b\|, \|a+b\|),
              \quad a = x_t/\|x_t\|,\; b = x_{t+1}/\|x_{t+1}\|,

    which equals :math:`\arccos\langle a, b\rangle` but keeps full relative precision for the
    tiny angles of one step (Kahan's formula). Batched along all axes but ``axis``.
    """
    if tuple(np.shape(x_prev)) != tuple(np.shape(x_next)):
        raise ValueError(f"shapes differ: {tuple(np.shape(x_prev))} vs {tuple(np.shape(x_next))}")
    a = x_prev / vector_norm(x_prev, axis, keepdims=True)
    b = x_next / vector_norm(x_next, axis, keepdims=True)
    num, den = vector_norm(a - b, axis), vector_norm(a + b, axis)
    if is_torch(num):
        return 2 * torch.atan2(num, den)
    return scalar_or_array(2 * np.arctan2(num, den))
