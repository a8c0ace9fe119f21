import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import symbolic as S
from theory.dynamics import angular_update, norm_trajectory, sgd_step
from theory.equilibrium import (
    approach_steps,
    equilibrium_angular_update,
    equilibrium_effective_lr,
    equilibrium_norm,
    relaxation_time,
)
from theory.equivalences import texp_alpha
from theory.stability import predicted_period_length

hyper = dict(eta=st.floats(1e-3, 2.0), lam=st.floats(1e-4, 0.2), G=st.floats(1e-2, 10.0))


@settings(max_examples=40, deadline=None)
@given(**hyper)
def test_equilibrium_is_fixed_point_of_recurrence(eta, lam, G):
    rho = equilibrium_norm(eta, lam, G)
    nxt = norm_trajectory(rho**2, [G**2], eta, lam)[1]
    assert nxt == pytest.approx(rho**2, rel=1e-12)
    assert equilibrium_effective_lr(eta, lam, G) == pytest.approx(np.sqrt(eta * lam * (2 - eta * lam)) / G, rel=1e-12)


def test_recurrence_converges_to_equilibrium_from_far_away():
    eta, lam, G = 0.5, 2e-3, 0.7
    traj = norm_trajectory(100.0, np.full(20_000, G**2), eta, lam)
    assert np.sqrt(traj[-1]) == pytest.approx(equilibrium_norm(eta, lam, G), rel=1e-9)


