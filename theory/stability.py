r"""Destabilisation condition and the predicted length of a training period.

Assumptions, stated once for every function here (Lobacheva et al., 2021, Sec. 4):

1. **Stability on the sphere.** Near a minimum of an SI loss, GD on ``x`` with learning rate
   :math:`\eta` acts on the tangent directions like GD on the quadratic with Hessian
   :math:`\nabla^2 f(x) = \nabla^2 f(u)/\rho^2` (:math:`u = x/\rho`). Heavy-ball GD with
   momentum :math:`\mu` on a quadratic of curvature :math:`h` is stable iff
   :math:`\eta h < 2(1+\mu)`. With the *sphere sharpness* :math:`h` = top eigenvalue of the
   Riemannian Hessian :math:`P\nabla^2 f(u)P` (:math:`P = I - uu^\top`) this reads

   .. math:: \tilde\eta\, h < 2(1+\mu), \qquad \tilde\eta = \eta/\rho^2 .

2. **Decay phase.** While the loss is small its gradients are negligible next to WD, so the
   norm shrinks geometrically: :math:`\rho_{t+1} \approx \alpha\rho_t` with
   :math:`\alpha = 1-\eta\lambda` (plain SGD), or the larger root of
   :math:`\alpha^2 - (1+\mu-\eta\lambda)\alpha + \mu = 0` with momentum (the same
   :math:`\alpha` as in Li & Arora's TEXP equivalence).

3. **Period.** A period starts right after a destabilisation with the norm at
   :math:`\rho_{\max}` and ends when the decay phase has brought it down to the critical norm
   :math:`\rho_{\min} = \rho_c` where assumption 1 fails. Its length in iterations is

   .. math:: T = \frac{\ln(\rho_{\max}/\rho_{\min})}{-\ln\alpha}
             \approx \frac{\ln(\rho_{\max}/\rho_{\min})}{\eta\lambda} .

   The ratio :math:`\rho_{\max}/\rho_{\min}` (the size of the norm jump) is not predicted
   here: it is measured from a run, or from :func:`critical_norm` and a measured
   :math:`\rho_{\max}`. By the :math:`(\eta,\lambda)\to(c\eta,\lambda/c)` equivalence the ratio
   depends on :math:`\eta\lambda` alone, so at a fixed ratio the *frequency* :math:`1/T` grows
   linearly in :math:`\eta\lambda`. The ratio itself may change with :math:`\eta\lambda` (on the
   normalised quadratic it grows with it, and :math:`T \propto (\eta\lambda)^{-1/2}` there), so
   only the formula with the *measured* ratio is a prediction. :math:`T` counts the decay phase;
   the jump itself adds a few percent (about 10 % on the quadratic toy).
"""
from __future__ import annotations

import numpy as np

from ._arrays import check_decay, check_momentum, check_positive, scalar_or_array

__all__ = [
    "stability_threshold",
    "stability_margin",
    "is_unstable",
    "critical_norm",
    "critical_effective_lr",
    "projected_stability_threshold",
    "norm_decay_factor",
    "predicted_period_length",
    "predicted_period_frequency",
    "riemannian_hessian",
    "sphere_sharpness",
]


def stability_threshold(momentum=0.0):
    r"""Largest stable :math:`\tilde\eta h`: :math:`2(1+\mu)` (heavy-ball GD on a quadratic)."""
    return scalar_or_array(2 * (1 + check_momentum(momentum)))


def stability_margin(eff_lr, sharpness, momentum=0.0):
    r"""Ratio :math:`\tilde\eta h / (2(1+\mu))`; a step is unstable when it exceeds 1.

    Parameters
    ----------
    eff_lr : float or array
        Effective learning rate :math:`\eta/\rho^2` (:func:`theory.dynamics.effective_lr`).
    sharpness : float or array
        Sphere sharpness :math:`h` (:func:`sphere_sharpness`), >= 0.
    momentum : float, optional
        Heavy-ball coefficient :math:`\mu`.
    """
    e = check_positive("eff_lr", eff_lr)
    h = check_positive("sharpness", sharpness, allow_zero=True)
    return scalar_or_array(e * h / (2 * (1 + check_momentum(momentum))))


def is_unstable(eff_lr, sharpness, momentum=0.0):
    """True where :func:`stability_margin` > 1 (destabilisation condition, assumption 1)."""
    out = np.asarray(stability_margin(eff_lr, sharpness, momentum)) > 1
    return bool(out) if out.ndim == 0 else out


def critical_effective_lr(sharpness, momentum=0.0):
    r"""Effective LR at which training destabilises: :math:`\tilde\eta_c = 2(1+\mu)/h`."""
    h = check_positive("sharpness", sharpness)
    return scalar_or_array(2 * (1 + check_momentum(momentum)) / h)


