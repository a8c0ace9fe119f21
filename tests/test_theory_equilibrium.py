import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st

from theory import symbolic as S
from theory.dynamics import angular_update, norm_trajectory, sgd_step
from theory.equilibrium import (equilibrium_angular_update, equilibrium_effective_lr, equilibrium_norm,
                                relaxation_time)
from theory.equivalences import texp_alpha

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


@pytest.mark.parametrize("mu", [0.5, 0.9])
def test_momentum_equilibrium_matches_simulation(mu):
    eta, lam, G = 0.1, 1e-2, 1.0   # eta*lam = 1e-3
    norms, angles = _tangent_noise_run(eta, lam, mu, G, 12_000, 4000, seed=1)
    tail = slice(6000, None)
    assert np.mean(norms[tail]) == pytest.approx(equilibrium_norm(eta, lam, G, momentum=mu), rel=0.02)
    assert np.mean(angles[tail]) == pytest.approx(equilibrium_angular_update(eta, lam, momentum=mu), rel=0.03)
    # and it is *not* the momentum-free value (the test can tell them apart)
    assert abs(np.mean(norms[tail]) / equilibrium_norm(eta, lam, G) - 1) > 0.1


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
    rng = np.random.default_rng(0)
    ustar = sp.lambdify((syms["eta"], syms["lam"], syms["G"]), S.equilibrium_sq_norm())
    mom = S.momentum_equilibrium()
    norm4 = sp.lambdify((syms["eta"], syms["lam"], syms["G"], syms["mu"]), mom["norm4"])
    angle = sp.lambdify((syms["eta"], syms["lam"], syms["mu"]), mom["angle"])
    roots = [sp.lambdify((syms["eta"], syms["lam"], syms["mu"]), r) for r in S.texp_alpha_roots()]
    for _ in range(20):
        eta, lam, G, mu = rng.uniform(0.01, 1), rng.uniform(1e-4, 0.05), rng.uniform(0.1, 3), rng.uniform(0, 0.9)
        assert ustar(eta, lam, G) == pytest.approx(equilibrium_norm(eta, lam, G) ** 2, rel=1e-12)
        assert norm4(eta, lam, G, mu) == pytest.approx(equilibrium_norm(eta, lam, G, mu) ** 4, rel=1e-12)
        assert angle(eta, lam, mu) == pytest.approx(equilibrium_angular_update(eta, lam, mu), rel=1e-12)
        if eta * lam <= (1 - np.sqrt(mu)) ** 2:
            assert max(r(eta, lam, mu) for r in roots) == pytest.approx(texp_alpha(eta, lam, mu), rel=1e-12)
    assert sp.simplify(S.equilibrium_cos_angle() - (1 - syms["eta"] * syms["lam"])) == 0
    s = syms["eta"] * syms["lam"]
    assert sp.simplify(S.relaxation_multiplier() - (2 * (1 - s) ** 2 - 1)) == 0
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
