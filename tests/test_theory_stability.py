import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from si_functions import quadratic_grad_numpy, spd_matrix

from theory.dynamics import effective_lr, sgd_step
from theory.stability import (
    critical_norm,
    is_unstable,
    norm_decay_factor,
    predicted_period_frequency,
    predicted_period_length,
    riemannian_hessian,
    sphere_sharpness,
    stability_margin,
)


def _quadratic(d, seed):
    A = spd_matrix(d, np.random.default_rng(seed), lo=0.5, hi=4.0)
    w, V = np.linalg.eigh(A)
    return A, w, V


def _autograd_hessian(A, x):
    At = torch.tensor(A)
    f = lambda z: 0.5 * (z @ At @ z) / (z @ z)
    return torch.autograd.functional.hessian(f, torch.tensor(x)).numpy()


@pytest.mark.parametrize("rho", [0.3, 1.0, 7.0])
def test_sharpness_of_normalised_quadratic_at_minimum(rho):
    A, w, V = _quadratic(6, 0)
    x = rho * V[:, 0]
    assert sphere_sharpness(_autograd_hessian(A, x), x) == pytest.approx(w[-1] - w[0], rel=1e-10)
    # the radial direction is in the kernel of the Riemannian Hessian
    np.testing.assert_allclose(riemannian_hessian(_autograd_hessian(A, x), x) @ V[:, 0], 0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(rho=st.floats(0.2, 3.0), eta=st.floats(0.05, 2.0), seed=st.integers(0, 100))
def test_linear_stability_of_gd_matches_condition(rho, eta, seed):
    """One GD step multiplies a small top-eigendirection offset by 1 - eta*h/rho^2."""
    A, w, V = _quadratic(5, seed)
    h = w[-1] - w[0]
    grad = quadratic_grad_numpy(A)
    delta = 1e-7
    x = rho * (V[:, 0] + delta * V[:, -1])
    x1, _ = sgd_step(x, grad(x), eta, 0.0)
    mult = (x1 @ V[:, -1]) / (x1 @ V[:, 0]) / delta
    assert mult == pytest.approx(1 - effective_lr(eta, rho) * h, rel=1e-4, abs=1e-6)
    assert is_unstable(effective_lr(eta, rho), h) == (abs(mult) > 1) or abs(abs(mult) - 1) < 1e-4
    assert (rho < critical_norm(eta, h)) == is_unstable(effective_lr(eta, rho), h)


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9])
def test_heavy_ball_threshold(mu):
    """Scalar quadratic h*z^2/2: heavy ball is stable iff eta*h < 2(1+mu)."""
    h = 1.0
    for margin, expect_unstable in [(0.98, False), (1.02, True)]:
        eta = margin * 2 * (1 + mu) / h
        z, v = np.array([1.0]), None
        for _ in range(3000):
            z, v = sgd_step(z, h * z, eta, 0.0, momentum=mu, velocity=v)
        assert (abs(z[0]) > 1) == expect_unstable
        assert is_unstable(eta, h, momentum=mu) == expect_unstable
        assert stability_margin(eta, h, momentum=mu) == pytest.approx(margin)


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9])
def test_norm_decay_factor_with_zero_gradient(mu):
    eta, lam = 0.1, 5e-3
    x, v = np.ones(3), None
    norms = []
    for _ in range(4000):
        x, v = sgd_step(x, np.zeros(3), eta, lam, momentum=mu, velocity=v)
        norms.append(np.linalg.norm(x))
    assert norms[-1] / norms[-2] == pytest.approx(norm_decay_factor(eta, lam, mu), rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(eta=st.floats(0.05, 2.0), lam=st.floats(1e-4, 1e-2), ratio=st.floats(1.05, 20.0))
def test_period_length_counts_decay_steps(eta, lam, ratio):
    """WD alone (zero gradient: one theory.dynamics.sgd_step multiplies the norm by its factor f)
    takes the norm from rho_max down to rho_max/ratio in n steps: n - 1 < T <= n."""
    f = np.linalg.norm(sgd_step(np.array([3.0, 4.0]), np.zeros(2), eta, lam)[0]) / 5.0
    rho, n = ratio, 0
    while rho > 1.0:
        rho *= f
        n += 1
    T = predicted_period_length(eta, lam, ratio)
    assert n - 1 - 1e-9 * n < T <= n + 1e-9 * n
    assert predicted_period_frequency(eta, lam, ratio) * T == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("mu", [0.5, 0.9])
def test_period_length_with_momentum_counts_decay_steps(mu):
    """Heavy ball with zero gradient, started on its slow mode (x_{t-1} = x_t/alpha): the norm
    falls by the ratio in T steps (a momentum-free alpha would give a 2-10x longer period)."""
    eta, lam, ratio = 0.1, 5e-3, 3.0
    alpha = norm_decay_factor(eta, lam, mu)
    x = np.array([ratio])
    v = (1 / alpha - 1) * x / eta            # velocity of the pure decay x_t = alpha^t x_0
    n = 0
    while x[0] > 1.0:
        x, v = sgd_step(x, np.zeros(1), eta, lam, momentum=mu, velocity=v)
        n += 1
    T = predicted_period_length(eta, lam, ratio, momentum=mu)
    assert n - 1 < T <= n + 1e-9
    assert T < 0.6 * predicted_period_length(eta, lam, ratio)


def test_period_depends_on_eta_lam_product():
    T = [predicted_period_length(eta, 1e-3 / eta, 3.0) for eta in (0.01, 0.1, 1.0)]
    np.testing.assert_allclose(T, T[0])
    assert predicted_period_length(1.0, 2e-3, 3.0) == pytest.approx(T[0] / 2, rel=1e-3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="norm_ratio"):
        predicted_period_length(1.0, 1e-3, 0.9)
    with pytest.raises(ValueError):
        predicted_period_length(1.0, 0.0, 2.0)
    with pytest.raises(ValueError):
        critical_norm(1.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        riemannian_hessian(np.eye(3), np.ones(4))
    with pytest.raises(ValueError):
        riemannian_hessian(np.eye(3), np.zeros(3))


# ---------------------------------------------------------------- the SGD + WD step's own threshold
def _angle_growth(E, eta, lam, mu, steps=400):
    """Heavy-ball SGD + WD on f(x) = h/2 * x2^2/|x|^2 in float64, h re-set every step so that
    eta*h/rho^2 = E stays fixed; returns log|theta_end / theta_start| per step."""
    x = np.array([1.0, 1e-9])
    prev = x.copy()
    for _ in range(steps):
        rho2 = x @ x
        h = E * rho2 / eta
        grad = np.array([-h * x[1] ** 2 * x[0], h * x[1] * x[0] ** 2]) / rho2**2
        x, prev = (1 + mu - eta * lam) * x - mu * prev - eta * grad, x
    return np.log(abs(np.arctan2(x[1], x[0])) / 1e-9) / steps


@pytest.mark.parametrize("eta,lam,mu", [(1.0, 0.05, 0.0), (0.5, 0.1, 0.0), (1.0, 0.05, 0.5), (1.0, 0.005, 0.8)])
def test_projected_threshold_matches_simulation(eta, lam, mu):
    from theory.stability import projected_stability_threshold, stability_threshold

    thr = projected_stability_threshold(eta, lam, mu)
    assert _angle_growth(thr * 0.99, eta, lam, mu) < 0 < _angle_growth(thr * 1.01, eta, lam, mu)
    if eta * lam >= 0.05:   # the sphere-GD threshold 2(1+mu) is then measurably wrong: unstable below it
        assert _angle_growth(stability_threshold(mu) * 0.99, eta, lam, mu) > 0


def test_projected_threshold_derived_by_sympy():
    import sympy as sp

    from theory import symbolic as S
    from theory.stability import projected_stability_threshold

    e, l, m = S.SYMBOLS["eta"], S.SYMBOLS["lam"], S.SYMBOLS["mu"]
    derived = S.projected_threshold()
    assert sp.simplify(derived["momentum"] - 2 * (1 + m - e * l)) == 0
    assert sp.simplify(derived["sgd"] - derived["momentum"].subs(m, 0)) == 0
    for eta, lam, mu in [(1.0, 1e-3, 0.0), (0.3, 0.2, 0.5)]:
        value = float(derived["momentum"].subs({e: eta, l: lam, m: mu}))
        assert projected_stability_threshold(eta, lam, mu) == pytest.approx(value, rel=1e-12)
    with pytest.raises(ValueError, match="eta\\*lam must be < 1"):
        projected_stability_threshold(10.0, 0.2)
    with pytest.raises(ValueError, match="complex alpha"):
        projected_stability_threshold(2.0, 0.01, 0.8)
