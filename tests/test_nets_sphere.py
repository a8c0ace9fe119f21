"""Training a network on the sphere at a fixed effective LR (--fixed-elr, per layer too) and the
regime sweep of nets.regimes (API, command line, one real-data check)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nets import TrainConfig, run_training
from nets.data import make_synthetic
from nets.regimes import main as regimes_main
from nets.training.regime_sweep import regime_configs, run_regime_sweep
from nets.training.trainer import Trainer
from theory.sphere import sphere_step

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TINY = dict(dataset="synthetic", width=2, batch_size=32, record_every=1, eval_every=-1, quiet=True,
            threads=1, checkpoint_every=0)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("per_layer", [False, True])
def test_fixed_elr_keeps_norms_and_records_the_elr(per_layer):
    cfg = TrainConfig(**TINY, iters=12, lr=0.5, fixed_elr=0.02, fixed_elr_per_layer=per_layer)
    r = math.sqrt(0.5 / 0.02)
    assert cfg.si_radius == pytest.approx(r) and cfg.wd_si == 0.0
    res = run_training(cfg, write=False)
    k = res.layer_norms.shape[1]
    if per_layer:      # every tensor on its sphere of radius r: each at ELR lr / r^2
        np.testing.assert_allclose(res.layer_norms, r, rtol=1e-5)
        np.testing.assert_allclose(res.steps["eff_lr"], 0.02 / k, rtol=1e-5)
    else:
        np.testing.assert_allclose(res.steps["si_norm"], r, rtol=1e-5)
        np.testing.assert_allclose(res.steps["eff_lr"], 0.02, rtol=1e-5)
        assert np.ptp(res.layer_norms[:, 0]) > 1e-3     # layers exchange norm, the total is fixed


@pytest.mark.parametrize("per_layer", [False, True])
def test_trainer_step_is_theorys_projected_step(per_layer):
    """One Trainer step equals theory.sphere.sphere_step (float64) on the flattened SI weights and
    the mini-batch gradient, blocks = the SI tensors in the per-layer variant."""
    cfg = TrainConfig(**TINY, iters=5, lr=1.0, fixed_elr=0.05, fixed_elr_per_layer=per_layer,
                      channels_last=False)
    tr = Trainer(cfg, make_synthetic())
    tr.run(2)
    state = torch.get_rng_state(), tr.sampler.state_dict()
    xb, yb, _ = tr.sampler.next()
    tr.sampler.load_state_dict(state[1])
    torch.set_rng_state(state[0])
    params = tr.watch.params
    grads = torch.autograd.grad(F.cross_entropy(tr.model(xb), yb), params)
    x = torch.cat([p.detach().double().reshape(-1) for p in params])
    g = torch.cat([q.double().reshape(-1) for q in grads])
    blocks = [p.numel() for p in params] if per_layer else None
    expect = sphere_step(x, g, 0.05, blocks=blocks)
    tr.step()
    got = torch.cat([p.detach().double().reshape(-1) for p in params])
    assert float((got - expect).norm() / expect.norm()) < 2e-6
    assert float((got - x).norm() / x.norm()) > 1e-3                # the step moved the weights


def test_fixed_elr_configuration_errors():
    with pytest.raises(ValueError, match="at most one"):
        TrainConfig(fixed_elr=1e-3, wrs_norm=2.0)
    with pytest.raises(ValueError, match="at most one"):
        TrainConfig(fixed_elr=1e-3, exp_lr=True)
    with pytest.raises(ValueError, match="needs fixed_elr"):
        TrainConfig(fixed_elr_per_layer=True)
    with pytest.raises(ValueError, match="fixed_elr"):
        TrainConfig(fixed_elr=-1.0)
    cfg = TrainConfig(**TINY, model="resnet18", iters=2, fixed_elr=1e-2, fixed_elr_per_layer=True)
    with pytest.raises(ValueError, match="SI only jointly"):
        Trainer(cfg, make_synthetic())


@pytest.mark.slow
def test_regime_sweep_labels_and_resumes(tmp_path):
    base = TrainConfig(**{**TINY, "record_every": 2}, iters=40)
    configs = regime_configs(base, [3.0, 1e-3])
    assert [c.fixed_elr for c in configs] == [1e-3, 3.0]
    rows, bounds, done = run_regime_sweep(configs, tmp_path)
    assert done and [r["regime"] for r in rows] == ["convergence", "divergence"]
    assert rows[0]["final_train_acc"] > 0.5 > 0.2 > rows[1]["final_train_acc"] and rows[1]["level"] > 1
    assert bounds["total"]["convergence_upper"] == pytest.approx(math.sqrt(3e-3))
    for name in ("regimes.json", "regimes.csv", "regimes.png"):
        assert (tmp_path / name).stat().st_size > 100
    stamp = (tmp_path / "elr0.001" / "metrics.npz").stat().st_mtime_ns
    rows2, _, _ = run_regime_sweep(configs, tmp_path)            # finished runs are not retrained
    assert (tmp_path / "elr0.001" / "metrics.npz").stat().st_mtime_ns == stamp
    assert [(r["regime"], r["level"]) for r in rows2] == [(r["regime"], r["level"]) for r in rows]


def test_regimes_cli_runs_and_rejects_bad_input(tmp_path, capsys):
    tiny = ["--dataset", "synthetic", "--width", "2", "--batch-size", "32", "--threads", "1", "--quiet",
            "--iters", "20", "--eval-every", "-1"]
    assert regimes_main([*tiny, "--elrs", "1e-3", "--fixed-elr-per-layer", "--sweep-dir", str(tmp_path / "s")]) == 0
    assert "ELR 0.001 per layer:" in capsys.readouterr().out
    assert json.loads((tmp_path / "s" / "regimes.json").read_text())["rows"][0]["per_layer"] is True
    for bad, needle in ((["--elrs", "0"], "--elrs"), (["--elrs", "1e-3", "--fixed-elr", "1"], "--elrs"),
                        (["--elrs", "1e-3", "--model", "resnet18", "--norm", "ln"], "convnet")):
        with pytest.raises(SystemExit) as exc:
            regimes_main([*tiny, *bad, "--sweep-dir", str(tmp_path / "bad")])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.skipif(not (DATA / "cifar-10-batches-py").is_dir(),
                    reason="real CIFAR-10 not found at ../shared/data (a user's clone has no shared data)")
def test_real_cifar_at_a_huge_elr_learns_nothing(tmp_path):
    """On real CIFAR-10 images a fixed ELR of 1 is divergence: the train loss stays at or above a
    random guess (ln 10) while each step turns the weights by ~arctan(ELR x G) ~ 90 degrees."""
    base = TrainConfig(**{**TINY, "record_every": 2, "dataset": "cifar10", "width": 4}, data_dir=str(DATA),
                       train_subset=256, iters=40)
    rows, _, _ = run_regime_sweep(regime_configs(base, [1.0]), tmp_path)
    assert rows[0]["regime"] == "divergence" and rows[0]["final_train_acc"] < 0.3
