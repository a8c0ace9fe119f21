r"""Rotational equilibrium of scale-invariant weights beyond plain SGD: Nesterov, decoupled WD, AdamW.

Random-walk model (Wan et al., 2021, "spherical motion dynamics", Sec. 3; Kosson et al., 2024,
"Rotational equilibrium: how weight decay balances learning across neural networks", Sec. 3-4).
Near equilibrium the optimizer's inputs :math:`q_t` are orthogonal to the SI weights and
uncorrelated from step to step, and one step is

.. math:: x_{t+1} = (1-\delta)\,x_t - \eta \sum_{k\ge 0} c_k\, q_{t-k},

with :math:`c_k` the momentum filter (:func:`momentum_filter_sums`) and :math:`\delta` the radial
decay per step. For SGD, :math:`q = \nabla f(x)` with :math:`\mathbb E\|q\|^2 = G^2/\rho^2`
(:math:`G` the effective, unit-sphere gradient norm); for Adam-type optimizers
:math:`q = g/\sqrt{v}` elementwise, :math:`\mathbb E\|q\|^2 \approx C` (the number of elements of
the tensor) when the gradient is zero-mean noise and :math:`v \approx \mathbb E[g^2]`.

Each input moves the weights by :math:`\eta s_1 q` in total (:math:`s_1 = \sum c_k`) along a
direction orthogonal to them, so the squared norm grows by :math:`\eta^2 s_1^2\,\mathbb E\|q\|^2`
per step and shrinks by :math:`2\delta\rho^2`; per step the weights move by
:math:`\eta^2 s_2\,\mathbb E\|q\|^2` (:math:`s_2 = \sum c_k^2`). At the balance, to leading order
in :math:`\delta`,

.. math:: \rho^{*2} = \frac{\eta^2 s_1^2\,\mathbb E\|q\|^2}{2\delta}\Big|_{\rho=\rho^*}, \qquad
          \Delta\theta^{*2} = \frac{2\delta\, s_2}{s_1^2} .

* PyTorch SGD (heavy ball, WD coupled: :math:`\lambda x` enters the filter, :math:`\delta =
  \eta\lambda s_1`): :math:`\Delta\theta^{*2} = 2\eta\lambda s_2/s_1`, which is
  :math:`2\eta\lambda/(1+\mu)` (Wan et al., 2021, Theorem 1) -- :mod:`theory.equilibrium`, whose
  exact :math:`\mu = 0` values these functions return for that case.
* decoupled WD (:math:`x \leftarrow (1-\eta\lambda)x` outside the filter, "SGDW", Loshchilov &
  Hutter, 2019): :math:`\delta = \eta\lambda`.
* AdamW (EMA filter :math:`c_k = (1-\beta_1)\beta_1^k`, :math:`\delta = \eta\lambda`):
  :math:`\rho^* = \sqrt{\eta C/(2\lambda)}`, :math:`\Delta\theta^* =
  \sqrt{2\eta\lambda(1-\beta_1)/(1+\beta_1)}` (Kosson et al., 2024, Table 1).

``tests/test_theory_rotational.py`` checks every case against simulations with PyTorch's own
optimizers (:mod:`simulate.rotational`). Adam with *coupled* L2 has no such closed form: the WD
term is divided by :math:`\sqrt v` as well (Kosson et al., 2024, Sec. 4 discuss the imbalance).

Effective learning rate of Adam-type optimizers on SI weights: their step is invariant to the
scale of :math:`x` (the gradient scales as :math:`1/\rho`, and so does :math:`\sqrt v`), so the
direction :math:`x/\rho` moves by :math:`\eta/\rho` times a scale-free vector: the effective LR
is :math:`\eta/\rho` (Heo et al., 2021, "AdamP", Sec. 3), not :math:`\eta/\rho^2` as for SGD.
All functions broadcast over array arguments.
"""
from __future__ import annotations

import numpy as np

from ._arrays import check_decay, check_momentum, check_positive, scalar_or_array
from .equilibrium import equilibrium_angular_update, equilibrium_norm

