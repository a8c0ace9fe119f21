import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from si_functions import SI_FUNCTIONS

from theory.dynamics import (
    angular_update,
    effective_grad_norm,
    effective_lr,
    next_sq_norm,
    norm_trajectory,
    sgd_step,
    wrs_step,
)

fn_idx = st.integers(0, len(SI_FUNCTIONS) - 1)


@pytest.mark.parametrize("momentum,lam", [(0.0, 0.0), (0.0, 1e-2), (0.9, 5e-3)])
def test_sgd_step_matches_torch_optim(momentum, lam):
    """Our step vs torch.optim.SGD (an independent implementation) over 50 steps."""
    fn = SI_FUNCTIONS[2]
    x0 = np.random.default_rng(0).standard_normal(fn.dim)
    p = torch.nn.Parameter(torch.tensor(x0))
    opt = torch.optim.SGD([p], lr=0.3, momentum=momentum, weight_decay=lam)
    x, v = x0.copy(), None
    for _ in range(50):
        opt.zero_grad()
        fn.torch_f(p).backward()
        opt.step()
        x, v = sgd_step(x, fn.grad(x), 0.3, lam, momentum=momentum, velocity=v)
    np.testing.assert_allclose(x, p.detach().numpy(), rtol=1e-9, atol=1e-10)


def test_sgd_step_batched_and_torch():
    rng = np.random.default_rng(1)
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    eta, lam = np.array([[0.1], [0.2], [0.3], [0.4]]), np.full((4, 1), 1e-2)
    xn, _ = sgd_step(x, g, eta, lam)
    for i in range(4):
        np.testing.assert_allclose(xn[i], sgd_step(x[i], g[i], eta[i, 0], 1e-2)[0])
    xt, _ = sgd_step(torch.tensor(x), torch.tensor(g), torch.tensor(eta), torch.tensor(lam))
    np.testing.assert_allclose(xt.numpy(), xn)


@settings(max_examples=40, deadline=None)
@given(idx=fn_idx, seed=st.integers(0, 10_000), eta=st.floats(1e-3, 5.0), lam=st.floats(0, 0.15),
       log_scale=st.floats(-3, 3))
def test_norm_recurrence_is_exact(idx, seed, eta, lam, log_scale):
    fn = SI_FUNCTIONS[idx]
    x = np.random.default_rng(seed).standard_normal(fn.dim) * np.exp(log_scale)
    g = fn.grad(x)
    x_next, _ = sgd_step(x, g, eta, lam)
    np.testing.assert_allclose(x_next @ x_next, next_sq_norm(x @ x, g @ g, eta, lam), rtol=1e-12)


