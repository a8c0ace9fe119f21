"""Periodic behaviour on simulated runs versus theory/stability, regime classification and the
theory-comparison table."""
import numpy as np
import pytest

from simulate.compare import compare_with_theory, format_table, write_comparison
from simulate.engine import Trajectory, run
from simulate.objectives import NormalizedQuadratic
from simulate.sweep import classify, make_grid, period_reports, sweep
from theory.stability import critical_effective_lr, critical_norm, predicted_period_length

ETA, LAMS = 1.0, (1e-3, 2e-3, 4e-3)


@pytest.fixture(scope="module")
def periodic_sweep():
    """GD + WD on the quadratic (d = 50, h = 1) with a tiny noise floor, three eta*lam values."""
    return sweep("quadratic", ETA, LAMS, seeds=[0, 1], steps=6000, noise=1e-8, dtype=np.float64,
                 objective_kwargs={"dim": 50})


def test_periods_appear_at_every_eta_lam(periodic_sweep):
    assert list(classify(periodic_sweep)) == ["periodic"] * 6
    reps = period_reports(periodic_sweep)
    assert all(r.n_periods >= 20 for r in reps)
    assert all(r.std_length < 0.1 * r.mean_length for r in reps)


def test_decay_phase_follows_one_minus_eta_lam(periodic_sweep):
    """Between the top of a jump and the next onset the norm decays as (1 - eta*lam)^t:
    decay time = ln(rho_peak / rho_next_onset) / (-ln(1 - eta*lam)) (measured: within 1-3.5 %)."""
    for i, rep in enumerate(period_reports(periodic_sweep)):
        lam, norm = periodic_sweep.config["lam"][i], periodic_sweep.norm[:, i]
        decay_time = rep.events[1:] - rep.peaks[:-1]
        ratio = norm[rep.peaks[:-1]] / norm[rep.events[1:]]
        rel = decay_time / predicted_period_length(ETA, lam, ratio)
        assert np.median(rel) == pytest.approx(1.0, abs=0.05)
        assert np.all(np.abs(rel - 1) < 0.06)


def test_period_length_scales_with_eta_lam_as_theory_says(periodic_sweep):
    """T = ln(rho_max/rho_min) / (-ln(1 - eta*lam)) over three eta*lam values. The prediction
    counts the decay only; the jump itself adds ~10 % (measured 1.10-1.13), the same fraction
    at every eta*lam, so T * (-ln(1-eta*lam)) / ln(ratio) is constant."""
    reps = period_reports(periodic_sweep)
    lam = periodic_sweep.config["lam"]
    measured = np.array([r.mean_length for r in reps])
    ratio = np.array([r.norm_ratio for r in reps])
    predicted = predicted_period_length(ETA, lam, ratio)
    assert np.all((measured / predicted > 1.0) & (measured / predicted < 1.2))
    const = measured / predicted
    assert const.max() / const.min() < 1.05
    per_lam = [measured[lam == v].mean() for v in LAMS]
    assert per_lam[0] > per_lam[1] > per_lam[2]          # shorter periods at larger eta*lam


def test_destabilisation_happens_past_the_critical_norm(periodic_sweep):
    """Jumps start once eta/rho^2 exceeds 2/h (h = a_max - a_min = 1), i.e. rho < rho_c."""
    rho_c = critical_norm(ETA, 1.0)
    for i, rep in enumerate(period_reports(periodic_sweep)):
        at_jump = periodic_sweep.norm[rep.events, i]
        assert np.all(at_jump < rho_c) and np.all(at_jump > 0.8 * rho_c)
        assert np.all(periodic_sweep.eff_lr[rep.events, i] > critical_effective_lr(1.0))


