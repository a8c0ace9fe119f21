"""The forecast of the next destabilisation (analysis.forecast) against a step-by-step decay."""
import math

import numpy as np
import pytest

from analysis.forecast import forecast_destabilisations, forecast_line, forecast_onsets


def _steps_until_below(rho: float, rho_c: float, alpha: float) -> int:
    """Independent count: multiply by alpha until the norm is at or below rho_c."""
    n = 0
    while rho > rho_c:
        rho *= alpha
        n += 1
    return n


def _synthetic_run(eta, lam, h_of_t, *, periods=4, period=400, top=30.0, every=20):
    """Norm jumping to ``top`` at each onset (every ``period`` iterations) and decaying exactly by
    alpha per step in between; sharpness rows every ``every`` iterations with h = ``h_of_t(t)``."""
    alpha = 1 - eta * lam
    it = np.arange(periods * period + 1)
    norm = top * alpha ** (it % period)
    events = list(range(0, periods * period + 1, period))
    s_it = np.arange(0, it.size, every)
    h = np.array([h_of_t(t) for t in s_it], dtype=float)
    sharp = {"iteration": s_it, "lr": np.full(s_it.size, eta), "si_norm": norm[s_it], "sphere_sharpness": h}
    return {"iteration": it, "si_norm_equiv": norm}, sharp, events, alpha


def test_each_forecast_matches_a_step_by_step_decay_to_the_critical_norm():
    eta, lam, mu = 0.5, 2e-3, 0.0
    steps, sharp, _, alpha = _synthetic_run(eta, lam, lambda t: 40.0 + 0.01 * t)
    fc = forecast_onsets(sharp, eta, lam, mu)
    for i in range(len(sharp["iteration"])):
        rho_c = math.sqrt(eta * sharp["sphere_sharpness"][i] / 2)
        assert fc["critical_norm"][i] == pytest.approx(rho_c, rel=1e-12)
        count = _steps_until_below(sharp["si_norm"][i], rho_c, alpha)
        # the closed form is the real-valued crossing time: the integer count is its ceiling
        assert count - 1 < fc["forecast"][i] - sharp["iteration"][i] <= count + 1e-9


def test_momentum_uses_its_threshold_and_decay_factor():
    from theory.stability import norm_decay_factor

    eta, lam, mu = 0.1, 1e-3, 0.9
    sharp = {"iteration": np.array([0]), "lr": np.array([eta]), "si_norm": np.array([5.0]),
             "sphere_sharpness": np.array([30.0])}
    fc = forecast_onsets(sharp, eta, lam, mu)
    rho_c = math.sqrt(eta * 30.0 / (2 * (1 + mu)))
    a = float(norm_decay_factor(eta, lam, mu))
    assert fc["critical_norm"][0] == pytest.approx(rho_c)
    assert fc["forecast"][0] == pytest.approx(math.log(5.0 / rho_c) / -math.log(a))


def test_exact_when_h_is_constant_and_the_period_ends_at_the_crossing():
    eta, lam, period, top = 1.0, 2.5e-3, 400, 30.0
    h = 2 * (top * (1 - eta * lam) ** period) ** 2 / eta     # rho_c reached exactly one period after each top
    steps, sharp, events, _ = _synthetic_run(eta, lam, lambda t: h, period=period, top=top)
    out = forecast_destabilisations(steps, sharp, events, eta, lam)
    assert out["n"] == len(events) - 1
    for p in out["periods"]:
        assert p["issued"] == p["start"]                       # first measurement after the top
        assert abs(p["error"]) < 1e-6 * period
        assert p["h_drift"] == pytest.approx(1.0)
    assert out["median_abs_error_fraction"] < 1e-6
    assert "forecast of the next destabilisation" in forecast_line(out)


def test_a_sharpness_that_falls_within_the_period_gives_an_early_forecast_and_is_reported():
    eta, lam, period = 1.0, 2.5e-3, 400
    # h falls 4x over each period (as measured on real nets: lambda_max ~ const while rho shrinks)
    steps, sharp, events, _ = _synthetic_run(eta, lam, lambda t: 400.0 * 0.25 ** ((t % period) / period),
                                             period=period)
    out = forecast_destabilisations(steps, sharp, events, eta, lam)
    assert out["median_error_fraction"] < 0 and out["median_h_drift"] < 0.3
    assert all(p["error"] < p["last_error"] for p in out["periods"])   # later forecasts come closer