def _tangent_noise_run(eta, lam, mu, G, steps, d, seed):
    """SGD + WD with random unit-sphere gradients of norm G (uncorrelated between steps)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(d)
    v, norms, angles = None, [], []
    for _ in range(steps):
        r = np.linalg.norm(x)
        g = rng.standard_normal(d)
        g -= (g @ x) / r**2 * x
        g *= G / (np.linalg.norm(g) * r)
        x_new, v = sgd_step(x, g, eta, lam, momentum=mu, velocity=v)
        angles.append(angular_update(x, x_new))
        norms.append(np.linalg.norm(x_new))
        x = x_new
    return np.array(norms), np.array(angles)


def test_angular_update_without_momentum_is_exact_at_equilibrium():
    eta, lam, G = 0.2, 5e-3, 1.3
    norms, angles = _tangent_noise_run(eta, lam, 0.0, G, 6000, 50, seed=0)
    # after ~6 relaxation times the norm sits at equilibrium and the angle is arccos(1 - eta*lam)
    assert norms[-1] == pytest.approx(equilibrium_norm(eta, lam, G), rel=1e-6)
    assert angles[-1] == pytest.approx(equilibrium_angular_update(eta, lam), rel=1e-5)


@pytest.mark.parametrize("eta,lam,mu", [(0.1, 1e-2, 0.9), (1.0, 0.2, 0.5), (0.5, 0.2, 0.9)])
def test_momentum_equilibrium_matches_simulation(eta, lam, mu):
    """Random tangent gradients in d = 4000: the exact fixed point to ~1e-3, also at large eta*lam,
    where the leading-order forms eta*G^2/(2 lam (1-mu)) and sqrt(2 eta lam/(1+mu)) are off."""
    G = 1.0
    norms, angles = _tangent_noise_run(eta, lam, mu, G, 3000 if eta * lam > 0.01 else 12_000, 4000, seed=1)
    tail = slice(len(norms) // 2, None)
    rho, angle = np.mean(norms[tail]), np.mean(angles[tail])
    assert rho == pytest.approx(equilibrium_norm(eta, lam, G, momentum=mu), rel=2e-3)
    assert angle == pytest.approx(equilibrium_angular_update(eta, lam, momentum=mu), rel=2e-3)
    # and it is *not* the momentum-free value (the test can tell them apart)
    assert abs(rho / equilibrium_norm(eta, lam, G) - 1) > 0.05
    if eta * lam > 0.1:   # nor the leading order in eta*lam
        assert abs(rho / (eta * G**2 / (2 * lam * (1 - mu))) ** 0.25 - 1) > 0.01
        assert abs(angle / np.sqrt(2 * eta * lam / (1 + mu)) - 1) > 0.005


@settings(max_examples=30, deadline=None)
@given(eta=st.floats(0.1, 2.0), lam=st.floats(0.01, 0.45), G=st.floats(1e-2, 10.0), mu=st.floats(0.0, 0.95))
def test_momentum_equilibrium_is_fixed_point_of_moment_recurrence(eta, lam, G, mu):
    """Iterate the second moments P = |x|^2, C = <x_t, x_{t-1}> of heavy ball with uncorrelated
    tangent gradients (numerically, no closed form) until they settle (eta*lam >= 1e-3 settles
    within the loop)."""
    a = 1 + mu - eta * lam
    P = Pprev = 1.0
    C = a / (1 + mu)
    for _ in range(100_000):
        P, Pprev, C = a * a * P + mu * mu * Pprev - 2 * a * mu * C + eta**2 * G**2 / P, P, a * P - mu * C
        if abs(P - Pprev) <= 1e-15 * P:
            break
    assert np.sqrt(P) == pytest.approx(equilibrium_norm(eta, lam, G, momentum=mu), rel=1e-9)
    assert np.arccos(C / P) == pytest.approx(equilibrium_angular_update(eta, lam, momentum=mu), rel=1e-7)


@pytest.mark.parametrize("fn", [lambda mu: equilibrium_norm(1.0, 0.2, 1.0, mu),
                                lambda mu: equilibrium_effective_lr(1.0, 0.2, 1.0, mu),
                                lambda mu: equilibrium_angular_update(1.0, 0.2, mu)])
def test_continuous_in_momentum_at_zero(fn):
    """eta*lam = 0.2: mu = 0 and mu = 1e-12 agree (a switch of formula at mu = 0 gave a 2.7 % jump)."""
    assert fn(1e-12) == pytest.approx(fn(0.0), rel=1e-10)
    assert fn(1e-3) != pytest.approx(fn(0.0), rel=1e-5)      # but it does depend on mu


@settings(max_examples=40, deadline=None)
@given(eta=st.floats(0.1, 2.0), eta_lam=st.floats(1e-3, 0.1), G=st.floats(0.0, 3.0),
       ratio=st.floats(1.05, 3.0), above=st.floats(1.02, 2.0))
def test_approach_steps_counts_the_norm_recurrence(eta, eta_lam, G, ratio, above):
    """Steps of u -> (1-eta lam)^2 u + eta^2 G^2/u from rho_start until rho <= rho_end."""
    lam = eta_lam / eta
    star = equilibrium_norm(eta, lam, G) if G > 0 else 0.0
    rho_end = max(star * above, 0.1)
    rho_start = rho_end * ratio
    a, b = (1 - eta * lam) ** 2, (eta * G) ** 2     # the map of theory.dynamics.next_sq_norm
    assert norm_trajectory(2.0, [G**2], eta, lam)[1] == pytest.approx(a * 2.0 + b / 2.0, rel=1e-14)
    u, n = rho_start**2, 0
    while u > rho_end**2:
        u, n = a * u + b / u, n + 1
    assert approach_steps(eta, lam, G, rho_start, rho_end) == pytest.approx(n, abs=1.0, rel=0.01)
    if G == 0:   # no gradient: the pure-WD decay time
        assert approach_steps(eta, lam, 0.0, rho_start, rho_end) == pytest.approx(
            predicted_period_length(eta, lam, ratio), rel=1e-9)


def test_approach_steps_is_infinite_below_equilibrium():
    star = equilibrium_norm(1.0, 2e-3, 1.6)
    assert approach_steps(1.0, 2e-3, 1.6, 2 * star, star * (1 - 1e-9)) == np.inf
    assert np.isfinite(approach_steps(1.0, 2e-3, 1.6, 2 * star, 1.01 * star))
    u = norm_trajectory((2 * star) ** 2, np.full(20_000, 1.6**2), 1.0, 2e-3)   # never gets there
    assert np.all(np.sqrt(u) > star * (1 - 1e-12)) and np.sqrt(u[-1]) == pytest.approx(star, rel=1e-9)
    with pytest.raises(ValueError, match="rho_start"):
        approach_steps(1.0, 2e-3, 1.6, 1.0, 2.0)


def test_relaxation_time_matches_recurrence():
    eta, lam, G = 1.0, 1e-3, 0.5
    rho2 = equilibrium_norm(eta, lam, G) ** 2
    traj = norm_trajectory(rho2 * 1.01, np.full(3000, G**2), eta, lam)
    dev = np.abs(traj / rho2 - 1)
    tau_measured = -1 / np.polyfit(np.arange(200, 2000), np.log(dev[200:2000]), 1)[0]
    assert tau_measured == pytest.approx(relaxation_time(eta, lam), rel=1e-3)
    assert relaxation_time(eta, lam) == pytest.approx(1 / (4 * eta * lam), rel=0.01)


def test_sympy_derivations_agree_with_closed_forms():
    syms = S.SYMBOLS
    eta, lam, G, mu = syms["eta"], syms["lam"], syms["G"], syms["mu"]
    rng = np.random.default_rng(0)
    ustar = sp.lambdify((eta, lam, G), S.equilibrium_sq_norm())
    mom = S.momentum_equilibrium()
    norm4 = sp.lambdify((eta, lam, G, mu), mom["norm4"])
    angle = sp.lambdify((eta, lam, mu), mom["angle"])
    roots = [sp.lambdify((eta, lam, mu), r) for r in S.texp_alpha_roots()]
    for _ in range(20):
        e, l, g, m = rng.uniform(0.01, 1), rng.uniform(1e-4, 0.05), rng.uniform(0.1, 3), rng.uniform(0, 0.9)
        assert ustar(e, l, g) == pytest.approx(equilibrium_norm(e, l, g) ** 2, rel=1e-12)
        assert norm4(e, l, g, m) == pytest.approx(equilibrium_norm(e, l, g, m) ** 4, rel=1e-12)
        assert angle(e, l, m) == pytest.approx(equilibrium_angular_update(e, l, m), rel=1e-12)
        if e * l <= (1 - np.sqrt(m)) ** 2:
            assert max(r(e, l, m) for r in roots) == pytest.approx(texp_alpha(e, l, m), rel=1e-12)
    # the momentum fixed point is the plain one at mu = 0 and Wan et al.'s to leading order in eta*lam
    assert sp.simplify(mom["norm4"].subs(mu, 0) - S.equilibrium_sq_norm() ** 2) == 0
    assert sp.simplify(mom["cos_angle"].subs(mu, 0) - S.equilibrium_cos_angle()) == 0
    s = sp.symbols("s", positive=True)
    lead = sp.limit((mom["norm4"] * 2 * lam * (1 - mu) / (eta * G**2)).subs(lam, s / eta), s, 0)
    assert sp.simplify(lead - 1) == 0
    assert sp.simplify(S.equilibrium_cos_angle() - (1 - eta * lam)) == 0
    assert sp.simplify(S.relaxation_multiplier() - (2 * (1 - eta * lam) ** 2 - 1)) == 0
    series = S.equilibrium_angle_series(2)
    assert series.subs(sp.Symbol("s", positive=True), sp.Rational(1, 10**6)).evalf() == pytest.approx(np.sqrt(2e-6), rel=1e-6)


@pytest.mark.parametrize("args", [(0.1, 0.0, 1.0), (0.1, 0.1, 0.0), (-0.1, 0.1, 1.0), (0.1, 0.1, np.nan)])
def test_bad_inputs(args):
    with pytest.raises(ValueError):
        equilibrium_norm(*args)


def test_bad_momentum_and_relaxation():
    with pytest.raises(ValueError, match="momentum"):
        equilibrium_angular_update(0.1, 0.1, momentum=1.2)
    with pytest.raises(ValueError):
        relaxation_time(1.0, 0.5)