def projected_stability_threshold(eta, lam, momentum=0.0):
    r"""Largest stable :math:`\tilde\eta h` for the SGD + WD step itself: :math:`2(1+\mu-\eta\lambda)`.

    :func:`stability_threshold` is the threshold of GD on the sphere. The actual step
    :math:`x^+ = (1-\eta\lambda)x - \eta\nabla f(x)` moves the *direction* :math:`u = x/\rho` as
    GD on the sphere with the larger effective LR :math:`\tilde\eta/(1-\eta\lambda)`
    (divide the step by :math:`1-\eta\lambda`, which does not change the direction), so the
    linearised tangent map :math:`\theta^+ = (1 - \tilde\eta h/(1-\eta\lambda))\,\theta` is stable
    iff :math:`\tilde\eta h < 2(1-\eta\lambda)`. With heavy-ball momentum :math:`\mu` write the
    tangent coordinate as :math:`y = \theta\rho` and the norm's decay as :math:`\rho_t \propto
    \alpha^t` (:func:`norm_decay_factor`); then :math:`w = \alpha z` (:math:`z` the per-step
    factor of :math:`\theta`) solves :math:`w^2 - (1+\mu-\eta\lambda-\tilde\eta h)w + \mu = 0`, and a
    root leaves :math:`|z| < 1` through :math:`w = -\alpha` exactly at

    .. math:: \tilde\eta h = 2(1+\mu-\eta\lambda),

    using :math:`\alpha^2 + \mu = (1+\mu-\eta\lambda)\alpha`. Derived symbolically in
    :func:`theory.symbolic.projected_threshold` and checked by simulation in the tests
    (Lobacheva et al., 2021, Sec. 4 give the leading order :math:`2(1+\mu)`). Compare it with
    :math:`\tilde\eta S` for the *batch sharpness* :math:`S` (Andreyev & Beneventano, 2024,
    "Edge of Stochastic Stability", arXiv 2412.20553, Sec. 3), measured per mini-batch.

    Parameters
    ----------
    eta, lam : float or array
        Learning rate (> 0) and weight decay (>= 0), ``eta * lam < 1``.
    momentum : float, optional
        Heavy-ball coefficient :math:`\mu \in [0, 1)`, with :math:`\eta\lambda \le (1-\sqrt\mu)^2`
        (a real :math:`\alpha`; above it the norm itself oscillates and the derivation fails).
    """
    eta_a, lam_a = check_decay(eta, lam)
    mu = check_momentum(momentum)
    if np.any(eta_a * lam_a > (1 - np.sqrt(mu)) ** 2):
        raise ValueError("eta*lam > (1 - sqrt(momentum))^2: the norm oscillates (complex alpha), no threshold")
    return scalar_or_array(2 * (1 + mu - eta_a * lam_a))


def critical_norm(eta, sharpness, momentum=0.0):
    r"""Norm below which a step is unstable: :math:`\rho_c = \sqrt{\eta h / (2(1+\mu))}`.

    Solves :math:`\eta h/\rho_c^2 = 2(1+\mu)` (assumption 1). Units of the weights.
    """
    eta_a = check_positive("eta", eta)
    return scalar_or_array(np.sqrt(eta_a / np.asarray(critical_effective_lr(sharpness, momentum))))


def norm_decay_factor(eta, lam, momentum=0.0):
    r"""Per-step factor :math:`\alpha` by which the norm shrinks when gradients vanish.

    :math:`\alpha = 1-\eta\lambda` for plain SGD; with momentum the larger root of
    :math:`\alpha^2 - (1+\mu-\eta\lambda)\alpha + \mu = 0` (assumption 2). When that root is
    complex (:math:`\eta\lambda > (1-\sqrt\mu)^2`) the decay oscillates with modulus
    :math:`\sqrt\mu`, which is returned.
    """
    eta_a, lam_a = check_decay(eta, lam)
    mu = check_momentum(momentum)
    b = 1 + mu - eta_a * lam_a
    disc = b**2 - 4 * mu
    root = (b + np.sqrt(np.clip(disc, 0, None))) / 2
    return scalar_or_array(np.where(disc >= 0, root, np.sqrt(mu)))


def predicted_period_length(eta, lam, norm_ratio, momentum=0.0):
    r"""Predicted period length :math:`T = \ln(\rho_{\max}/\rho_{\min}) / (-\ln\alpha)` (iterations).

    Parameters
    ----------
    eta, lam : float or array
        Learning rate and weight decay (``eta*lam < 1``, ``lam > 0``).
    norm_ratio : float or array
        :math:`\rho_{\max}/\rho_{\min} > 1` within one period (see assumption 3).
    momentum : float, optional
        Heavy-ball coefficient.

    Returns
    -------
    float or ndarray
        Period length in iterations; about :math:`\ln(\text{ratio})/(\eta\lambda)`.
    """
    check_positive("lam", lam)
    r = check_positive("norm_ratio", norm_ratio)
    if np.any(r <= 1):
        raise ValueError(f"norm_ratio must be > 1, got {norm_ratio!r}")
    alpha = np.asarray(norm_decay_factor(eta, lam, momentum))
    return scalar_or_array(np.log(r) / -np.log(alpha))


def predicted_period_frequency(eta, lam, norm_ratio, momentum=0.0):
    """Destabilisations per iteration, ``1 / predicted_period_length(...)``."""
    return scalar_or_array(1.0 / np.asarray(predicted_period_length(eta, lam, norm_ratio, momentum)))


def riemannian_hessian(hessian, x):
    r"""Riemannian Hessian of an SI function on the unit sphere, :math:`P\,\nabla^2 f(u)\,P`.

    ``hessian`` is the Euclidean Hessian evaluated at ``x``; by
    :math:`\nabla^2 f(\alpha x) = \nabla^2 f(x)/\alpha^2` it is rescaled to :math:`u = x/\|x\|`.
    The term :math:`-\langle\nabla f(u), u\rangle P` of the general formula vanishes for SI ``f``.
    """
    H = np.asarray(hessian, dtype=float)
    x = np.asarray(x, dtype=float).reshape(-1)
    if H.shape != (x.size, x.size):
        raise ValueError(f"hessian must have shape ({x.size}, {x.size}), got {H.shape}")
    rho = np.linalg.norm(x)
    if not np.isfinite(rho) or rho == 0:
        raise ValueError("x must be finite and non-zero")
    u = x / rho
    P = np.eye(x.size) - np.outer(u, u)
    return P @ (H * rho**2) @ P


def sphere_sharpness(hessian, x):
    """Top eigenvalue :math:`h` of :func:`riemannian_hessian` (the destabilisation curvature)."""
    return float(np.linalg.eigvalsh(riemannian_hessian(hessian, x))[-1])
