r"""Equilibrium of the weight norm under SGD + WD on scale-invariant weights.

If the unit-sphere gradient norm :math:`G = \|\tilde g\| = \rho\|\nabla f(x)\|` stays
constant, the exact recurrence (:func:`theory.dynamics.next_sq_norm`)

.. math:: u_{t+1} = (1-\eta\lambda)^2 u_t + \eta^2 G^2/u_t, \qquad u = \rho^2,

has the unique positive fixed point

.. math:: u^* = \rho^{*2} = \frac{\eta G}{\sqrt{\eta\lambda(2-\eta\lambda)}}, \qquad
          \rho^{*4} = \frac{\eta G^2}{\lambda(2-\eta\lambda)} \approx \frac{\eta G^2}{2\lambda}

(Lobacheva et al., 2021, Sec. 2 "equilibrium presumption"; van Laarhoven, 2017; Wan et al.,
2021). :mod:`theory.symbolic` derives these with sympy. With heavy-ball momentum :math:`\mu` and
gradients that are uncorrelated from step to step (spherical motion dynamics, Wan et al., 2021)
the leading order in :math:`\eta\lambda` is

.. math:: \rho^{*4} \approx \frac{\eta G^2}{2\lambda(1-\mu)}, \qquad
          \Delta\theta^* \approx \sqrt{\frac{2\eta\lambda}{1+\mu}} .

All functions broadcast over array arguments.
"""
from __future__ import annotations

import numpy as np

from ._arrays import check_decay, check_momentum, check_positive, scalar_or_array

__all__ = [
    "equilibrium_norm",
    "equilibrium_effective_lr",
    "equilibrium_angular_update",
    "relaxation_time",
]


def _validated(eta, lam, eff_grad_norm, momentum):
    eta_a, lam_a = check_decay(eta, lam)
    check_positive("lam", lam)  # an equilibrium needs WD
    g = check_positive("eff_grad_norm", eff_grad_norm)
    mu = check_momentum(momentum)
    return eta_a, lam_a, g, mu


def equilibrium_norm(eta, lam, eff_grad_norm, momentum=0.0):
    r"""Equilibrium norm :math:`\rho^*` of the SI weights.

    .. math::
        \rho^{*} = \Bigl(\frac{\eta G^2}{\lambda(2-\eta\lambda)}\Bigr)^{1/4} \quad (\mu = 0,
        \text{ exact fixed point}), \qquad
        \rho^{*} \approx \Bigl(\frac{\eta G^2}{2\lambda(1-\mu)}\Bigr)^{1/4} \quad (\mu > 0).

    Parameters
    ----------
    eta : float or array
        Learning rate (> 0).
    lam : float or array
        Weight decay (> 0), ``eta * lam < 1``.
    eff_grad_norm : float or array
        Unit-sphere (effective) gradient norm :math:`G = \rho\|\nabla f(x)\|` (> 0),
        assumed constant (or its root-mean-square over steps for SGD).
    momentum : float or array, optional
        Heavy-ball coefficient :math:`\mu \in [0, 1)`. For :math:`\mu > 0` the formula is the
        leading order in :math:`\eta\lambda` of the spherical-motion-dynamics balance derived in
        :func:`theory.symbolic.momentum_equilibrium`, assuming step-to-step uncorrelated
        gradients; it reduces to :math:`(\eta G^2/2\lambda)^{1/4}` at :math:`\mu = 0`.

    Returns
    -------
    float or ndarray
        :math:`\rho^*`, in the units of the weights.
    """
    eta_a, lam_a, g, mu = _validated(eta, lam, eff_grad_norm, momentum)
    exact = eta_a * g**2 / (lam_a * (2 - eta_a * lam_a))
    approx = eta_a * g**2 / (2 * lam_a * (1 - mu))
    return scalar_or_array(np.where(mu == 0, exact, approx) ** 0.25)


def equilibrium_effective_lr(eta, lam, eff_grad_norm, momentum=0.0):
    r"""Effective learning rate at equilibrium, :math:`\tilde\eta^* = \eta/\rho^{*2}`.

    For :math:`\mu = 0` exactly :math:`\sqrt{\eta\lambda(2-\eta\lambda)}/G \approx
    \sqrt{2\eta\lambda}/G`; it depends on :math:`(\eta, \lambda)` only through
    :math:`\eta\lambda` (Lobacheva et al., 2021, Sec. 2).
    """
    rho = equilibrium_norm(eta, lam, eff_grad_norm, momentum)
    return scalar_or_array(np.asarray(eta, dtype=float) / np.asarray(rho) ** 2)


def equilibrium_angular_update(eta, lam, momentum=0.0):
    r"""Angular update per step at equilibrium (Wan et al., 2021, Theorem 1).

    .. math::
        \Delta\theta^* = \arccos(1-\eta\lambda) \approx \sqrt{2\eta\lambda} \quad (\mu = 0),
        \qquad \Delta\theta^* \approx \sqrt{\frac{2\eta\lambda}{1+\mu}} \quad (\mu > 0).

    The :math:`\mu = 0` value is exact at the fixed point of the norm recurrence: there
    :math:`\rho_{t+1} = \rho_t` and :math:`\langle x_t, x_{t+1}\rangle = (1-\eta\lambda)\rho_t^2`,
    whatever :math:`G` is. Radians per step; independent of the gradient norm.
    """
    eta_a, lam_a = check_decay(eta, lam)
    mu = check_momentum(momentum)
    s = eta_a * lam_a
    return scalar_or_array(np.where(mu == 0, np.arccos(1 - s), np.sqrt(2 * s / (1 + mu))))


def relaxation_time(eta, lam):
    r"""Steps for a perturbation of :math:`\rho^2` around equilibrium to shrink by :math:`e`.

    Linearising :math:`u \mapsto (1-\eta\lambda)^2 u + \eta^2G^2/u` at :math:`u^*` gives the
    multiplier :math:`2(1-\eta\lambda)^2 - 1 \approx 1 - 4\eta\lambda`, so

    .. math:: \tau = -1/\ln\bigl(2(1-\eta\lambda)^2 - 1\bigr) \approx \frac{1}{4\eta\lambda}

    iterations (at fixed :math:`G`, plain SGD). Far from equilibrium, when gradients are
    negligible, the norm itself decays as :math:`(1-\eta\lambda)^t`, i.e. with time constant
    :math:`1/(\eta\lambda)` (see :func:`theory.stability.norm_decay_factor`).
    Requires :math:`\eta\lambda < 1 - 1/\sqrt2` (otherwise the linearised map is not contracting
    monotonically).
    """
    eta_a, lam_a = check_decay(eta, lam)
    m = 2 * (1 - eta_a * lam_a) ** 2 - 1
    if np.any(m <= 0):
        raise ValueError("relaxation_time needs eta*lam < 1 - 1/sqrt(2)")
    return scalar_or_array(-1.0 / np.log(m))