__all__ = [
    "momentum_filter_sums",
    "sgd_equilibrium_angular_update",
    "sgd_equilibrium_norm",
    "adaptive_effective_lr",
    "adamw_equilibrium_norm",
    "adamw_equilibrium_effective_lr",
    "adamw_equilibrium_angular_update",
]


def momentum_filter_sums(momentum, *, nesterov: bool = False, dampening=0.0, ema: bool = False):
    r"""Sums :math:`s_1 = \sum_k c_k` and :math:`s_2 = \sum_k c_k^2` of a momentum filter.

    The step at time :math:`t` is :math:`\sum_k c_k q_{t-k}` (steady state, first-step
    transients ignored):

    * heavy ball, PyTorch SGD: :math:`b_t = \mu b_{t-1} + (1-d)q_t`, step :math:`b_t`:
      :math:`c_k = (1-d)\mu^k`, :math:`s_1 = (1-d)/(1-\mu)`, :math:`s_2 = (1-d)^2/(1-\mu^2)`;
    * Nesterov, PyTorch SGD (``nesterov=True``, :math:`d = 0`): step :math:`q_t + \mu b_t`:
      :math:`c_0 = 1+\mu`, :math:`c_k = \mu^{k+1}`, :math:`s_1 = 1/(1-\mu)`,
      :math:`s_2 = (1+\mu)^2 + \mu^4/(1-\mu^2)`;
    * EMA, Adam's first moment (``ema=True``, :math:`\mu = \beta_1`): :math:`c_k = (1-\beta_1)\beta_1^k`,
      :math:`s_1 = 1`, :math:`s_2 = (1-\beta_1)/(1+\beta_1)`.

    Returns
    -------
    (s1, s2) : floats or arrays
    """
    mu = check_momentum(momentum)
    d = np.asarray(dampening, dtype=float)
    if np.any((d < 0) | (d > 1)):
        raise ValueError(f"dampening must lie in [0, 1], got {dampening!r}")
    if ema and (nesterov or np.any(d != 0)):
        raise ValueError("an EMA filter has no nesterov or dampening option")
    if nesterov and np.any(d != 0):
        raise ValueError("nesterov momentum requires dampening = 0 (as in torch.optim.SGD)")
    if ema:
        s1, s2 = np.ones_like(mu), (1 - mu) / (1 + mu)
    elif nesterov:
        s1, s2 = 1 / (1 - mu), (1 + mu) ** 2 + mu**4 / (1 - mu**2)
    else:
        s1, s2 = (1 - d) / (1 - mu), (1 - d) ** 2 / (1 - mu**2)
    return scalar_or_array(s1), scalar_or_array(s2)


def _is_plain(nesterov, dampening, decoupled) -> bool:
    return not nesterov and not decoupled and np.all(np.asarray(dampening) == 0)


def _sgd_decay(eta, lam, s1, decoupled):
    """Radial decay per step: eta*lam (decoupled) or eta*lam*s1 (coupled: lam*x is filtered too)."""
    return eta * lam if decoupled else eta * lam * s1


def sgd_equilibrium_angular_update(eta, lam, momentum=0.0, *, nesterov: bool = False, dampening=0.0,
                                   decoupled: bool = False):
    r"""Angular update per step at equilibrium of SGD variants on SI weights (radians).

    .. math:: \Delta\theta^* = \sqrt{2\delta s_2/s_1^2}, \qquad
              \delta = \eta\lambda s_1 \text{ (coupled)} \text{ or } \eta\lambda \text{ (decoupled)},

    with :math:`(s_1, s_2)` from :func:`momentum_filter_sums` (see the module docstring). For
    heavy ball with coupled WD and no dampening this is
    :func:`theory.equilibrium.equilibrium_angular_update` (exact :math:`\arccos(1-\eta\lambda)`
    at :math:`\mu = 0`); otherwise the leading order in :math:`\eta\lambda`. Decoupled heavy ball
    gives :math:`\sqrt{2\eta\lambda(1-\mu)/(1+\mu)}`.
    """
    if _is_plain(nesterov, dampening, decoupled):
        return equilibrium_angular_update(eta, lam, momentum)
    eta_a, lam_a = check_decay(eta, lam)
    s1, s2 = momentum_filter_sums(momentum, nesterov=nesterov, dampening=dampening)
    delta = _sgd_decay(eta_a, lam_a, np.asarray(s1), decoupled)
    return scalar_or_array(np.sqrt(2 * delta * np.asarray(s2) / np.asarray(s1) ** 2))


