"""`python -m paper_figures cifar`: a tiny experiment on a fake CIFAR folder (CPU, CI), resumable."""
import math

import numpy as np
import pytest
from cli_run import publish_on_fake_cifar

from paper_figures import fig_cifar
from paper_figures.__main__ import main

TINY = fig_cifar.CifarExperiment(width=2, train_subset=96, test_subset=32, wd=2e-3, lrs=(0.5, 1.0, 1.5),
                                 twin=(2.0, 1e-3), iters=12, record_every=2, eval_every=6, sharpness_every=6,
                                 sharpness_batches=1, sharpness_iters=4, init_si_norm=20.0, batch_size=32,
                                 scale_length=True, batch_sharpness_every=2, init_scale_with_lr=True)


def test_presets_are_valid_and_hold_an_equal_product_twin():
    for name, exp in fig_cifar.PRESETS.items():
        cfgs = exp.configs("DATA")
        assert len(cfgs) == len(exp.lrs) + 1 >= 4, name
        products = [c.lr * c.wd for c in cfgs]
        twin = exp.twin[0] * exp.twin[1]
        assert sum(abs(p - twin) < 1e-12 for p in products) == 2, name      # the twin and its partner
        top = max(products)
        given = dict(zip(exp.lrs, exp.run_iters))
        for c in cfgs:   # scale_length: every run spans the same number of periods (iters ~ 1/(eta*lam))
            f = (top / (c.lr * c.wd)) ** exp.length_exponent if exp.scale_length else 1.0
            want = math.ceil(exp.iters * f)
            if c.wd == exp.wd and c.lr in given:     # measured run lengths replace the rule
                want = given[c.lr] - exp.fit_iters
            if abs(c.lr * c.wd - twin) < 1e-12:      # the compared pair gets at least twin_iters
                want = max(want, exp.twin_iters)
            assert c.iters - exp.fit_iters == want
            assert c.batch_sharpness_every == exp.batch_sharpness_every
            assert (c.sharpness_every, c.sharpness_from) == (exp.sharpness_every, exp.sharpness_from)
            assert c.full_train_eval and c.image_size is None and c.dataset == "cifar10"
    quick = fig_cifar.PRESETS["quick"].configs("DATA")
    assert [(c.lr, c.wd, c.iters) for c in quick] == [(0.25, 1e-3, 7000), (0.5, 1e-3, 6500), (1.0, 1e-3, 4200),
                                                     (0.5, 2e-3, 4200), (2.0, 1e-3, 2500), (3.0, 1e-3, 2500)]
    # every run starts at the same effective LR (norm 20 sqrt(eta)); the twin at its partner's norm
    assert [round(c.init_si_norm ** 2 / c.lr, 6) for c in quick if c.wd == 1e-3] == [400.0] * 5
    assert [c.init_si_norm for c in quick if c.wd == 2e-3] == [20.0]
    eta_lams = sorted({c.lr * c.wd for c in quick})
    assert len(eta_lams) >= 4 and eta_lams[-1] / eta_lams[0] >= 10      # >= 4 values over >= a decade


def test_twin_ratio_standard_error_matches_a_monte_carlo():
    rng = np.random.default_rng(0)
    n_t, n_p, trials = 16, 20, 4000
    t = rng.gamma(16.0, 10.0, size=(trials, n_t))          # mean 160, cv 0.25
    p = rng.gamma(9.0, 20.0, size=(trials, n_p))           # mean 180, cv 0.33
    ratios = t.mean(1) / p.mean(1)
    rec = lambda x: {"measured_period": float(x.mean()), "std_period": float(x.std()), "n_periods": x.size}
    r, se = fig_cifar.twin_ratio(rec(t[0]), rec(p[0]))
    assert r == pytest.approx(t[0].mean() / p[0].mean())
    assert se == pytest.approx(ratios.std(), rel=0.2)      # the delta method vs the spread of 4,000 ratios
    assert fig_cifar.twin_ratio({"measured_period": None, "n_periods": 0}, rec(p[0])) == (None, None)


@pytest.mark.slow
def test_cifar_experiment_end_to_end_on_fake_data_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(fig_cifar.PRESETS, "quick", TINY)
    s, args = publish_on_fake_cifar(tmp_path, "cifar")
    runs = s["runs"]
    assert [(r["eta"], r["lam"]) for r in runs] == [(0.5, 2e-3), (1.0, 2e-3), (1.5, 2e-3), (2.0, 1e-3)]
    assert [r["iterations"] for r in runs] == [36, 18, 12, 18]
    for r in runs:
        for key in ("eta", "lam", "eta_lam", "n_periods", "measured_period", "predicted_period",
                    "measured_over_predicted", "rise", "decay", "decay_predicted", "same_period_ratio", "images_per_s"):
            assert key in r
        assert set(r["forecast"]) >= set(fig_cifar.FORECAST_METHODS)
        assert r["train_subset"] == 96 and r["width"] == 2
    for key in ("rise_fit", "frequency_fit", "forecast_median_abs_error_fraction"):
        assert key in s
    z = np.load(tmp_path / "out" / "cifar.npz")
    assert z["run0_bs_eff"].size > 0
    assert "twin_length_ratio" in s and s["experiment"]["lrs"] == [0.5, 1.0, 1.5]
    assert "twin_norm_ratio" in s and s["twin_norm_ratio_predicted"] == pytest.approx(math.sqrt(2.0))
    runs_dir = fig_cifar.experiment_dir(tmp_path / "out", "quick", TINY)
    first = {p: p.stat().st_mtime_ns for p in runs_dir.glob("*/metrics.npz")}
    assert len(first) == 4
    assert main(args) == 0                            # finished runs are reused, not trained again
    assert {p: p.stat().st_mtime_ns for p in first} == first


def test_cifar_without_data_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SIBN_DATA_DIR", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["cifar", "--quick", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nets.data download cifar10" in err and "SIBN_DATA_DIR" in err


def test_a_forecast_of_now_has_no_relative_error():
    from paper_figures.common import relative_error, table_row

    assert relative_error(2.0, 3.0) == pytest.approx(0.5)
    assert math.isnan(relative_error(0.0, 40.0))      # the CIFAR forecast's median was "0 iterations away"
    assert math.isnan(table_row("q", "s", 0.0, 40.0)["rel_error"])


def test_periodic_mean_norm_starts_at_the_first_destabilisation():
    it, norm = np.arange(0, 50, 5), np.arange(10.0)
    from nets.training.study import periodic_mean

    assert periodic_mean(it, norm, [25, 40]) == pytest.approx(np.mean([5, 6, 7, 8, 9]))
    assert periodic_mean(it, norm, []) is None
