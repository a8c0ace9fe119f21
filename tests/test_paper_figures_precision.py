"""`python -m paper_figures precision`: FP32 vs bf16 on a fake CIFAR folder (tiny), and the comparison."""

import numpy as np
import pytest
from cli_run import publish_on_fake_cifar

from paper_figures import fig_precision

TINY = fig_precision.PrecisionExperiment(width=2, train_subset=96, test_subset=32, wd=2e-3, lrs=(0.5, 1.0),
                                         run_iters=(12, 10), seeds=(0, 1), fit_iters=0, init_si_norm=20.0,
                                         record_every=2, eval_every=6, identity_steps=2, batch_size=32)


def test_compare_interval_covers_a_known_shift():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(200):
        a, b = rng.normal(10, 1, 5), rng.normal(11, 1, 5)
        c = fig_precision.compare(a.tolist(), b.tolist())
        hits += c["interval"][0] <= 1.0 <= c["interval"][1]
        assert c["diff"] == pytest.approx(b.mean() - a.mean())
    assert 0.90 <= hits / 200 <= 0.99                      # a 95 % interval
    same = fig_precision.compare([1.0, 2.0, 3.0], [1.1, 2.1, 2.9])
    assert same["detectable"] is False and same["fp32_sd"] == pytest.approx(1.0)
    assert fig_precision.compare([1.0], [None, float("nan")])["interval"] is None


def test_presets_hold_three_seeds_two_eta_lams_both_precisions():
    for exp in fig_precision.PRESETS.values():
        jobs = exp.jobs("DATA", "SW")
        assert len(jobs) == len(exp.lrs) * len(exp.seeds) * 2 and len(exp.seeds) >= 3 and len(exp.lrs) == 2
        assert len({d for _, d in jobs}) == len(jobs)                    # one folder per run
        assert {c.precision for c, _ in jobs} == {"fp32", "bf16"}


@pytest.mark.slow
def test_precision_experiment_end_to_end_on_fake_data(tmp_path, monkeypatch):
    monkeypatch.setitem(fig_precision.PRESETS, "quick", TINY)
    s, _ = publish_on_fake_cifar(tmp_path, "precision")
    assert len(s["runs"]) == 8 and {r["precision"] for r in s["runs"]} == {"fp32", "bf16"}
    assert set(s["comparisons"]) == {"0.5", "1"} and "equilibrium_norm" in s["comparisons"]["0.5"]
    ident = s["identity"]["0.5"]
    assert ident["fp32"]["max_abs_cos"] < 1e-4 and len(ident["bf16"]["median_abs_cos"]) == 4
