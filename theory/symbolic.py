r"""Symbolic (sympy) derivations behind :mod:`theory.equilibrium` and :mod:`theory.equivalences`.

Each function *derives* its result from the update rule rather than stating it, so the tests
can compare the derived expression with the closed forms used numerically elsewhere.

Symbols: ``eta`` (:math:`\eta`), ``lam`` (:math:`\lambda`), ``mu`` (:math:`\mu`), ``G`` (unit-sphere
gradient norm), ``u`` (:math:`\rho^2`), all positive.
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp

__all__ = [
    "SYMBOLS",
    "norm_map",
    "equilibrium_sq_norm",
    "equilibrium_cos_angle",
    "equilibrium_angle_series",
    "relaxation_multiplier",
    "texp_alpha_roots",
    "texp_substitution_residual",
    "momentum_moment_map",
    "momentum_equilibrium",
    "projected_threshold",
]

eta, lam, G, u = sp.symbols("eta lambda G u", positive=True)
mu = sp.symbols("mu", nonnegative=True)
SYMBOLS = {"eta": eta, "lam": lam, "G": G, "u": u, "mu": mu}


def norm_map():
    r"""The exact recurrence :math:`u \mapsto (1-\eta\lambda)^2u + \eta^2G^2/u` (Lobacheva et al. Eq. (3))."""
    return (1 - eta * lam) ** 2 * u + eta**2 * G**2 / u


@lru_cache(maxsize=None)
def equilibrium_sq_norm():
    r"""Positive fixed point :math:`u^*` of :func:`norm_map`, solved by sympy.

    Equals :math:`\eta G/\sqrt{\eta\lambda(2-\eta\lambda)}` for :math:`0<\eta\lambda<1`.
    """
    sols = sp.solve(sp.Eq(u, norm_map()), u)
    sols = [s for s in sols if s.subs({eta: sp.Rational(1, 10), lam: sp.Rational(1, 100), G: 1}).is_positive]
    if len(sols) != 1:
        raise RuntimeError(f"expected one positive fixed point, got {sols}")
    return sp.simplify(sols[0])


def equilibrium_cos_angle():
    r"""Cosine of the angle between :math:`x_t` and :math:`x_{t+1}` at the fixed point.

    :math:`\langle x_t, x_{t+1}\rangle = (1-\eta\lambda)\rho_t^2` (the gradient is orthogonal to
    :math:`x_t`), so :math:`\cos\theta = (1-\eta\lambda)\rho_t/\rho_{t+1}`; at the fixed point
    :math:`\rho_{t+1} = \rho_t` and the result is :math:`1-\eta\lambda`.
    """
    ustar = equilibrium_sq_norm()
    u_next = norm_map().subs(u, ustar)
    return sp.simplify((1 - eta * lam) * ustar / sp.sqrt(ustar * u_next))


def equilibrium_angle_series(order: int = 3):
    r"""Series of the equilibrium angle :math:`\arccos(1-s)` in :math:`s=\eta\lambda`:
    :math:`\sqrt{2s}\,(1 + s/12 + \dots)`."""
    s = sp.symbols("s", positive=True)
    angle = sp.acos(equilibrium_cos_angle().subs(eta * lam, s).subs(lam, s / eta))
    return sp.series(sp.simplify(angle), s, 0, order).removeO()


def relaxation_multiplier():
    r"""Derivative of :func:`norm_map` at :math:`u^*`: :math:`2(1-\eta\lambda)^2-1`."""
    return sp.simplify(sp.diff(norm_map(), u).subs(u, equilibrium_sq_norm()))


def texp_alpha_roots():
    r"""Roots of Li & Arora's :math:`\alpha^2-(1+\mu-\lambda\eta)\alpha+\mu=0`, derived by requiring
    that :math:`x_t=\alpha^t y_t` turns heavy-ball + WD into WD-free heavy ball (see
    :func:`texp_substitution_residual`)."""
    a = sp.symbols("alpha", positive=True)
    return sp.solve(sp.Eq(texp_substitution_residual(a), 0), a)


def texp_substitution_residual(a):
    r"""Mismatch of the :math:`y_t` coefficients after substituting :math:`x_t=a^t y_t`.

    Heavy ball with WD: :math:`x_{t+1} = (1+\mu-\eta\lambda)x_t - \mu x_{t-1} - \eta\nabla f(x_t)`.
    After the substitution and division by :math:`a^{t+1}` the coefficient of :math:`y_t` is
    :math:`(1+\mu-\eta\lambda)/a` and that of :math:`y_{t-1}` is :math:`-\mu/a^2`; a WD-free heavy
    ball with momentum :math:`\mu'=\mu/a^2` needs them to be :math:`1+\mu'` and :math:`-\mu'`.
    Returns (numerator of) :math:`(1+\mu-\eta\lambda)/a - (1+\mu/a^2)`.
    """
    return sp.numer(sp.together((1 + mu - eta * lam) / a - (1 + mu / a**2)))


def momentum_moment_map():
    r"""One step of the second moments of heavy-ball SGD + WD driven by uncorrelated gradients.

    :math:`x_{t+1} = a x_t - \mu x_{t-1} - \eta g_t`, :math:`a = 1+\mu-\eta\lambda` (the heavy-ball
    form of :func:`theory.dynamics.sgd_step`), :math:`g_t \perp x_t`, :math:`\|g_t\|^2 = G^2/P_t`
    and :math:`\langle g_t, x_{t-1}\rangle = 0` in expectation (spherical motion dynamics, Wan et
    al., 2021). Expanding :math:`\|x_{t+1}\|^2` and :math:`\langle x_{t+1}, x_t\rangle` gives the map
    :math:`(P_t, P_{t-1}, C_t) \mapsto (P_{t+1}, C_{t+1})` returned as two expressions in the
    symbols ``P``, ``Pprev``, ``C``, with :math:`P = \|x\|^2` and :math:`C_t = \langle x_t, x_{t-1}\rangle`.
    """
    P, Pprev, C = sp.symbols("P Pprev C", positive=True)
    a = 1 + mu - eta * lam
    p_next = a**2 * P + mu**2 * Pprev - 2 * a * mu * C + eta**2 * G**2 / P
    c_next = a * P - mu * C
    return p_next, c_next


@lru_cache(maxsize=None)
def momentum_equilibrium():
    r"""Fixed point of :func:`momentum_moment_map`, solved by sympy.

    Returns a dict with ``sq_norm`` (:math:`\rho^{*2} = P^*`), ``norm4`` (:math:`\rho^{*4} =
    \eta G^2(1+\mu)/(\lambda(1-\mu)(2(1+\mu)-\eta\lambda))`), ``cos_angle``
    (:math:`C^*/P^* = 1-\eta\lambda/(1+\mu)`) and ``angle`` (its arccos), all exact for the model;
    at :math:`\mu = 0` they are :func:`equilibrium_sq_norm` and :func:`equilibrium_cos_angle`.
    """
    P, Pprev, C = sp.symbols("P Pprev C", positive=True)
    p_next, c_next = momentum_moment_map()
    c_star = sp.solve(sp.Eq(C, c_next), C)[0]
    stationary = sp.Eq(P, p_next.subs({Pprev: P, C: c_star}))
    sols = [s for s in sp.solve(stationary, P)
            if s.subs({eta: 1, lam: sp.Rational(1, 100), G: 1, mu: sp.Rational(1, 2)}).is_positive]
    if len(sols) != 1:
        raise RuntimeError(f"expected one positive fixed point, got {sols}")
    sq_norm = sp.simplify(sols[0])
    cos_angle = sp.simplify(c_star.subs(P, sq_norm) / sq_norm)
    return {"sq_norm": sq_norm, "norm4": sp.simplify(sq_norm**2), "cos_angle": cos_angle,
            "angle": sp.acos(cos_angle)}


@lru_cache(maxsize=None)
def projected_threshold():
    r"""The largest stable :math:`E = \tilde\eta h` of the SGD + WD step, derived two ways.

    ``"sgd"``: from the exact nonlinear step on the SI function
    :math:`f(x) = \tfrac h2\,x_2^2/\|x\|^2` at :math:`x = \rho(\cos\theta, \sin\theta)`:
    :math:`x^+ = (1-\eta\lambda)x - \eta\nabla f(x)`, :math:`\theta^+ = \operatorname{atan2}(x^+_2, x^+_1)`;
    the slope :math:`\mathrm d\theta^+/\mathrm d\theta` at the minimum :math:`\theta = 0` equals
    :math:`-1` at the returned :math:`E` (with :math:`\tilde\eta = \eta/\rho^2`).

    ``"momentum"``: heavy ball :math:`x_{t+1} = a x_t - \mu x_{t-1} - \eta\nabla f(x_t)`,
    :math:`a = 1+\mu-\eta\lambda`, linearised at the minimum: the tangent coordinate obeys
    :math:`y_{t+1} = (a - E)y_t - \mu y_{t-1}` and the norm :math:`\rho_t \propto \alpha^t` with
    :math:`\alpha` the larger root of :math:`\alpha^2 - a\alpha + \mu = 0`; the angle
    :math:`\theta_t = y_t/\rho_t \propto z^t` then has the characteristic polynomial
    :math:`\alpha^2z^2 - \alpha(a-E)z + \mu`, which gets the root :math:`z = -1` at the returned
    :math:`E`. Both equal :func:`theory.stability.projected_stability_threshold`.
    """
    h, rho, th, E, z = sp.symbols("h rho theta E z", positive=True)
    x1, x2 = sp.symbols("x1 x2", real=True)
    f = h / 2 * x2**2 / (x1**2 + x2**2)
    point = {x1: rho * sp.cos(th), x2: rho * sp.sin(th)}
    step = [((1 - eta * lam) * v - eta * sp.diff(f, v)).subs(point) for v in (x1, x2)]
    slope = sp.diff(sp.atan2(step[1], step[0]), th).subs(th, 0)
    slope = sp.simplify(slope.subs(h, E * rho**2 / eta))
    sgd = sp.solve(sp.Eq(slope, -1), E)
    a = 1 + mu - eta * lam
    alpha = (a + sp.sqrt(a**2 - 4 * mu)) / 2
    char = alpha**2 * z**2 - alpha * (a - E) * z + mu
    momentum = sp.solve(sp.Eq(char.subs(z, -1), 0), E)
    if len(sgd) != 1 or len(momentum) != 1:
        raise RuntimeError(f"expected one threshold each, got {sgd} and {momentum}")
    return {"sgd": sp.simplify(sgd[0]), "momentum": sp.simplify(momentum[0])}
