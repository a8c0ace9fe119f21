"""Anatomy of periods, leave-one-out prediction and the batch-sharpness forecast on synthetic
trajectories whose phases are known exactly."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.anatomy import RunAnatomy, leave_one_out, period_anatomy, power_law
from analysis.edge_forecast import edge_forecasts, hover_statistics


def synthetic_run(eta, lam, rise, n_periods=5, rho_c=5.0, rho_max=8.0):
    """A norm trace of n_periods: linear rise rho_c -> rho_max over `rise` iterations, then free
    decay by alpha = 1 - eta*lam per step down to rho_c; returns (iteration, norm, onsets, decay)."""
    alpha = 1 - eta * lam
    decay = int(math.ceil(math.log(rho_max / rho_c) / -math.log(alpha)))
    norm, onsets = [], []
    for _ in range(n_periods + 1):
        onsets.append(len(norm))
        norm.extend(np.linspace(rho_c, rho_max, rise + 1)[:-1])
        norm.extend(rho_max * alpha ** np.arange(decay))
    norm.append(rho_c)
    return np.arange(len(norm)), np.array(norm), onsets, decay


@given(st.sampled_from([2e-4, 5e-4, 1e-3, 3e-3]), st.integers(5, 300))
@settings(max_examples=20, deadline=None)
def test_anatomy_recovers_the_phases(eta_lam, rise):
    it, norm, onsets, decay = synthetic_run(1.0, eta_lam, rise)
    phases = period_anatomy(it, norm, onsets, 1.0, eta_lam)
    assert len(phases) == len(onsets) - 1
    for p in phases:
        assert p.rise == rise and p.decay == decay
        assert p.decay_predicted == pytest.approx(decay, abs=1.0)
        assert p.rho_max == pytest.approx(8.0) and p.length == rise + decay


def test_anatomy_with_gradients_is_longer_than_free_decay():
    it, norm, onsets, _ = synthetic_run(1.0, 1e-3, 50)
    free = period_anatomy(it, norm, onsets, 1.0, 1e-3)
    pushed = period_anatomy(it, norm, onsets, 1.0, 1e-3, eff_grad_norm=np.full(norm.size, 0.05))
    for a, b in zip(free, pushed):
        assert b.decay_approach > a.decay_predicted


def test_power_law_recovers_exponent_and_covers_it():
    rng = np.random.default_rng(0)
    x = np.geomspace(1e-4, 1e-2, 8)
    y = 3.0 * x ** -0.6 * np.exp(rng.normal(0, 0.05, x.size))
    fit = power_law(x, y)
    assert fit.exponent_lo < -0.6 < fit.exponent_hi and abs(fit.exponent + 0.6) < 0.1
    assert fit(1e-3) == pytest.approx(3.0 * 1e-3 ** -0.6, rel=0.1)
    assert power_law([1, 2], [1, 2]) is None            # too few points


def test_leave_one_out_predicts_known_phases_without_using_them():
    runs, expected = [], {}
    for eta_lam in (2e-4, 5e-4, 1e-3, 2e-3, 3e-3):
        rise = int(round(0.5 * eta_lam ** -0.5))          # rise = 0.5 (eta*lambda)^-1/2 exactly
        it, norm, onsets, decay = synthetic_run(1.0, eta_lam, rise)
        runs.append(RunAnatomy(1.0, eta_lam, 0.0, period_anatomy(it, norm, onsets, 1.0, eta_lam)))
        expected[eta_lam] = rise + decay
    rows = leave_one_out(runs)
    for row in rows:
        assert row["rise_exponent"] == pytest.approx(-0.5, abs=0.02)
        assert row["measured_over_predicted"] == pytest.approx(1.0, abs=0.02)
        assert row["measured_period"] == expected[row["eta_lam"]]
        assert len(row["predicted"]) == 4                 # the first period has no earlier one
    # the prediction of a run does not depend on that run's own rises: change them, it stays
    it, norm, onsets, _ = synthetic_run(1.0, 1e-3, 400)
    changed = [r if r.eta * r.lam != 1e-3 else RunAnatomy(1.0, 1e-3, 0.0, period_anatomy(it, norm, onsets, 1.0, 1e-3))
               for r in runs]
    again = {r["eta_lam"]: r for r in leave_one_out(changed)}[1e-3]
    assert again["rise_predicted"] == pytest.approx({r["eta_lam"]: r for r in rows}[1e-3]["rise_predicted"])
    assert again["measured_over_predicted"] > 1.5     # ...and so it now misses the longer periods


def test_edge_forecast_exact_when_sharpness_is_constant():
    eta, lam = 1.0, 1e-3
    it, norm, onsets, _ = synthetic_run(eta, lam, 40)
    phases = period_anatomy(it, norm, onsets, eta, lam)
    thr = 2 * (1 - eta * lam)
    h = thr * 5.0**2 / eta                  # eta*h/rho^2 reaches the threshold exactly at rho_c = 5
    E = eta * h / norm**2
    k = np.arange(0, it.size, 10)
    out = edge_forecasts(it[k], E[k], phases, eta=eta, lam=lam, threshold=thr, min_points=5)
    assert out["n"] == len(phases)
    assert out["level"]["median_abs_error_fraction"] < 0.01
    assert out["trend"]["median_abs_error_fraction"] < 0.01
    assert out["persistence"]["median_abs_error_fraction"] == 0.0       # all periods equal
    assert 0.5 < out["median_horizon_fraction"] < 1
    hover = hover_statistics(it[k], E[k], phases, thr)
    assert 0.8 < hover["median_ratio_before_onset"] <= 1.0 and hover["fraction_above"] == 0.0


def test_edge_forecast_errors_have_the_sign_of_a_wrong_threshold():
    eta, lam = 1.0, 1e-3
    it, norm, onsets, _ = synthetic_run(eta, lam, 40)
    phases = period_anatomy(it, norm, onsets, eta, lam)
    E = eta * (2 * 25.0 / eta) / norm**2
    k = np.arange(0, it.size, 10)
    late = edge_forecasts(it[k], E[k], phases, eta=eta, lam=lam, threshold=2.2, min_points=5)
    early = edge_forecasts(it[k], E[k], phases, eta=eta, lam=lam, threshold=1.8, min_points=5)
    assert late["level"]["median_error_fraction"] > 0 > early["level"]["median_error_fraction"]
