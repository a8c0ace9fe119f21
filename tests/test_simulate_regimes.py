"""The regime rule on synthetic series with known answers, the engine's 'sphere' optimizer against
a plain loop, and the toy's convergence boundary against theory.stability's 2/h."""
import numpy as np
import pytest

from analysis.regimes import classify_regime, regime_boundaries, regime_statistics
from simulate.engine import run
from simulate.noise import SeedStreams
from simulate.objectives import BNMLP, NormalizedQuadratic
from simulate.regimes import chance_loss, classify_trajectory, sphere_sweep
from theory.sphere import block_norms, sphere_step
from theory.stability import critical_effective_lr

T = np.arange(0, 4000, 10)
L0 = np.log(10)


def _noisy(level, rel_noise=0.3, seed=0):
    """A stationary series: level times log-normal noise (mini-batch-like fluctuations)."""
    return level * np.exp(rel_noise * np.random.default_rng(seed).standard_normal(T.size))


SMALL, LARGE = np.full(T.size, 0.02), np.full(T.size, 1.5)      # angles per step (rad)


@pytest.mark.parametrize("loss,grad,angle,expected", [
    (2.0 * np.exp(-T / 400) + 1e-9, 5 * np.exp(-T / 800), SMALL, "convergence"),   # exponential descent
    (3.0 / (1 + T / 50), _noisy(20.0), SMALL, "convergence"),                       # loss ~ 1/t, G flat
    (_noisy(0.8), 10 * (1 + T / 100.0) ** -0.8, SMALL, "convergence"),              # loss flat, G ~ t^-0.8
    (_noisy(1e-5), _noisy(1e-3, seed=1), SMALL, "convergence"),                     # at the minimum (0)
    (30.0 / (1 + T / 50), _noisy(20.0), SMALL, "convergence"),   # above a random guess, small steps, descending
    (_noisy(0.9), _noisy(15.0, seed=1), SMALL, "chaotic"),                          # stationary, 0.39 L0
    (_noisy(0.9), _noisy(15.0, seed=1), LARGE, "chaotic"),                          # large steps, but learned
    (0.9 + 0.5 * np.exp(-T / 300), _noisy(15.0, seed=2), SMALL, "chaotic"),        # settled early on
    (0.9 * (1 + T / 100.0) ** -0.2, _noisy(15.0, seed=3), SMALL, "chaotic"),       # drifts slower than t^-1/2
    (_noisy(2.3), _noisy(40.0, seed=1), LARGE, "divergence"),                       # a random guess
    (_noisy(7.0), _noisy(3e3, seed=1), LARGE, "divergence"),                        # worse than a guess
    (400.0 / (1 + T / 50), _noisy(3e3, seed=1), LARGE, "divergence"),              # falling, still above a guess
    (np.r_[_noisy(0.5)[:-1], np.nan], _noisy(1.0), SMALL, "divergence"),            # non-finite
])
def test_rule_on_synthetic_series(loss, grad, angle, expected):
    assert classify_regime(loss, grad, angle, T, reference_loss=L0) == expected


def test_rule_statistics_are_the_power_laws_of_the_series():
    s = regime_statistics(5.0 * (1 + T) ** -1.0, 3.0 * (1 + T) ** -0.5, np.linspace(0, 1, T.size), T,
                          reference_loss=L0)
    assert s.loss_trend == pytest.approx(-1.0, abs=1e-9)
    assert s.grad_trend == pytest.approx(-0.5, abs=1e-9)
    window = T[T >= 2000][-25:]                     # the last of 8 windows of the last 200 records
    assert s.final_loss == pytest.approx(np.median(5.0 * (1 + window) ** -1.0))
    assert s.level == pytest.approx(s.final_loss / L0)
    assert s.angle == pytest.approx(np.median(np.linspace(0, 1, T.size)[-25:]))


def test_rule_thresholds_move_the_decision():
    loss, grad = 3.0 * (1 + T / 50.0) ** -0.3, _noisy(5.0)
    assert classify_regime(loss, grad, SMALL, T, reference_loss=L0) == "chaotic"
    assert classify_regime(loss, grad, SMALL, T, reference_loss=L0, converge_slope=0.25) == "convergence"
    assert classify_regime(_noisy(1.9), grad, LARGE, T, reference_loss=L0) == "chaotic"
    assert classify_regime(_noisy(1.9), grad, LARGE, T, reference_loss=L0, diverge_level=0.7) == "divergence"
    assert classify_regime(_noisy(2.3), grad, LARGE, T, reference_loss=L0, diverge_angle=1.6) == "chaotic"


