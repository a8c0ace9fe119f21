"""Period report of nets/: measured vs predicted lengths on series with a known answer, collapse
detection; plots."""
import math

import numpy as np
import pytest

from analysis.report import analyse_periods, analyse_run, collapse_line, find_collapse, period_line
from nets.config import TrainConfig
from nets.plots import plot_run, plot_sweep
from nets.training.sweep import sweep_configs


def _sawtooth(eta, lam, rho_max, rho_min, n_periods, k, rng):
    """Norm of an idealised periodic run, recorded every k iterations: decay (1-eta*lam)^t from
    rho_max to rho_min, then a jump back within 2 records, with a loss spike at each jump."""
    decay = math.log(rho_max / rho_min) / -math.log(1 - eta * lam)   # iterations
    per = int(round(decay / k))
    norm, loss = [], []
    for _ in range(n_periods):
        t = np.arange(per) * k
        norm += list(rho_max * (1 - eta * lam) ** t)
        loss += list(1e-3 * (1 + 0.1 * rng.random(per)))
        norm += [0.5 * (rho_min + rho_max)]
        loss += [1.0]
    n = len(norm)
    steps = {"iteration": np.arange(n) * k, "si_norm_equiv": np.array(norm), "train_loss": np.array(loss)}
    return steps, (per + 1) * k, decay


@pytest.mark.parametrize("eta,lam", [(1.0, 3e-3), (0.5, 1e-3)])
def test_measured_period_matches_prediction_on_ideal_series(eta, lam):
    k = 10
    steps, true_len, decay = _sawtooth(eta, lam, 20.0, 4.0, 6, k, np.random.default_rng(0))
    cfg = TrainConfig(lr=eta, wd=lam, record_every=k)
    rep, s = analyse_periods(steps, cfg)
    assert s["n_periods"] >= 4 and s["is_periodic"]
    assert s["mean_length"] == pytest.approx(true_len, abs=k)
    # decay from the peak to the next onset is the whole period but one record (the jump)
    assert s["predicted_mean_length"] == pytest.approx(true_len - k, rel=0.02, abs=k)
    assert s["measured_over_predicted"] == pytest.approx(1.0, abs=0.05)
    assert s["measured_frequency"] == pytest.approx(1 / s["mean_length"])
    assert s["eta_lam"] == pytest.approx(eta * lam)
    assert "complete" in period_line(s)


def test_no_prediction_without_wd_on_the_si_group():
    steps, _, _ = _sawtooth(1.0, 3e-3, 20.0, 4.0, 4, 10, np.random.default_rng(1))
    _, s = analyse_periods(steps, TrainConfig(record_every=10, wrs_norm=5.0))
    assert s["lam"] == 0 and math.isnan(s["predicted_mean_length"]) and "note" in s


def test_plots_are_written(tmp_path):
    steps, _, _ = _sawtooth(1.0, 3e-3, 20.0, 4.0, 4, 10, np.random.default_rng(2))
    n = len(steps["iteration"])
    steps.update(train_loss=steps["train_loss"], eff_lr=1.0 / steps["si_norm_equiv"] ** 2)
    evals = {"iteration": steps["iteration"][::5], "test_acc": np.linspace(0.1, 0.9, len(range(0, n, 5)))}
    _, s = analyse_periods(steps, TrainConfig(record_every=10))
    assert plot_run(tmp_path / "run.png", steps, evals, s, "t").stat().st_size > 1000
    rows = [{"eta_lam": x, "measured_frequency": x / 2, "predicted_frequency": x / 2.2} for x in (1e-3, 3e-3)]
    assert plot_sweep(tmp_path / "sweep.png", rows).stat().st_size > 1000


def test_sweep_configs_grid_and_length_scaling():
    base = TrainConfig(iters=100, wd=1e-3)
    cfgs = sweep_configs(base, [0.1, 1.0], [1e-3, 2e-3], scale_length=True)
    assert [(c.lr, c.wd) for c in cfgs] == [(0.1, 1e-3), (1.0, 1e-3), (0.1, 2e-3), (1.0, 2e-3)]
    assert [c.iters for c in cfgs] == [2000, 200, 1000, 100]
    assert [c.iters for c in sweep_configs(base, [0.1, 1.0])] == [100, 100]


def _with_dead_tail(steps, eta, lam, k, n_dead, underflow=False):
    """Append ``n_dead`` records of a dead network: zero SI gradient, pure WD decay of the norm,
    chance-level loss (optionally ending in an underflowed norm of exactly 0)."""
    n = len(steps["iteration"])
    decay = steps["si_norm_equiv"][-1] * (1 - eta * lam) ** (k * np.arange(1, n_dead + 1))
    if underflow:
        decay[-2:] = 0.0
    out = {"iteration": np.arange(n + n_dead) * k, "si_norm_equiv": np.r_[steps["si_norm_equiv"], decay],
           "train_loss": np.r_[steps["train_loss"], np.full(n_dead, math.log(10))],
           "grad_norm": np.r_[np.full(n, 0.3), np.zeros(n_dead)]}
    return out, n * k


@pytest.mark.parametrize("underflow", [False, True])
def test_collapse_is_found_and_periods_are_measured_before_it(underflow):
    eta, lam, k = 1.0, 3e-3, 10
    steps, _, _ = _sawtooth(eta, lam, 20.0, 4.0, 5, k, np.random.default_rng(3))
    dead, first_dead = _with_dead_tail(steps, eta, lam, k, 120, underflow)
    cfg = TrainConfig(lr=eta, wd=lam, record_every=k)
    c = find_collapse(dead)
    assert c["iteration"] == first_dead and c["records"] == 120
    assert c["train_loss"] == pytest.approx(math.log(10))
    rep, s = analyse_run(dead, cfg)
    _, alive = analyse_periods(steps, cfg)
    assert s["collapse"] == c and rep is not None
    assert s["event_iterations"] == alive["event_iterations"] and s["n_periods"] == alive["n_periods"] >= 3
    assert "dead from iteration" in collapse_line(c)


def test_no_collapse_in_a_living_run_or_a_short_or_interrupted_zero_stretch():
    steps, _, _ = _sawtooth(1.0, 3e-3, 20.0, 4.0, 3, 10, np.random.default_rng(4))
    n = len(steps["iteration"])
    steps["grad_norm"] = np.full(n, 0.3)
    assert find_collapse(steps) is None
    _, s = analyse_run(steps, TrainConfig(record_every=10))
    assert "collapse" not in s and s["n_periods"] >= 2
    steps["grad_norm"][-2:] = 0.0                      # two dead records: fewer than min_records
    assert find_collapse(steps) is None
    assert find_collapse(steps, min_records=2)["iteration"] == steps["iteration"][-2]
    steps["grad_norm"][10:40] = 0.0                    # dead stretch, then alive again
    steps["grad_norm"][-2:] = 0.3
    assert find_collapse(steps) is None
    with pytest.raises(ValueError, match="min_records"):
        find_collapse(steps, min_records=0)
    steps["grad_norm"][:] = 0.0                        # dead from the first record
    rep, s = analyse_run(steps, TrainConfig(record_every=10))
    assert rep is None and s["collapse"]["iteration"] == 0 and "before the collapse" in s["note"]
