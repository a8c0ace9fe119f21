"""nets.SIMonitor in a plain PyTorch loop: metrics vs explicit float64 computations (SGD, SGD with
momentum and an LR schedule, AdamW), training unchanged bit for bit, clear errors on bad use,
hooks-only use, jointly SI groups, the files, and online detection == offline on a periodic run."""
import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nets import SIMonitor, TrainConfig
from nets.data import make_synthetic
from nets.models import build_model
from nets.monitor import NoSIParameters, TrainingDiverged
from nets.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CONVS = ["features.0.weight", "features.3.weight", "features.7.weight", "features.11.weight"]


def _setup(seed=0, mode="practical"):
    torch.manual_seed(seed)
    model = build_model("convnet", mode=mode, width=2, input_size=8, num_classes=10)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    return model, x, y


def _optimizer(kind, model):
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.3, weight_decay=1e-2)
    if kind == "sgd-momentum":
        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    return torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1, betas=(0.8, 0.999))


def _angle(a, b):
    """arccos of the cosine in float64: an independent formula for the angle."""
    return math.acos(min(1.0, float(a @ b / (a.norm() * b.norm()))))


@pytest.mark.parametrize("kind", ["sgd", "sgd-momentum", "adamw"])
def test_metrics_equal_an_explicit_float64_computation(kind):
    model, x, y = _setup()
    opt = _optimizer(kind, model)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lr0, wd = opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"]
    mon = SIMonitor(model, opt, example_batch=x[:8], log_every=1, verbose=False)
    assert mon.names == CONVS                                  # BN-followed convs, found by testing
    params = dict(model.named_parameters())
    expect = []
    for t in range(6):
        i = slice(8 * t, 8 * t + 16)
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        before = [params[n].detach().double().reshape(-1).clone() for n in CONVS]
        grads = [params[n].grad.double().reshape(-1).clone() for n in CONVS]
        opt.step()
        sched.step()
        after = [params[n].detach().double().reshape(-1) for n in CONVS]
        mon.step(loss)
        rho = math.sqrt(sum(float(b @ b) for b in before))
        lr = lr0 * 0.5 ** (t // 2)                              # the schedule, by hand
        expect.append({"lr": lr, "loss": float(loss.detach()), "rho": rho,
                       "layer_rho": [float(b.norm()) for b in before],
                       "layer_g": [float(g.norm()) for g in grads],
                       "g": math.sqrt(sum(float(g @ g) for g in grads)),
                       "angle": _angle(torch.cat(before), torch.cat(after)),
                       "layer_angle": [_angle(b, a) for b, a in zip(before, after)],
                       "eff_lr": lr / rho if kind == "adamw" else lr / rho ** 2})
    s = mon.close()
    steps, _, _ = mon.recorder.arrays()
    layers = mon.recorder.layer_arrays()
    for t, e in enumerate(expect):
        assert steps["iteration"][t] == t and steps["lr"][t] == pytest.approx(e["lr"], rel=1e-12)
        assert steps["train_loss"][t] == pytest.approx(e["loss"], rel=1e-6)
        assert steps["si_norm"][t] == pytest.approx(e["rho"], rel=1e-6)
        assert steps["grad_norm"][t] == pytest.approx(e["g"], rel=1e-5)
        assert steps["eff_grad_norm"][t] == pytest.approx(e["rho"] * e["g"], rel=1e-5)
        assert steps["eff_lr"][t] == pytest.approx(e["eff_lr"], rel=1e-5)
        assert steps["angular_update"][t] == pytest.approx(e["angle"], rel=1e-3, abs=1e-6)
        np.testing.assert_allclose(layers["layer_norms"][t], e["layer_rho"], rtol=1e-6)
        np.testing.assert_allclose(layers["layer_grad_norms"][t], e["layer_g"], rtol=1e-5)
        np.testing.assert_allclose(layers["layer_angular_updates"][t], e["layer_angle"], rtol=1e-3, atol=1e-6)
    # the equilibrium angle for the hyper-parameters of the last step, by hand (formulas: test_theory_*)
    lr = expect[-1]["lr"]
    want = {"sgd": math.acos(1 - lr * wd), "sgd-momentum": math.acos(1 - lr * wd / 1.9),
            "adamw": math.sqrt(2 * lr * wd * 0.2 / 1.8)}[kind]
    assert s["series"]["eq_angular_update"][-1] == pytest.approx(want, rel=1e-12)
    assert s["optimizer"][0]["kind"] == ("adamw" if kind == "adamw" else "sgd")


def _train(model, opt, x, y, steps, mon=None):
    for t in range(steps):
        i = slice((4 * t) % 48, (4 * t) % 48 + 16)
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if mon is not None:
            mon.step(loss)


@pytest.mark.parametrize("kind", ["sgd-momentum", "adamw"])
def test_the_monitor_never_changes_training(kind):
    model, x, y = _setup()
    twin = copy.deepcopy(model)
    opt_a, opt_b = _optimizer(kind, model), _optimizer(kind, twin)
    mon = SIMonitor(model, opt_a, example_batch=x[:8], log_every=3, sharpness_every=4, verbose=False,
                    sharpness_batches=[(x[:16], y[:16])], sharpness_iters=5)
    _train(model, opt_a, x, y, 12, mon)
    mon.close()
    _train(twin, opt_b, x, y, 12)
    assert len(mon.recorder.sharpness) == 3 and len(mon.recorder.steps) == 4
    for (n, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), n                       # weights and BN buffers, bit for bit
    for sa, sb in zip(opt_a.state.values(), opt_b.state.values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bad_use_gets_one_clear_message():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(NoSIParameters, match="no scale-invariant parameters in Sequential.*normalisation"):
        SIMonitor(mlp, torch.optim.SGD(mlp.parameters(), lr=0.1), example_batch=torch.randn(4, 12))
    model, x, y = _setup()
    with pytest.raises(ValueError, match="example_batch"):
        SIMonitor(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="does not train the SI parameters"):
        SIMonitor(model, torch.optim.SGD(model.linear.parameters(), lr=0.1), example_batch=x[:8])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = SIMonitor(model, opt, example_batch=x[:8], log_every=1, verbose=False)
    with pytest.warns(UserWarning, match="after optimizer.step"):
        mon.step(torch.tensor(1.0))
    loss = F.cross_entropy(model(x[:16]), y[:16])
    opt.zero_grad()
    loss.backward()
    opt.step()
    with pytest.raises(TrainingDiverged, match="loss is nan at iteration 0: training diverged"):
        mon.step(loss * float("nan"))


def test_hooks_alone_record_everything_but_the_loss(tmp_path):
    model, x, y = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.5, weight_decay=1e-3)
    mon = SIMonitor(model, opt, example_batch=x[:8], log_every=2, out=tmp_path, verbose=False)
    _train(model, opt, x, y, 9)                          # no mon.step() at all
    s = mon.close()
    steps, _, _ = mon.recorder.arrays()
    assert list(steps["iteration"]) == [0, 2, 4, 6, 8] and np.all(np.isnan(steps["train_loss"]))
    assert np.all(steps["si_norm"] > 0) and np.all(steps["angular_update"] > 0)
    assert s["regime"]["regime"] in ("approaching equilibrium", "at equilibrium")
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"eff_lr", "eq_angular_update", "eq_si_norm", "angular_update:features.0.weight",
            "grad_norm:features.11.weight", "norm:features.3.weight"} <= set(header)
    rep = json.loads((tmp_path / "periods.json").read_text())
    assert rep["regime"]["regime"] == s["regime"]["regime"] and rep["si_groups"]["si"] == CONVS
    assert not (tmp_path / "plot.png").exists()          # close() only finalises the data
    assert mon.plot().stat().st_size > 0                  # the figure on demand, into out/plot.png
    assert (tmp_path / "layers.csv").read_text().splitlines()[-1].startswith("total,group")
    _train(model, opt, x, y, 2)                          # closed: the hooks are gone
    assert len(mon.recorder.steps) == 5