def test_norm_trajectory_follows_gd_run():
    fn = SI_FUNCTIONS[1]
    x = np.random.default_rng(2).standard_normal(fn.dim)
    eta, lam = 0.5, 1e-2
    sq, geff = [x @ x], []
    for _ in range(300):
        g = fn.grad(x)
        geff.append(effective_grad_norm(np.linalg.norm(g), np.linalg.norm(x)) ** 2)
        x, _ = sgd_step(x, g, eta, lam)
        sq.append(x @ x)
    np.testing.assert_allclose(norm_trajectory(sq[0], geff, eta, lam), sq, rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(idx=fn_idx, seed=st.integers(0, 1000), rho=st.floats(0.1, 10.0))
def test_effective_grad_norm_is_gradient_on_unit_sphere(idx, seed, rho):
    fn = SI_FUNCTIONS[idx]
    u = np.random.default_rng(seed).standard_normal(fn.dim)
    u /= np.linalg.norm(u)
    measured = effective_grad_norm(np.linalg.norm(fn.grad(rho * u)), rho)
    np.testing.assert_allclose(measured, np.linalg.norm(fn.grad(u)), rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(idx=fn_idx, seed=st.integers(0, 1000), rho=st.floats(0.2, 5.0), eff=st.floats(1e-3, 1.0))
def test_effective_lr_sets_the_direction(idx, seed, rho, eff):
    """Without WD, steps from x = rho*u with LR eta and from u with LR eta/rho^2 point the same way."""
    fn = SI_FUNCTIONS[idx]
    u = np.random.default_rng(seed).standard_normal(fn.dim)
    u /= np.linalg.norm(u)
    eta = eff * rho**2
    assert effective_lr(eta, rho) == pytest.approx(eff)
    a, _ = sgd_step(rho * u, fn.grad(rho * u), eta, 0.0)
    b, _ = sgd_step(u, fn.grad(u), effective_lr(eta, rho), 0.0)
    np.testing.assert_allclose(a / np.linalg.norm(a), b / np.linalg.norm(b), atol=1e-12)


@pytest.mark.parametrize("theta", [1e-9, 1e-6, 1e-3, 0.5, 2.0, 3.1])
def test_angular_update_recovers_known_angle(theta):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(50)
    a /= np.linalg.norm(a)
    e = rng.standard_normal(50)
    e -= (e @ a) * a
    e /= np.linalg.norm(e)
    b = 3.7 * (np.cos(theta) * a + np.sin(theta) * e)
    assert angular_update(2 * a, b) == pytest.approx(theta, rel=1e-9)
    assert float(angular_update(torch.tensor(2 * a), torch.tensor(b))) == pytest.approx(theta, rel=1e-9)


def test_angular_update_batched():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    want = [np.arccos(x[i] @ y[i] / np.linalg.norm(x[i]) / np.linalg.norm(y[i])) for i in range(5)]
    np.testing.assert_allclose(angular_update(x, y), want, rtol=1e-10)


def test_wrs_step_projects_a_plain_step():
    fn = SI_FUNCTIONS[0]
    x = np.random.default_rng(3).standard_normal(fn.dim)
    y, _ = wrs_step(x, fn.grad(x), 0.2, target_norm=2.5)
    z, _ = sgd_step(x, fn.grad(x), 0.2, 0.0)
    assert np.linalg.norm(y) == pytest.approx(2.5)
    np.testing.assert_allclose(y / 2.5, z / np.linalg.norm(z), atol=1e-14)


@pytest.mark.parametrize("eta,lam", [(0.0, 0.1), (-1.0, 0.1), (1.0, -0.1), (10.0, 0.1), (np.nan, 0.1)])
def test_bad_hyperparameters(eta, lam):
    with pytest.raises(ValueError):
        sgd_step(np.ones(3), np.ones(3), eta, lam)
    with pytest.raises(ValueError):
        next_sq_norm(1.0, 1.0, eta, lam)


def test_bad_array_hyperparameters_name_the_offender():
    with pytest.raises(ValueError, match=r"eta\*lam = 2.0"):
        sgd_step(np.ones((1, 2)), np.ones((1, 2)), np.array([[10.0]]), np.array([[0.2]]))
    with pytest.raises(ValueError, match=r"index \(2, 0\)"):
        sgd_step(np.ones((3, 2)), np.ones((3, 2)), np.array([[1.0], [2.0], [20.0]]), 0.1)


def test_bad_shapes_and_values():
    with pytest.raises(ValueError, match="shape"):
        sgd_step(np.ones(3), np.ones(4), 0.1, 0.0)
    with pytest.raises(ValueError, match="shape"):
        sgd_step(np.ones(3), np.ones(3), 0.1, 0.0, momentum=0.9, velocity=np.ones(2))
    with pytest.raises(ValueError, match="momentum"):
        sgd_step(np.ones(3), np.ones(3), 0.1, 0.0, momentum=1.0)
    with pytest.raises(ValueError):
        effective_lr(0.1, 0.0)
    with pytest.raises(ValueError):
        next_sq_norm(np.nan, 1.0, 0.1, 0.1)
    with pytest.raises(ValueError, match="shapes"):
        angular_update(np.ones(3), np.ones(4))
