"""Eigenbasis fast path of the quadratic against the generic engine (theory step functions)."""
import numpy as np
import pytest

from simulate.engine import run
from simulate.fast_quadratic import run_fast, supports_fused
from simulate.objectives import NormalizedQuadratic
from simulate.sweep import make_grid, sweep

RECORD = ("loss", "eff_grad_norm", "angle")


def _configs(obj):
    # eta = 4 with |x0| = 1 starts above the stability bound 2/h = 2: an immediate jump with
    # O(1) amplitudes (reproducible); the others decay smoothly over the horizon. Later
    # destabilisations of noiseless GD grow from rounding-level amplitudes, so two correct
    # implementations diverge after them (see simulate.fast_quadratic): the horizon of 300 steps
    # stays clear of them.
    x0 = obj.init([0, 1, 2, 3, 4], norm=1.0)
    eta = np.array([4.0, 1.0, 0.5, 0.1, 0.7])
    lam = np.array([1e-4, 1e-3, 2e-3, 5e-2, 2e-3])
    return x0, eta, lam


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_fused_gd_matches_generic_engine(dtype, rtol):
    obj = NormalizedQuadratic(60, seed=11, a_min=0.1, a_max=1.1)
    x0, eta, lam = _configs(obj)
    steps = 300
    ref = run(obj, x0, eta, lam, steps=steps, record=RECORD)            # float64, rotated basis
    fast = run_fast(obj, x0, eta, lam, steps=steps, record=RECORD, dtype=dtype)
    assert fast.method == "fast" and fast.norm.dtype == dtype
    assert ref.norm[:, 0].max() > 1.3 * ref.norm[0, 0]                  # the jump happened
    for name in ("norm", "loss", "eff_grad_norm", "angle"):
        np.testing.assert_allclose(getattr(fast, name), getattr(ref, name), rtol=rtol,
                                   atol=rtol * np.abs(getattr(ref, name)).max(), err_msg=name)
    np.testing.assert_allclose(fast.x_final, ref.x_final, rtol=10 * rtol, atol=10 * rtol)


def test_fused_record_every_and_subset():
    obj = NormalizedQuadratic(20, seed=1)
    x0, eta, lam = _configs(obj)
    full = run_fast(obj, x0, eta, lam, steps=100, dtype=np.float64)
    sub = run_fast(obj, x0, eta, lam, steps=100, dtype=np.float64, record=("loss",), record_every=7)
    np.testing.assert_array_equal(sub.iterations, np.arange(0, 100, 7))
    np.testing.assert_allclose(sub.norm, full.norm[::7])
    np.testing.assert_allclose(sub.loss, full.loss[::7])
    assert sub.angle is None and sub.eff_grad_norm is None


def test_momentum_and_noise_fall_back_to_generic_on_diagonal():
    obj = NormalizedQuadratic(30, rotate=False)       # eigenbasis = standard basis: same draws
    x0, eta, lam = _configs(obj)
    kw = dict(steps=250, momentum=[0.0, 0.9, 0.5, 0.0, 0.3], noise=0.02, seeds=[0, 0, 1, 1, 2], record=RECORD)
    ref = run(obj, x0, eta, lam, **kw)
    fast = run_fast(obj, x0, eta, lam, dtype=np.float64, **kw)
    for name in ("norm", "loss", "eff_grad_norm", "angle"):
        np.testing.assert_allclose(getattr(fast, name), getattr(ref, name), rtol=1e-10, atol=1e-14)
    assert not supports_fused(make_grid(1.0, 1e-3, [0], momentum=0.9))
    assert not supports_fused(make_grid(1.0, 1e-3, [0], noise=1e-3))
    assert supports_fused(make_grid([1.0, 2.0], 1e-3, [0, 1]))


def test_sweep_dispatch_and_grid():
    traj = sweep("quadratic", eta=[0.5, 1.0], lam=[1e-3, 2e-3, 4e-3], seeds=[0, 1], steps=50,
                 objective_kwargs={"dim": 10})
    assert traj.method == "fast" and traj.norm.shape == (50, 12)
    assert traj.norm.dtype == np.float32
    np.testing.assert_array_equal(traj.config["seed"], np.tile([0, 1], 6))
    np.testing.assert_array_equal(traj.config["eta"], np.repeat([0.5, 1.0], 6))
    gen = sweep("quadratic", eta=[0.5, 1.0], lam=[1e-3, 2e-3, 4e-3], seeds=[0, 1], steps=50,
                method="generic", objective_kwargs={"dim": 10})
    assert gen.method == "generic"
    np.testing.assert_allclose(traj.norm, gen.norm, rtol=1e-4)
    zipped = make_grid([1.0, 2.0], [1e-3, 2e-3], [5, 6], grid=False)
    np.testing.assert_array_equal(zipped["seed"], [5, 6])
    with pytest.raises(ValueError, match="fast path"):
        sweep("classifier", steps=5, method="fast")
    with pytest.raises(ValueError):
        run_fast(NormalizedQuadratic(5), NormalizedQuadratic(5).init([0]), 10.0, 0.2, steps=5)


class _StopAfter:
    """Progress stand-in that raises KeyboardInterrupt at its first update (Ctrl-C)."""
    n = 0

    def update(self, n=1, postfix=""):
        raise KeyboardInterrupt


def test_fused_loop_interrupt_keeps_completed_steps():
    obj = NormalizedQuadratic(10)
    x0, eta, lam = _configs(obj)
    tr = run_fast(obj, x0, eta, lam, steps=5000, progress=_StopAfter())
    assert tr.interrupted and tr.steps_done == 500 and tr.norm.shape == (500, 5)
    assert np.all(np.isfinite(tr.norm))
