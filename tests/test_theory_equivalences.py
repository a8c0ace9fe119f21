"""Equivalences on 1,000-step trajectories against independent step-by-step simulations."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from si_functions import SI_FUNCTIONS

from theory.dynamics import next_sq_norm, sgd_step, wrs_step
from theory.equivalences import rescaled_hyperparameters, texp_alpha, texp_schedule, wrs_lr_from_wd

STEPS = 1000
QUAD, BN_LINEAR, BN_MLP = SI_FUNCTIONS


def _max_rel_err(a, b):
    """Largest per-step relative distance max_t |a_t - b_t| / |b_t| of two trajectories."""
    return np.max(np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1))


def _run(fn, x0, eta, lam, steps=STEPS, momentum=0.0):
    x, v, xs = x0.copy(), None, [x0.copy()]
    for _ in range(steps):
        x, v = sgd_step(x, fn.grad(x), eta, lam, momentum=momentum, velocity=v)
        xs.append(x)
    return np.array(xs)


@settings(max_examples=6, deadline=None)
@given(c=st.floats(0.01, 100.0), seed=st.integers(0, 100))
def test_scaling_equivalence(c, seed):
    """Stable regime (no destabilisation in 1,000 steps): x'_t = sqrt(c) x_t to rounding."""
    fn = QUAD
    x0 = np.random.default_rng(seed).standard_normal(fn.dim)
    eta, lam = 0.05, 2e-3
    a = _run(fn, x0, eta, lam)
    eta_c, lam_c, x0_c = rescaled_hyperparameters(eta, lam, x0, c)
    assert eta_c * lam_c == pytest.approx(eta * lam)
    b = _run(fn, x0_c, eta_c, lam_c)
    np.testing.assert_allclose(b, np.sqrt(c) * a, rtol=1e-9, atol=0)


@pytest.mark.parametrize("k", [-3, 2])
def test_scaling_equivalence_is_bitwise_for_powers_of_four(k):
    """With c = 4**k every scaling is by a power of two, exact in floating point: the runs agree
    bit for bit even through destabilisations, where rounding differences would otherwise grow."""
    fn = QUAD
    x0 = np.random.default_rng(1).standard_normal(fn.dim)
    eta, lam = 0.8, 2e-3
    a = _run(fn, x0, eta, lam)
    eta_c, lam_c, x0_c = rescaled_hyperparameters(eta, lam, x0, 4.0**k)
    b = _run(fn, x0_c, eta_c, lam_c)
    assert np.linalg.norm(a, axis=1).max() / np.linalg.norm(a, axis=1).min() > 1.5  # it went unstable
    np.testing.assert_array_equal(b, 2.0**k * a)


@pytest.mark.parametrize("fn", [QUAD, BN_LINEAR, BN_MLP], ids=repr)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_texp_equivalence(fn, momentum):
    # The norm decays by e^-1 (momentum amplifies WD by 1/(1-mu), hence the smaller eta) and the
    # TEXP learning rate grows 7.5-fold over the run. The effective LR stays small, so the run is
    # not chaotic and rounding differences stay tiny: a run through a destabilisation amplifies them
    # chaotically (see the bitwise scaling test for that regime).
    eta, lam = (0.01 if momentum == 0 else 0.001), 0.1
    x0 = np.random.default_rng(0).standard_normal(fn.dim)
    x0 *= 3.0 / np.linalg.norm(x0)
    a = _run(fn, x0, eta, lam, momentum=momentum)
    sched = texp_schedule(eta, lam, momentum, STEPS)
    y, v, ys = x0.copy(), sched.initial_velocity(x0), [x0.copy()]
    for lr in sched.lrs:
        y, v = sgd_step(y, fn.grad(y), lr, 0.0, momentum=momentum, velocity=v)
        ys.append(y)
    scaled = sched.scale[:, None] * np.array(ys)
    assert sched.lrs[-1] / sched.lrs[0] > 7
    # exact in exact arithmetic; rounding (1e-16 per step) is amplified by the slightly expanding
    # directions of the non-convex BN MLP loss to ~1e-9 over 1,000 steps (1e-15 for the others)
    assert _max_rel_err(scaled, a) < 1e-8
    # the correction of the momentum buffer matters: without it the runs part ways
    if momentum:
        y, v = x0.copy(), None
        for lr in sched.lrs[:50]:
            y, v = sgd_step(y, fn.grad(y), lr, 0.0, momentum=momentum, velocity=v)
        assert _max_rel_err(sched.scale[50:51] * y[None], a[50:51]) > 1e-4


def test_texp_alpha_values():
    assert texp_alpha(0.1, 0.01) == pytest.approx(1 - 1e-3)
    a = texp_alpha(0.1, 0.01, 0.9)
    assert a**2 - (1 + 0.9 - 1e-3) * a + 0.9 == pytest.approx(0, abs=1e-14)
    with pytest.raises(ValueError, match="TEXP"):
        texp_alpha(1.0, 0.1, 0.9)
    with pytest.raises(ValueError):
        texp_schedule(0.1, 0.01, 0.0, 0)


@pytest.mark.parametrize("fn", [QUAD, BN_MLP], ids=repr)
@pytest.mark.parametrize("target", [1.0, 3.0])
def test_wrs_reproduces_wd_directions(fn, target):
    eta, lam = 0.02, 0.1                        # contracting regime, as in the TEXP test
    x0 = np.random.default_rng(5).standard_normal(fn.dim)
    x0 *= 3.0 / np.linalg.norm(x0)
    a = _run(fn, x0, eta, lam)
    y = target * x0 / np.linalg.norm(x0)
    sq = x0 @ x0                                # virtual WD norm, advanced by the exact recurrence
    for t in range(STEPS):
        g = fn.grad(y)
        lr = wrs_lr_from_wd(eta, lam, sq, target)
        y, _ = wrs_step(y, g, lr, target_norm=target)
        sq = next_sq_norm(sq, target**2 * (g @ g) / sq, eta, lam)
        np.testing.assert_allclose(y / target, a[t + 1] / np.linalg.norm(a[t + 1]), rtol=0, atol=1e-9)
    assert np.sqrt(sq) == pytest.approx(np.linalg.norm(a[-1]), rel=1e-9)


def test_rescale_bad_c():
    with pytest.raises(ValueError):
        rescaled_hyperparameters(0.1, 0.1, np.ones(2), 0.0)