def test_forecast_uses_no_future_data():
    eta, lam = 1.0, 2.5e-3
    steps, sharp, events, _ = _synthetic_run(eta, lam, lambda t: 100.0)
    base = forecast_destabilisations(steps, sharp, events, eta, lam)
    issued = {p["issued"]: p["forecast"] for p in base["periods"]}
    changed = dict(sharp)
    changed["sphere_sharpness"] = np.where(np.isin(sharp["iteration"], list(issued)), 100.0, 5.0)
    after = forecast_destabilisations(steps, changed, events, eta, lam)
    assert {p["issued"]: p["forecast"] for p in after["periods"]} == issued


def test_no_forecast_without_decay_or_valid_sharpness():
    sharp = {"iteration": np.array([0, 10]), "lr": np.array([1.0, 1.0]), "si_norm": np.array([5.0, 5.0]),
             "sphere_sharpness": np.array([np.nan, 30.0])}
    fc = forecast_onsets(sharp, 1.0, 0.0)
    assert np.isnan(fc["forecast"]).all() and np.isnan(fc["critical_norm"][0])
    out = forecast_destabilisations({"iteration": np.arange(3), "si_norm_equiv": np.ones(3)}, sharp, [], 1.0, 1e-3)
    assert out["n"] == 0 and "no complete period" in forecast_line(out)


def test_the_reported_forecast_is_issued_after_the_top_of_the_jump():
    eta, lam, period, rise = 1.0, 2.5e-3, 400, 50
    steps, sharp, events, alpha = _synthetic_run(eta, lam, lambda t: 100.0, period=period)
    it = steps["iteration"]
    phase = it % period
    top = 30.0 * alpha ** (period - rise)
    norm = np.where(phase < rise, 10.0 + (top - 10.0) * phase / rise, top * alpha ** (phase - rise))
    sharp["si_norm"] = norm[sharp["iteration"]]
    out = forecast_destabilisations({"iteration": it, "si_norm_equiv": norm}, sharp, events, eta, lam)
    assert out["n"] == len(events) - 1
    for p in out["periods"]:
        assert p["top"] == p["start"] + rise
        assert p["issued"] == p["top"] + (-rise) % 20            # the first measurement (every 20) at/after it


def test_calibrated_and_persistence_references():
    """Onsets where rho = 0.7 rho_c: the theory's rule forecasts too early, the threshold learned
    from past onsets forecasts exactly; periods of equal length: persistence is exact."""
    eta, lam, period, rise, c = 1.0, 2.5e-3, 400, 40, 0.7
    alpha = 1 - eta * lam
    it = np.arange(4 * period + 1)
    phase = it % period
    top = 30.0
    low = top * alpha ** (period - rise)                       # the norm just before each jump
    norm = np.where(phase < rise, low + (top - low) * phase / rise, top * alpha ** (phase - rise))
    h = 2 * (low / c) ** 2 / eta                               # rho_c = low / c
    s_it = np.arange(0, it.size, 20)
    sharp = {"iteration": s_it, "lr": np.full(s_it.size, eta), "si_norm": norm[s_it],
             "sphere_sharpness": np.full(s_it.size, h)}
    events = list(range(0, 4 * period + 1, period))
    out = forecast_destabilisations({"iteration": it, "si_norm_equiv": norm}, sharp, events, eta, lam)
    assert out["n"] == 4
    for k, p in enumerate(out["periods"]):
        assert p["rho_over_rho_c_at_onset"] == pytest.approx(c)
        assert p["calibration"] == pytest.approx(c)
        assert p["error_fraction"] < -0.3                      # rho_c is reached long before the onset
        assert abs(p["calibrated_forecast"] - p["onset"]) < 1e-6 * period
        if k == 0:
            assert math.isnan(p["persistence_forecast"])
        else:
            assert p["persistence_forecast"] == p["onset"]
    assert out["median_abs_calibrated_error_fraction"] < 1e-6 and out["median_abs_persistence_error_fraction"] == 0
