"""Projected SGD at a fixed effective LR (theory.sphere) against independent step-by-step
simulations: norms kept to rounding, the exact relations to WRS and to WD, the angle per step and
the stability bound."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from si_functions import SI_FUNCTIONS, quadratic_grad_numpy, spd_matrix

from theory.dynamics import angular_update, sgd_step, wrs_step
from theory.equivalences import wrs_lr_from_wd
from theory.sphere import block_norms, project_to_sphere, sphere_angular_update, sphere_step
from theory.stability import critical_effective_lr

QUAD, BN_LINEAR, BN_MLP = SI_FUNCTIONS
MLP_BLOCKS = (24, 36)          # the two weight matrices of si_functions.bn_mlp (4x6 and 6x6)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), log_elr=st.floats(-4, 3), log_scale=st.floats(-3, 3),
       split=st.integers(1, 9))
def test_projected_step_keeps_every_norm_to_rounding(seed, log_elr, log_scale, split):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 10)) * 10.0**log_scale
    g = rng.standard_normal((3, 10)) * 10.0 ** rng.uniform(-3, 3)
    for blocks in (None, (split, 10 - split)):
        y = sphere_step(x, g, 10.0**log_elr, blocks=blocks)
        np.testing.assert_allclose(block_norms(y, blocks), block_norms(x, blocks), rtol=4e-16 * 8)
        yt = sphere_step(torch.tensor(x), torch.tensor(g), 10.0**log_elr, blocks=blocks)
        np.testing.assert_allclose(yt.numpy(), y, rtol=1e-12)


def test_block_norms_and_projection_match_an_explicit_split():
    x = np.random.default_rng(0).standard_normal((2, 7))
    expect = np.stack([np.linalg.norm(x[:, :3], axis=1), np.linalg.norm(x[:, 3:], axis=1)], 1)
    np.testing.assert_allclose(block_norms(x, (3, 4)), expect, rtol=1e-15)
    y = project_to_sphere(x, np.array([[2.0, 5.0]]), (3, 4))
    np.testing.assert_allclose(y[:, :3], 2 * x[:, :3] / expect[:, :1], rtol=1e-15)
    np.testing.assert_allclose(y[:, 3:], 5 * x[:, 3:] / expect[:, 1:], rtol=1e-15)
    with pytest.raises(ValueError, match="blocks"):
        block_norms(x, (3, 3))
    with pytest.raises(ValueError, match="eff_lr"):
        sphere_step(x, x, -1.0)


@pytest.mark.parametrize("fn", [QUAD, BN_LINEAR, BN_MLP], ids=repr)
def test_direction_does_not_depend_on_the_radius(fn):
    """For SI f the projected step moves u = x/r as SGD on the unit sphere with LR eta_tilde."""
    u = _unit(np.random.default_rng(3).standard_normal(fn.dim))
    for r in (0.01, 7.0, 300.0):
        a, b = u.copy(), r * u
        for _ in range(50):
            a, b = sphere_step(a, fn.grad(a), 0.02), sphere_step(b, fn.grad(b), 0.02)
        assert np.linalg.norm(b / r - a) < 1e-10       # |a| = 1: relative to the vector


@pytest.mark.parametrize("fn", [QUAD, BN_LINEAR, BN_MLP], ids=repr)
def test_wrs_is_the_projected_step_at_eta_over_r_squared(fn):
    """Relation 1: WRS (LR eta, norm r) = fixed ELR eta/r^2, over 300 steps (at a small ELR: the
    ReLU network amplifies rounding differences, after which only statistics would agree)."""
    eta, r = 0.02, 3.0
    x0 = r * _unit(np.random.default_rng(1).standard_normal(fn.dim))
    a, b = x0.copy(), x0.copy()
    for _ in range(300):
        a, _ = wrs_step(a, fn.grad(a), eta, target_norm=r)
        b = sphere_step(b, fn.grad(b), eta / r**2)
    assert np.linalg.norm(b - a) / r < 1e-9


@pytest.mark.parametrize("fn", [QUAD, BN_MLP], ids=repr)
def test_wd_direction_is_the_projected_step_at_the_time_varying_elr(fn):
    """Relation 2: SGD + WD moves x/|x| as the projected step with ELR eta/((1-eta*lam) rho_t^2)."""
    eta, lam = 0.02, 0.1                       # contracting, as in test_theory_equivalences
    x = 3.0 * _unit(np.random.default_rng(2).standard_normal(fn.dim))
    u = _unit(x)
    for _ in range(300):
        elr = wrs_lr_from_wd(eta, lam, x @ x, target_norm=1.0)
        x, _ = sgd_step(x, fn.grad(x), eta, lam)
        u = sphere_step(u, fn.grad(u), elr)
    assert np.linalg.norm(u - _unit(x)) < 1e-9


def test_per_layer_step_keeps_each_layer_on_its_sphere_and_follows_blockwise_wrs():
    """Per layer: each SI matrix of the BN MLP on its own sphere, each at ELR eta_tilde; equal to WRS
    done block by block with LR eta_tilde * r_k^2."""
    fn, elr = BN_MLP, 0.005
    x0 = np.random.default_rng(4).standard_normal(fn.dim)
    x = x0.copy()
    for _ in range(300):
        x = sphere_step(x, fn.grad(x), elr, blocks=MLP_BLOCKS)
    np.testing.assert_allclose(block_norms(x, MLP_BLOCKS), block_norms(x0, MLP_BLOCKS), rtol=1e-13)
    ref, cut = x0.copy(), MLP_BLOCKS[0]
    for _ in range(300):
        g = fn.grad(ref)
        parts = [(ref[:cut], g[:cut]), (ref[cut:], g[cut:])]
        ref = np.concatenate([wrs_step(p, q, elr * (p @ p), target_norm=np.linalg.norm(p))[0] for p, q in parts])
    assert np.linalg.norm(x - ref) / np.linalg.norm(x0) < 1e-10


@pytest.mark.parametrize("fn", [QUAD, BN_LINEAR, BN_MLP], ids=repr)
def test_angle_of_a_projected_step_is_arctan_elr_times_effective_gradient(fn):
    """Relation 3: theta = arctan(eta_tilde * rho * |grad f|), measured by Kahan's formula."""
    rng = np.random.default_rng(5)
    for elr in (1e-3, 0.1, 10.0):
        x = 4.0 * _unit(rng.standard_normal(fn.dim))
        g = fn.grad(x)
        y = sphere_step(x, g, elr)
        assert angular_update(x, y) == pytest.approx(sphere_angular_update(elr, 4.0 * np.linalg.norm(g)), rel=1e-12)


def test_projected_gd_converges_to_a_minimum_iff_elr_below_two_over_sharpness():
    """Relation 4: near the minimum of the normalised quadratic (sphere sharpness h = a_max - a_min),
    projected GD contracts for eta_tilde h < 2 and is repelled for eta_tilde h > 2."""
    A = spd_matrix(8, np.random.default_rng(6), lo=0.5, hi=3.0)
    evals, evecs = np.linalg.eigh(A)
    grad = quadratic_grad_numpy(A)
    elr_c = critical_effective_lr(evals[-1] - evals[0])
    assert elr_c == pytest.approx(2 / 2.5)
    bottom = evecs[:, 0]
    start = _unit(bottom + 1e-4 * evecs[:, -1] + 1e-4 * evecs[:, 3])
    dist = {}
    for factor in (0.95, 1.05):
        x = start.copy()
        for _ in range(400):
            x = sphere_step(x, grad(x), factor * elr_c)
        dist[factor] = np.linalg.norm(x - np.sign(x @ bottom) * bottom)
    assert dist[0.95] < 1e-8 < 1e-5 < dist[1.05]
