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
    "momentum_equilibrium",
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


def _series_sum(term, k):
    r""":math:`\sum_{k\ge0}` of a sum of geometric terms :math:`c\,r^k` with :math:`|r|<1` (here :math:`r=\mu^a`)."""
    total = sp.Integer(0)
    for part in sp.Add.make_args(sp.expand(term)):
        ratio = sp.simplify(part.subs(k, k + 1) / part)
        if ratio.has(k):
            raise ValueError(f"not a geometric term in {k}: {part}")
        total += part.subs(k, 0) / (1 - ratio)
    return sp.simplify(total)


@lru_cache(maxsize=None)
def momentum_equilibrium():
    r"""Equilibrium of heavy-ball SGD + WD on the sphere, to leading order in :math:`\eta\lambda`.

    Model (spherical motion dynamics, Wan et al., 2021): gradients :math:`g_t \perp x_t` of
    norm :math:`\|g\| = G/\rho`, uncorrelated between steps; buffer
    :math:`v_t = \sum_k \mu^k(g_{t-k} + \lambda x_{t-k})`. The balance of
    :math:`\|x_{t+1}\|^2 - \|x_t\|^2 = -2\eta\langle x_t, v_t\rangle + \eta^2\|v_t\|^2 = 0` uses

    * radial WD part: :math:`\langle x_t, \sum_k\mu^k\lambda x_{t-k}\rangle \approx \lambda\rho^2/(1-\mu)`;
    * memory of past gradients: :math:`\langle x_t, g_{t-k}\rangle \approx -\eta\|g\|^2(1-\mu^k)/(1-\mu)`;
    * :math:`\|v_t\|^2 \approx \|g\|^2/(1-\mu^2)`.

    Returns a dict with the derived ``sq_norm`` (:math:`\rho^{*2}`), ``norm4``
    (:math:`\rho^{*4} = \eta G^2/(2\lambda(1-\mu))`) and ``angle``
    (:math:`\eta\|\sum_k\mu^k g_{t-k}\|/\rho = \sqrt{2\eta\lambda/(1+\mu)}`).
    """
    k = sp.symbols("k", integer=True, nonnegative=True)
    rho2, gsq = sp.symbols("rho2 gsq", positive=True)  # rho^2 and ||g||^2 = G^2/rho^2
    radial = lam * rho2 * _series_sum(mu**k, k)
    memory = -eta * gsq * _series_sum(mu**k * (1 - mu**k) / (1 - mu), k)
    v_sq = gsq * _series_sum(mu ** (2 * k), k)
    balance = sp.Eq(-2 * eta * (radial + memory) + eta**2 * v_sq, 0)
    sol = sp.solve(balance.subs(gsq, G**2 / rho2), rho2)
    sq_norm = [s for s in sol if s.subs({eta: 1, lam: sp.Rational(1, 100), G: 1, mu: sp.Rational(1, 2)}).is_positive][0]
    angle = sp.sqrt(eta**2 * (G**2 / sq_norm) * _series_sum(mu ** (2 * k), k) / sq_norm)
    return {"sq_norm": sp.simplify(sq_norm), "norm4": sp.simplify(sq_norm**2), "angle": sp.simplify(angle)}