def test_rule_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        classify_regime([1.0, 2.0], [1.0], [0.1, 0.1], reference_loss=1.0)
    with pytest.raises(ValueError, match="reference_loss"):
        classify_regime([1.0, 2.0], [1.0, 1.0], [0.1, 0.1], reference_loss=0.0)


def test_boundaries_between_labelled_runs():
    e = [1e-3, 1e-2, 1e-1, 1.0]
    b = regime_boundaries(e, ["convergence", "chaotic", "chaotic", "divergence"])
    assert b == {"convergence_upper": pytest.approx(np.sqrt(1e-5)), "divergence_lower": pytest.approx(np.sqrt(0.1)),
                 "ordered": True}
    b = regime_boundaries(e, ["convergence", "divergence", "chaotic", "divergence"])
    assert not b["ordered"] and b["divergence_lower"] == pytest.approx(np.sqrt(1e-5))     # tie: the smaller
    # one stray label does not move a boundary: the threshold that misplaces the fewest runs
    e8 = np.geomspace(1e-3, 1.0, 8)
    labels = ["convergence", "convergence", "chaotic", "convergence", "convergence", "chaotic", "divergence",
              "divergence"]
    b = regime_boundaries(e8[::-1], labels[::-1])
    assert b["convergence_upper"] == pytest.approx(np.sqrt(e8[4] * e8[5])) and not b["ordered"]
    assert b["divergence_lower"] == pytest.approx(np.sqrt(e8[5] * e8[6]))
    assert regime_boundaries(e, ["chaotic"] * 4) == {"convergence_upper": None, "divergence_lower": None,
                                                      "ordered": True}
    with pytest.raises(ValueError, match="unknown"):
        regime_boundaries([1.0], ["periodic"])


def test_chance_loss_is_the_mean_over_random_directions():
    q = NormalizedQuadratic(20, seed=3)
    x = q.init(np.arange(4000))
    assert chance_loss(q) == pytest.approx(np.mean(q.loss(x)), rel=0.02)
    assert chance_loss(BNMLP(n_classes=3, n_samples=60)) == pytest.approx(np.log(3))


def test_sphere_optimizer_matches_a_plain_loop_per_layer():
    obj = BNMLP(hidden=6, n_features=4, n_samples=64, batch_size=16)
    blocks = (24, 36)
    traj = sphere_sweep(obj, [0.01, 0.1], steps=60, seeds=[2], blocks=blocks)
    x0 = obj.init([2])[0]
    x0 = np.concatenate([x0[:24] / np.linalg.norm(x0[:24]), x0[24:] / np.linalg.norm(x0[24:])])
    for i, elr in enumerate([0.01, 0.1]):
        x, data = x0[None].copy(), SeedStreams([2], 2)
        for t in range(60):
            loss, g = obj.loss_and_grad(x, data.minibatch(obj.n_samples, obj.batch_size))
            assert traj.loss[t, i] == pytest.approx(loss[0], rel=1e-9)
            x = sphere_step(x, g, elr, blocks=blocks)
        assert np.linalg.norm(traj.x_final[i] - x[0]) < 1e-9
        np.testing.assert_allclose(block_norms(traj.x_final[i], blocks), [1.0, 1.0], rtol=1e-13)
    np.testing.assert_allclose(traj.eff_lr[0], [0.01, 0.1])
    with pytest.raises(ValueError, match="momentum"):
        run(obj, obj.init([0]), 0.1, 0.0, steps=2, momentum=0.9, optimizer="sphere")


def test_toy_convergence_boundary_is_two_over_sharpness():
    """Projected GD on the normalised quadratic: convergence exactly below eta_tilde = 2/h."""
    q = NormalizedQuadratic(40, a_min=0.0, a_max=2.0, seed=1)
    elr_c = float(critical_effective_lr(q.sphere_sharpness()))
    assert elr_c == pytest.approx(1.0)
    e = elr_c * np.array([0.3, 0.7, 0.9, 1.1, 1.5, 50.0])
    traj = sphere_sweep(q, e, steps=3000, record_every=10)
    labels = [s.regime for s in classify_trajectory(traj, chance_loss(q))]
    assert labels == ["convergence"] * 3 + ["chaotic"] * 2 + ["divergence"]
    b = regime_boundaries(e, labels)
    assert 0.9 * elr_c < b["convergence_upper"] < 1.1 * elr_c
