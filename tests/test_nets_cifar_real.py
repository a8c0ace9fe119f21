"""Real CIFAR-10 (../shared/data beside the checkout): a few hundred steps checked against the theory.

Skipped, with the reason, where the data is absent (a user's clone); get it with
``python -m nets.data download cifar10 DIR``.
"""
from pathlib import Path

import numpy as np
import pytest

from nets import TrainConfig, run_training
from nets.data import CIFAR_MEAN, CIFAR_STD, load_data

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

pytestmark = pytest.mark.skipif(
    not (DATA / "cifar-10-batches-py").is_dir(),
    reason=f"real CIFAR-10 not found at {DATA} (a clone without ../shared/data); "
           f"get it with `python -m nets.data download cifar10 {DATA}`")


def test_real_cifar_loads_and_the_si_norm_follows_the_exact_recurrence():
    eta, lam = 1.0, 5e-3
    cfg = TrainConfig(dataset="cifar10", data_dir=str(DATA), width=4, train_subset=512, test_subset=256,
                      batch_size=64, lr=eta, wd=lam, iters=300, record_every=1, eval_every=100,
                      threads=1, quiet=True)
    data = load_data(cfg)
    assert tuple(data.x_train.shape) == (512, 3, 32, 32) and tuple(data.x_test.shape) == (256, 3, 32, 32)
    # real images: per-channel statistics near the authors' normalisation constants (noise would give 0.5/0.29)
    np.testing.assert_allclose(data.x_train.mean(dim=(0, 2, 3)).numpy(), CIFAR_MEAN, atol=0.02)
    np.testing.assert_allclose(data.x_train.std(dim=(0, 2, 3)).numpy(), CIFAR_STD, atol=0.06)
    res = run_training(cfg, write=False)
    assert res.si_groups.si == ["features.0.weight", "features.3.weight", "features.7.weight",
                                "features.11.weight"]
    assert res.si_groups.si == res.si_groups.individual
    s = res.steps
    assert len(s["iteration"]) == 300
    # ||x_{t+1}||^2 = (1 - eta*lam)^2 ||x_t||^2 + eta^2 ||grad_t||^2, step by step (Sec. 2 of the paper)
    rho, g = s["si_norm"], s["grad_norm"]
    predicted = (1 - eta * lam) ** 2 * rho[:-1] ** 2 + eta**2 * g[:-1] ** 2
    np.testing.assert_allclose(rho[1:] ** 2, predicted, rtol=2e-5)
    gradient_share = eta**2 * g[:-1] ** 2 / predicted
    assert gradient_share.max() > 1e-2          # both terms matter: the check is not WD alone
    assert s["train_loss"][-50:].mean() < 0.9 * s["train_loss"][:50].mean()   # it learns from real images


@pytest.mark.slow
def test_real_cifar_study_smoke(tmp_path):
    """The eta*lambda study's measurements on real images: batch sharpness on the step's own batch
    (finite, positive, on the sphere's scale), the anatomy and forecasts of the run record."""
    from nets.training.study import run_record
    from theory.stability import projected_stability_threshold

    cfg = TrainConfig(dataset="cifar10", data_dir=str(DATA), width=4, train_subset=512, test_subset=128,
                      batch_size=64, lr=2.0, wd=5e-3, iters=600, record_every=2, eval_every=300,
                      batch_sharpness_every=5, sharpness_every=100, sharpness_batches=1, sharpness_iters=6,
                      init_si_norm=10.0, threads=1, quiet=True)
    res = run_training(cfg, run_dir=tmp_path / "run")
    b = res.batch_sharpness
    assert len(b["iteration"]) == 120 and np.all(np.isfinite(b["batch_sharpness"]))
    np.testing.assert_allclose(b["sphere_batch_sharpness"], b["batch_sharpness"] * b["si_norm"] ** 2, rtol=1e-9)
    assert np.median(b["batch_sharpness"]) > 0                  # the loss curves up along the step
    rec, arrays, anatomy = run_record(tmp_path / "run")
    assert rec["threshold"] == pytest.approx(projected_stability_threshold(2.0, 5e-3))
    assert rec["n_periods"] == len(anatomy.periods) and arrays["bs_eff"].size == 120
    for p in anatomy.periods:
        assert p.rise + p.decay == p.length and p.rho_max >= p.rho_next