def test_eta_lam_equivalence_of_periods():
    """Same eta*lam, different (eta, lam): rescaled start -> same periods; same start -> same
    periods after the transient (the period depends on eta*lam only)."""
    obj = NormalizedQuadratic(50, seed=0)
    x0 = obj.init([3], norm=1.0)[0]
    c = np.array([1.0, 0.3, 0.3, 3.0])
    starts = np.stack([x0, np.sqrt(0.3) * x0, x0, x0])
    tr = run(obj, starts, ETA * c, 2e-3 / c, steps=6000, noise=1e-8, seeds=[3] * 4, record=("loss",))
    reps = period_reports(tr)
    assert reps[1].mean_length == pytest.approx(reps[0].mean_length, rel=0.01)
    np.testing.assert_allclose(tr.norm[:, 1] / tr.norm[:, 0], np.sqrt(0.3), rtol=1e-4)
    for j in (2, 3):
        late = period_reports(Trajectory(config={k: v[[j]] for k, v in tr.config.items()},
                                         iterations=tr.iterations, norm=tr.norm[:, [j]],
                                         loss=tr.loss[:, [j]]), tail=0.5)[0]
        assert late.mean_length == pytest.approx(reps[0].mean_length, rel=0.05)
        assert late.norm_ratio == pytest.approx(reps[0].norm_ratio, rel=0.03)


def test_classify_regimes():
    obj = NormalizedQuadratic(30, seed=0)
    cfg = make_grid([1.0, 0.1, 0.05], 2e-3, [0], noise=[1e-8, 0.3, 0.0], grid=False)
    tr = run(obj, obj.init(cfg["seed"]), cfg["eta"], cfg["lam"], noise=cfg["noise"], seeds=cfg["seed"],
             steps=4000)
    # periodic; noisy equilibrium; noiseless GD at small eta still decaying towards rho_c = 0.16
    assert list(classify(tr)) == ["periodic", "equilibrium", "transient"]
    broken = Trajectory(config=tr.config, iterations=tr.iterations, norm=tr.norm.copy(), loss=tr.loss.copy())
    broken.norm[-5:, 1] = np.nan
    broken.loss[-1, 2] = np.inf
    assert list(classify(broken)) == ["periodic", "diverged", "diverged"]
    shrink = np.geomspace(1, 1e-20, tr.norm.shape[0])[:, None]
    collapsed = Trajectory(config=tr.config, iterations=tr.iterations, norm=tr.norm * shrink)
    assert set(classify(collapsed)) == {"diverged"}


def test_comparison_table_and_files(tmp_path, periodic_sweep):
    rows = compare_with_theory(periodic_sweep, sharpness=1.0)
    assert len(rows) == 6 and all(r["regime"] == "periodic" for r in rows)
    for r in rows:
        assert r["rho_critical"] == pytest.approx(critical_norm(ETA, 1.0))
        assert r["period_predicted"] == pytest.approx(
            predicted_period_length(r["eta"], r["lam"], r["norm_ratio"]))
        assert r["rho_min_measured"] < r["rho_critical"]
    text = format_table(rows)
    assert len(text.splitlines()) == 7 and "T*" in text and "periodic" in text
    j, c = write_comparison(rows, tmp_path)
    assert j.exists() and c.read_text().count("\n") == 7


def test_comparison_equilibrium_rows():
    obj = NormalizedQuadratic(eigenvalues=np.ones(20))
    tr = run(obj, obj.init([0, 1], norm=1.0), 0.1, 1e-2, noise=0.5, seeds=[0, 1], steps=5000)
    rows = compare_with_theory(tr)
    for r in rows:
        assert r["regime"] == "equilibrium" and r["n_periods"] == 0
        assert r["rho_measured"] == pytest.approx(r["rho_predicted"], rel=0.01)
        assert r["eff_lr_measured"] == pytest.approx(r["eff_lr_predicted"], rel=0.02)
        assert r["angle_measured"] == pytest.approx(r["angle_predicted"], rel=0.03)
        assert np.isnan(r["period_predicted"]) and np.isnan(r["rho_critical"])
    wrs = run(obj, obj.init([0]), 0.1, 0.0, optimizer="wrs", noise=0.5, steps=200)
    row = compare_with_theory(wrs)[0]
    assert np.isnan(row["rho_predicted"]) and np.isnan(row["angle_predicted"])
