r"""Equilibrium of the weight norm under SGD + WD on scale-invariant weights.

If the unit-sphere gradient norm :math:`G = \|\tilde g\| = \rho\|\nabla f(x)\|` stays
constant, the exact recurrence (:func:`theory.dynamics.next_sq_norm`)

.. math:: u_{t+1} = (1-\eta\lambda)^2 u_t + \eta^2 G^2/u_t, \qquad u = \rho^2,

has the unique positive fixed point

.. math:: u^* = \rho^{*2} = \frac{\eta G}{\sqrt{\eta\lambda(2-\eta\lambda)}}, \qquad
          \rho^{*4} = \frac{\eta G^2}{\lambda(2-\eta\lambda)} \approx \frac{\eta G^2}{2\lambda}

(Lobacheva et al., 2021, Sec. 2 "equilibrium presumption"; van Laarhoven, 2017; Wan et al.,
2021).

**Momentum.** Heavy ball, :math:`x_{t+1} = (1+\mu-\eta\lambda)x_t - \mu x_{t-1} - \eta g_t`
(:func:`theory.dynamics.sgd_step`), with gradients :math:`g_t \perp x_t` of norm :math:`G/\rho`
that are uncorrelated from step to step (spherical motion dynamics, Wan et al., 2021). With
:math:`a = 1+\mu-\eta\lambda`, :math:`P_t = \|x_t\|^2` and :math:`C_t = \langle x_t, x_{t-1}\rangle`
(in expectation; in high dimension both concentrate) the second moments obey exactly

.. math:: P_{t+1} = a^2P_t + \mu^2P_{t-1} - 2a\mu C_t + \eta^2G^2/P_t, \qquad
          C_{t+1} = aP_t - \mu C_t ,

whose fixed point is

.. math:: \rho^{*4} = \frac{\eta G^2 (1+\mu)}{\lambda(1-\mu)\,(2(1+\mu)-\eta\lambda)}, \qquad
          \cos\Delta\theta^* = \frac{C^*}{P^*} = 1 - \frac{\eta\lambda}{1+\mu} .

Both reduce exactly to the plain-SGD values at :math:`\mu = 0` (one formula, continuous in
:math:`\mu`), and to Wan et al.'s leading orders :math:`\rho^{*4}\approx\eta G^2/(2\lambda(1-\mu))`,
:math:`\Delta\theta^*\approx\sqrt{2\eta\lambda/(1+\mu)}` for small :math:`\eta\lambda`.
:mod:`theory.symbolic` derives the fixed points with sympy (:func:`~theory.symbolic.equilibrium_sq_norm`,
:func:`~theory.symbolic.momentum_equilibrium`).

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
    "approach_steps",
]


def _validated(eta, lam, eff_grad_norm, momentum):
    eta_a, lam_a = check_decay(eta, lam)
    check_positive("lam", lam)  # an equilibrium needs WD
    g = check_positive("eff_grad_norm", eff_grad_norm)
    mu = check_momentum(momentum)
    return eta_a, lam_a, g, mu


def _norm4(eta_a, lam_a, g, mu):
    s = eta_a * lam_a
    return eta_a * g**2 * (1 + mu) / (lam_a * (1 - mu) * (2 * (1 + mu) - s))


def equilibrium_norm(eta, lam, eff_grad_norm, momentum=0.0):
    r"""Equilibrium norm :math:`\rho^*` of the SI weights.

    .. math::
        \rho^{*} = \Bigl(\frac{\eta G^2 (1+\mu)}{\lambda(1-\mu)(2(1+\mu)-\eta\lambda)}\Bigr)^{1/4},
        \qquad \mu = 0:\ \rho^* = \Bigl(\frac{\eta G^2}{\lambda(2-\eta\lambda)}\Bigr)^{1/4} .

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
        Heavy-ball coefficient :math:`\mu \in [0, 1)`. The fixed point of the second-moment
        recurrence of the module docstring (gradients uncorrelated between steps); for
        :math:`\mu = 0` the exact fixed point of :func:`theory.dynamics.next_sq_norm`.

    Returns
    -------
    float or ndarray
        :math:`\rho^*`, in the units of the weights.
    """
    return scalar_or_array(_norm4(*_validated(eta, lam, eff_grad_norm, momentum)) ** 0.25)


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
        \Delta\theta^* = \arccos\Bigl(1-\frac{\eta\lambda}{1+\mu}\Bigr)
        \approx \sqrt{\frac{2\eta\lambda}{1+\mu}} .

    At the fixed point :math:`\|x_{t+1}\| = \|x_t\|` and
    :math:`\langle x_{t+1}, x_t\rangle = C^* = (1+\mu-\eta\lambda)P^*/(1+\mu)` (module
    docstring), whatever :math:`G` is; for :math:`\mu = 0`, :math:`\arccos(1-\eta\lambda)` is exact
    for the deterministic recurrence. Radians per step; independent of the gradient norm.
    """
    eta_a, lam_a = check_decay(eta, lam)
    mu = check_momentum(momentum)
    return scalar_or_array(np.arccos(1 - eta_a * lam_a / (1 + mu)))


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


