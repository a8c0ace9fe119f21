"""bf16 autocast: the flag through config, resume and sweeps; the SI identity and the monitor under it."""
import json

import numpy as np
import pytest
import torch
from cli_run import TINY
from cli_run import run_cli as _cli
from torch import nn

from nets import SIMonitor
from nets.config import TrainConfig
from nets.training.precision import autocast, check_precision

SMALL = dict(model="convnet", mode="si", dataset="synthetic", width=4, image_size=8, batch_size=16, iters=12,
             record_every=2, eval_every=6, checkpoint_every=4, quiet=True)


def _si_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8, affine=False), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8, affine=False), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def test_precision_is_validated_and_kept_on_resume(tmp_path):
    from nets.training.run import resume_training, run_training

    with pytest.raises(ValueError, match="precision"):
        TrainConfig(**SMALL, precision="fp16")
    part = run_training(TrainConfig(**SMALL, precision="bf16"), run_dir=tmp_path / "r", stop_after=8)
    assert not part.completed
    done = resume_training(tmp_path / "r")
    assert done.completed and done.config.precision == "bf16"
    assert json.loads((tmp_path / "r" / "config.json").read_text())["config"]["precision"] == "bf16"
    for k in ("si_norm", "eff_lr", "angular_update"):
        assert done.steps[k].dtype == np.float64 and np.all(np.isfinite(done.steps[k]))


def test_bf16_changes_the_arithmetic():
    from nets.training.run import run_training

    fp = run_training(TrainConfig(**SMALL), run_dir=None)
    bf = run_training(TrainConfig(**SMALL, precision="bf16"), run_dir=None)
    first = abs(fp.steps["train_loss"][0] - bf.steps["train_loss"][0]) / fp.steps["train_loss"][0]
    assert 0 < first < 1e-2                  # autocast is on (same weights, other arithmetic), and close


def test_sweep_passes_precision_to_every_run(tmp_path):
    _cli("nets.sweep", *TINY, "--lrs", "0.5", "1", "--iters", "6", "--record-every", "2", "--precision", "bf16",
         "--sweep-dir", tmp_path / "sw", check=0)
    configs = [json.loads(p.read_text())["config"] for p in (tmp_path / "sw").glob("*/config.json")]
    assert len(configs) == 2 and {c["precision"] for c in configs} == {"bf16"}


def test_bad_precision_is_one_line():
    p = _cli("nets.train", *TINY, "--precision", "fp16", check=2)
    assert p.stderr.count("\n") == 1 and "--precision" in p.stderr
    with pytest.raises(ValueError, match="bf16 autocast is supported here on cpu and cuda only"):
        check_precision("bf16", torch.device("meta"))
    check_precision("fp32", torch.device("meta"))     # fp32 runs anywhere


def test_si_identity_under_bf16_autocast():
    """|<grad f(x), x>| / (|grad f| |x|) <= 1e-3 per SI tensor with the forward in bf16."""
    net = _si_net()
    x, y = torch.randn(32, 3, 8, 8), torch.randint(0, 4, (32,))
    with autocast("bf16", torch.device("cpu")):
        loss = nn.functional.cross_entropy(net(x), y)
    assert loss.dtype == torch.float32
    loss.backward()
    for w in (net[0].weight, net[3].weight):
        assert w.dtype == torch.float32 and w.grad.dtype == torch.float32
        cos = (w.grad * w).sum().abs() / (w.grad.norm() * w.norm())
        assert cos <= 1e-3


def test_simonitor_in_a_users_autocast_loop(tmp_path):
    net = _si_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.5, weight_decay=1e-3)
    x, y = torch.randn(64, 3, 8, 8), torch.randint(0, 4, (64,))
    with SIMonitor(net, opt, example_batch=x[:8], log_every=2, out=tmp_path / "mon") as mon:
        for i in range(20):
            xb, yb = x[(i % 4) * 16:(i % 4 + 1) * 16], y[(i % 4) * 16:(i % 4 + 1) * 16]
            with autocast("bf16", torch.device("cpu")):
                loss = nn.functional.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.step(loss)
    steps = mon.recorder.arrays()[0]
    assert len(steps["iteration"]) == 10
    for k in ("train_loss", "si_norm", "grad_norm", "eff_lr", "angular_update"):
        assert steps[k].dtype == np.float64 and np.all(np.isfinite(steps[k])), k
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_identity_residuals_are_tiny_in_fp32_and_larger_in_bf16():
    from nets.data import load_data
    from nets.training.precision import identity_residuals
    from nets.training.trainer import Trainer

    out = {}
    for p in ("fp32", "bf16"):
        cfg = TrainConfig(**{**SMALL, "wd": 1e-2}, precision=p)
        out[p] = identity_residuals(Trainer(cfg, load_data(cfg)), steps=5)
    assert out["fp32"]["cos"].shape == (5, 4) and len(out["fp32"]["names"]) == 4
    assert np.abs(out["fp32"]["cos"]).max() < 1e-5 and out["fp32"]["recurrence_residual"].max() < 1e-6
    assert np.abs(out["bf16"]["cos"]).max() < 1e-2
    assert np.median(np.abs(out["bf16"]["cos"])) > np.median(np.abs(out["fp32"]["cos"]))


def test_bf16_on_a_device_without_it_is_refused_before_any_folder(tmp_path, monkeypatch):
    from nets.training.run import run_training

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "an old GPU")
    import nets.training.run as run_mod
    monkeypatch.setattr(run_mod, "resolve_device", lambda name: torch.device("cuda"))
    with pytest.raises(ValueError, match="bf16 needs a GPU that supports it; an old GPU does not"):
        run_training(TrainConfig(**SMALL, precision="bf16", device="cuda"), run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()