def test_jointly_si_tensors_of_a_resnet_are_found_and_marked():
    torch.manual_seed(0)
    model = build_model("resnet18", mode="si", width=2, input_size=8, num_classes=10)
    x = torch.randn(16, 3, 8, 8)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=1e-3)
    mon = SIMonitor(model, opt, example_batch=x[:8], log_every=1, verbose=False)
    _train(model, opt, x, torch.randint(0, 10, (16,)), 2)
    rows = mon.summary()["layers"]
    joint = [r["name"] for r in rows if r["si"] == "joint"]
    assert len(rows) == 20 and len(joint) == 12 and "conv1.weight" in joint
    assert all(r["state"] == "joint" and math.isnan(r["eq_angular_update"]) for r in rows if r["si"] == "joint")
    assert all(math.isfinite(r["eq_angular_update"]) for r in rows if r["si"] == "individual")


def test_online_detection_equals_the_offline_analysis_on_a_periodic_run():
    cfg = TrainConfig(dataset="synthetic", width=4, batch_size=32, record_every=2, eval_every=-1, quiet=True,
                      threads=1, iters=260, lr=1.0, wd=0.03, init_si_norm=None)
    tr = Trainer(cfg, make_synthetic())
    tr.monitor.detector.every = 1                        # detect at every record, as a user's monitor would
    announced = []
    for _ in range(cfg.iters):
        tr.step()
        announced = list(tr.monitor.detector.reported)
    s = tr.monitor.summary()
    assert len(s["online_events"]) >= 3
    assert announced == s["online_events"] == s["periods"]["event_iterations"]
    assert s["regime"]["regime"] == "periodic"


def test_state_round_trip_keeps_the_hyper_parameters_of_every_record():
    model, x, y = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    mon = SIMonitor(model, opt, example_batch=x[:8], log_every=1, verbose=False)
    for _ in range(7):
        _train(model, opt, x, y, 1, mon)
        sched.step()
    track = mon.track.arrays()
    assert track["lr"][:, 0].tolist() == [0.2] * 3 + [0.1] * 3 + [0.05]
    np.testing.assert_allclose(track["eq_angle"][:, 0], np.sqrt(2 * track["lr"][:, 0] * 1e-3), rtol=1e-3)
    twin = SIMonitor(model, opt, si_groups=mon.names, log_every=1, verbose=False)
    twin.load_state_dict(mon.state_dict(), mon.recorder.state_dict())
    assert twin.iteration == 7 and twin.current_hypers() == mon.current_hypers()
    for k, v in mon.track.arrays().items():
        np.testing.assert_array_equal(twin.track.arrays()[k], v)
    assert twin.detector.norm.tolist() == mon.detector.norm.tolist()