def approach_steps(eta, lam, eff_grad_norm, rho_start, rho_end):
    r"""Iterations for plain SGD + WD to shrink the norm from ``rho_start`` to ``rho_end`` at a
    constant effective gradient norm :math:`G` (the decay phase of a period, with gradients).

    The recurrence :math:`u_{t+1} = \alpha^2u_t + \eta^2G^2/u_t` (:math:`u = \rho^2`,
    :math:`\alpha = 1-\eta\lambda`, Lobacheva et al., 2021, Sec. 2) in continuous time,
    :math:`\mathrm d(u^2)/\mathrm dt = 2\ln(\alpha^2)\,(u^2 - u^{*2})`, gives

    .. math:: T = \frac{\ln\bigl((\rho_{\rm start}^4-\rho^{*4})/(\rho_{\rm end}^4-\rho^{*4})\bigr)}
                       {-4\ln\alpha},

    with :math:`\rho^*` the equilibrium norm (:func:`equilibrium_norm`). For :math:`G = 0` it is
    exactly the pure-WD decay time :math:`\ln(\rho_{\rm start}/\rho_{\rm end})/(-\ln\alpha)` of
    :func:`theory.stability.predicted_period_length`; otherwise it is longer, since the gradient
    pushes the norm out while WD pulls it in, and it is infinite when
    :math:`\rho_{\rm end} \le \rho^*`: the norm then only approaches the equilibrium and never gets
    to ``rho_end`` at this gradient level. The continuous-time step is within one iteration
    of counting the recurrence's steps for :math:`\eta\lambda \le 0.1`.

    Parameters
    ----------
    eta, lam : float or array
        Learning rate (> 0) and weight decay (> 0), ``eta * lam < 1``.
    eff_grad_norm : float or array
        Effective gradient norm :math:`G = \rho\|\nabla f\|` (>= 0) during the decay, e.g. the
        root-mean-square over the decay phases of a run.
    rho_start, rho_end : float or array
        Norms at the start and at the end of the decay, ``rho_start > rho_end > 0``.

    Returns
    -------
    float or ndarray
        Iterations (``inf`` where ``rho_end`` is at or below the equilibrium norm).
    """
    eta_a, lam_a = check_decay(eta, lam)
    check_positive("lam", lam)
    g = check_positive("eff_grad_norm", eff_grad_norm, allow_zero=True)
    r0, r1 = check_positive("rho_start", rho_start), check_positive("rho_end", rho_end)
    if np.any(r0 <= r1):
        raise ValueError(f"rho_start must exceed rho_end, got {rho_start!r} and {rho_end!r}")
    star4 = _norm4(eta_a, lam_a, g, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log((r0**4 - star4) / (r1**4 - star4)) / (-4 * np.log1p(-eta_a * lam_a))
    return scalar_or_array(np.where(r1**4 > star4, t, np.inf))
