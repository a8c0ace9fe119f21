r"""Schedules that give the same trajectory of SI weights on the sphere.

(a) **Scaling** (Lobacheva et al., 2021, Sec. 2; van Laarhoven, 2017). For SI ``f`` and plain
    SGD, :math:`(\eta,\lambda,x_0)` and :math:`(c\eta,\lambda/c,\sqrt c\,x_0)` give
    :math:`x'_t = \sqrt c\,x_t` at every step (hence the same :math:`x_t/\|x_t\|`): the dynamics
    depend on :math:`\eta\lambda` only, and time scales as :math:`1/(\eta\lambda)`.

(b) **Exponential LR** (Li & Arora, 2019, Theorem 2.1 "TEXP"). SGD with momentum :math:`\mu`,
    WD :math:`\lambda` and constant LR :math:`\eta` equals SGD with momentum :math:`\mu`, *no*
    WD and LR :math:`\eta_t = \eta\,\alpha^{-2t-1}`, where :math:`\alpha` is the larger root of
    :math:`\alpha^2 - (1+\mu-\lambda\eta)\alpha + \mu = 0`: the weights satisfy
    :math:`x_t = \alpha^t y_t`. Both runs use the PyTorch momentum convention of
    :func:`theory.dynamics.sgd_step`; the TEXP run starts from :math:`y_0 = x_0` with momentum
    buffer :math:`v_{-1} = (\alpha-1)x_0/(\alpha\eta)` (zero when :math:`\mu = 0`), which makes
    the first steps agree too.

    *Derivation*: write run A as heavy ball,
    :math:`x_{t+1} = (1+\mu-\eta\lambda)x_t - \mu x_{t-1} - \eta\nabla f(x_t)`, substitute
    :math:`x_t = \alpha^t y_t` and use :math:`\nabla f(\alpha^t y) = \alpha^{-t}\nabla f(y)`:
    :math:`y_{t+1} = y_t + \tfrac{\mu}{\alpha^2}(y_t - y_{t-1}) - \eta\alpha^{-2t-1}\nabla f(y_t)`,
    which is PyTorch-style momentum :math:`\mu` with LR ratio :math:`\eta_t/\eta_{t-1}=\alpha^{-2}`.

(c) **Weight rescaling** (WRS; Liu et al., 2021). Projecting the SI weights back to norm
    :math:`r` after a WD-free step reproduces the WD run's direction exactly when the WRS run
    uses the per-step LR :math:`\eta'_t = r^2\eta/((1-\eta\lambda)\rho_t^2)`, with
    :math:`\rho_t` the WD run's norm, itself computable online from the WRS run's gradients by
    the exact recurrence (:func:`theory.dynamics.next_sq_norm`). Conversely WRS with a
    constant LR is SGD at the constant effective LR :math:`\eta'/r^2`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._arrays import check_decay, check_momentum, check_positive, scalar_or_array
from .stability import norm_decay_factor

__all__ = [
    "rescaled_hyperparameters",
    "texp_alpha",
    "TexpSchedule",
    "texp_schedule",
    "wrs_lr_from_wd",
]


def rescaled_hyperparameters(eta, lam, x0, c):
    r"""Map :math:`(\eta, \lambda, x_0) \mapsto (c\eta, \lambda/c, \sqrt c\,x_0)` (equivalence (a)).

    Returns a tuple ``(eta_c, lam_c, x0_c)``; the product :math:`\eta\lambda` is unchanged and the
    new run's weights are :math:`\sqrt c` times the old run's at every step.
    """
    c_a = float(check_positive("c", c))
    eta_a, lam_a = check_decay(eta, lam)
    x = np.asarray(x0, dtype=float) if not hasattr(x0, "detach") else x0
    return scalar_or_array(c_a * eta_a), scalar_or_array(lam_a / c_a), np.sqrt(c_a) * x


def texp_alpha(eta, lam, momentum=0.0):
    r"""Li & Arora's growth factor :math:`\alpha`: larger root of
    :math:`\alpha^2 - (1+\mu-\lambda\eta)\alpha + \mu = 0` (:math:`=1-\eta\lambda` at
    :math:`\mu=0`).

    Raises ``ValueError`` when the roots are complex, i.e. :math:`\eta\lambda > (1-\sqrt\mu)^2`,
    where no real exponential schedule exists.
    """
    eta_a, lam_a = check_decay(eta, lam)
    mu = check_momentum(momentum)
    if np.any(eta_a * lam_a > (1 - np.sqrt(mu)) ** 2):
        raise ValueError("TEXP needs eta*lam <= (1 - sqrt(momentum))**2 for a real alpha")
    return norm_decay_factor(eta, lam, momentum)


@dataclass(frozen=True)
class TexpSchedule:
    r"""Exponential-LR schedule equivalent to constant LR + WD (Li & Arora, 2019).

    Attributes
    ----------
    lrs : ndarray, shape (steps,)
        :math:`\eta_t = \eta\,\alpha^{-2t-1}` for :math:`t = 0, \dots, steps-1`.
    scale : ndarray, shape (steps + 1,)
        :math:`\alpha^t`: the WD run's weights are ``scale[t] * y_t``.
    alpha, eta, lam, momentum : float
        The growth factor and the WD run's hyper-parameters.
    """

    lrs: np.ndarray
    scale: np.ndarray
    alpha: float
    eta: float
    lam: float
    momentum: float

    def initial_velocity(self, x0):
        r"""Momentum buffer :math:`v_{-1} = (\alpha-1)x_0/(\alpha\eta)` for the TEXP run.

        ``None`` when ``momentum == 0`` (the buffer is then irrelevant).
        """
        if self.momentum == 0:
            return None
        return (self.alpha - 1) / (self.alpha * self.eta) * x0


def texp_schedule(eta, lam, momentum, steps):
    """Build the :class:`TexpSchedule` of ``steps`` learning rates (equivalence (b))."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    alpha = float(texp_alpha(eta, lam, momentum))
    t = np.arange(int(steps) + 1, dtype=float)
    return TexpSchedule(lrs=float(eta) * alpha ** (-2 * t[:-1] - 1), scale=alpha**t, alpha=alpha,
                        eta=float(eta), lam=float(lam), momentum=float(momentum))


def wrs_lr_from_wd(eta, lam, sq_norm, target_norm=1.0):
    r"""LR that makes a WRS step at norm ``target_norm`` equal a WD step at norm :math:`\rho_t`.

    .. math:: \eta'_t = \frac{r^2\,\eta}{(1-\eta\lambda)\,\rho_t^2}

    (equivalence (c)). ``sq_norm`` is :math:`\rho_t^2` of the WD run.
    """
    eta_a, lam_a = check_decay(eta, lam)
    s = check_positive("sq_norm", sq_norm)
    r = check_positive("target_norm", target_norm)
    return scalar_or_array(r**2 * eta_a / ((1 - eta_a * lam_a) * s))