def sgd_equilibrium_norm(eta, lam, eff_grad_norm, momentum=0.0, *, nesterov: bool = False, dampening=0.0,
                         decoupled: bool = False):
    r"""Equilibrium norm of the SI weights under SGD variants.

    .. math:: \rho^{*4} = \frac{\eta^2 s_1^2 G^2}{2\delta},

    i.e. :math:`\eta s_1 G^2/(2\lambda)` with coupled WD and :math:`\eta s_1^2 G^2/(2\lambda)` with
    decoupled WD; :math:`G` is the RMS effective gradient norm :math:`\rho\|\nabla f\|`. Heavy ball
    with coupled WD and no dampening is :func:`theory.equilibrium.equilibrium_norm`.
    """
    if _is_plain(nesterov, dampening, decoupled):
        return equilibrium_norm(eta, lam, eff_grad_norm, momentum)
    eta_a, lam_a = check_decay(eta, lam)
    check_positive("lam", lam)
    g = check_positive("eff_grad_norm", eff_grad_norm)
    s1, _ = momentum_filter_sums(momentum, nesterov=nesterov, dampening=dampening)
    s1 = np.asarray(s1)
    delta = _sgd_decay(eta_a, lam_a, s1, decoupled)
    return scalar_or_array((eta_a**2 * s1**2 * g**2 / (2 * delta)) ** 0.25)


def adaptive_effective_lr(eta, norm):
    r"""Effective LR of Adam-type optimizers on SI weights, :math:`\eta/\rho` (Heo et al., 2021, Sec. 3).

    ``norm`` is :math:`\rho = \|x\|` (the tensor's or the group's norm). Compare
    :func:`theory.dynamics.effective_lr` (:math:`\eta/\rho^2`) for SGD.
    """
    if hasattr(norm, "detach"):
        return eta / norm
    rho = check_positive("norm", norm)
    return scalar_or_array(np.asarray(eta, dtype=float) / rho)


def adamw_equilibrium_norm(eta, lam, numel):
    r"""Equilibrium norm of an SI tensor of ``numel`` elements under AdamW,
    :math:`\rho^* = \sqrt{\eta C/(2\lambda)}` (Kosson et al., 2024, Table 1).

    Independent of the gradient and of :math:`\beta_1`; assumes :math:`\varepsilon` negligible
    against :math:`\sqrt v` and zero-mean gradients (random walk). PyTorch's AdamW convention:
    :math:`x \leftarrow (1-\eta\lambda)x - \eta\,\hat m/(\sqrt{\hat v}+\varepsilon)`.
    """
    eta_a, lam_a = check_decay(eta, lam)
    check_positive("lam", lam)
    c = check_positive("numel", numel)
    return scalar_or_array(np.sqrt(eta_a * c / (2 * lam_a)))


def adamw_equilibrium_effective_lr(eta, lam, numel):
    r"""AdamW's effective LR at equilibrium, :math:`\eta/\rho^* = \sqrt{2\eta\lambda/C}`."""
    return scalar_or_array(np.asarray(eta, dtype=float) / np.asarray(adamw_equilibrium_norm(eta, lam, numel)))


def adamw_equilibrium_angular_update(eta, lam, beta1=0.9):
    r"""AdamW's angular update per step at equilibrium (radians; Kosson et al., 2024, Table 1),

    .. math:: \Delta\theta^* = \sqrt{\frac{2\eta\lambda(1-\beta_1)}{1+\beta_1}} .
    """
    eta_a, lam_a = check_decay(eta, lam)
    b = check_momentum(beta1)
    return scalar_or_array(np.sqrt(2 * eta_a * lam_a * (1 - b) / (1 + b)))
