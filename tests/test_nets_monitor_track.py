"""The theory's values of every record are computed as the record is made (nets.monitor.track), so
metrics.csv can grow with the run: the streamed file is the table written at once, the values equal
an offline computation, and a resumed monitor (new state or a checkpoint from before the track)
continues the same file."""
import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cli import write_csv
from nets import SIMonitor
from nets.monitor.report import metrics_columns
from theory.rotational import sgd_equilibrium_angular_update, sgd_equilibrium_norm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.Linear(16, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    g = torch.Generator().manual_seed(seed + 1)
    data = [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(40)]
    return model, data


def _optimizer(model, split=False):
    if not split:
        return torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.5, weight_decay=5e-3)
    first, rest = [model[0].weight], [p for n, p in model.named_parameters() if n != "0.weight"]
    return torch.optim.SGD([{"params": first}, {"params": rest}], lr=0.3, momentum=0.5, weight_decay=5e-3)


def _train(model, opt, data, mon, sched=None):
    for x, y in data:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.step(loss)
        if sched is not None:
            sched.step()


def test_the_streamed_metrics_csv_is_the_table_written_at_once(tmp_path):
    model, data = _setup()
    opt = _optimizer(model)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)
    mon = SIMonitor(model, opt, example_batch=data[0][0], log_every=2, last_step=39, out=tmp_path / "run",
                    flush_every=4, verbose=False)
    _train(model, opt, data, mon, sched)
    mon.close()
    write_csv(tmp_path / "at_once.csv", metrics_columns(mon))
    streamed = (tmp_path / "run" / "metrics.csv").read_bytes()
    assert streamed == (tmp_path / "at_once.csv").read_bytes()
    assert streamed.count(b"\n") == 1 + 21                   # header + records at 0, 2, ..., 38 and 39
    npz = np.load(tmp_path / "run" / "metrics.npz")
    np.testing.assert_array_equal(npz["eq_si_norm"], mon.track.arrays()["eq_si_norm"])


def test_the_track_equals_an_offline_computation_of_the_theory():
    """rho*, eta~* and Delta theta* per record from the recorded gradient norms and the scheduled LR,
    computed here directly from theory.rotational; NaN where the groups' hyper-parameters differ."""
    model, data = _setup()
    opt = _optimizer(model, split=True)
    mon = SIMonitor(model, opt, example_batch=data[0][0], log_every=1, verbose=False)
    for t, batch in enumerate(data):
        if t == 25:                                          # the groups part: no single equilibrium
            opt.param_groups[0]["lr"] = 0.1
        _train(model, opt, [batch], mon)
    steps, _, _ = mon.recorder.arrays()
    track = mon.track.arrays()
    g = steps["eff_grad_norm"]
    rms = np.array([np.sqrt(np.mean(g[max(0, i - 9):i + 1] ** 2)) for i in range(g.size)])
    numel = sum(mon.watch.sizes)
    assert numel == 6 * 16 + 16 * 16
    norm = sgd_equilibrium_norm(0.3, 5e-3, rms[:25], 0.5)
    np.testing.assert_allclose(track["eq_si_norm"][:25], norm, rtol=1e-12)
    np.testing.assert_allclose(track["eq_eff_lr"][:25], 0.3 / norm ** 2, rtol=1e-12)
    np.testing.assert_allclose(track["eq_angular_update"][:25], sgd_equilibrium_angular_update(0.3, 5e-3, 0.5))
    assert np.isnan(track["eq_si_norm"][25:]).all() and np.isnan(track["eq_angular_update"][25:]).all()
    assert track["lr"][:, 0].tolist() == [0.3] * 25 + [0.1] * 15 and (track["lr"][:, 1] == 0.3).all()
    np.testing.assert_allclose(track["eq_angle"][25:, 0], sgd_equilibrium_angular_update(0.1, 5e-3, 0.5))
    s = mon.summary()
    assert s["total"]["eq_angular_update"] != s["total"]["eq_angular_update"]       # NaN: groups differ now
    assert s["layers"][0]["eq_angular_update"] == pytest.approx(sgd_equilibrium_angular_update(0.1, 5e-3, 0.5))


def test_a_resumed_monitor_continues_the_same_metrics_csv(tmp_path):
    model, data = _setup()
    opt = _optimizer(model)
    whole = SIMonitor(model, opt, example_batch=data[0][0], log_every=3, out=tmp_path / "whole", verbose=False)
    _train(model, opt, data, whole)
    whole.close()

    model, data = _setup()
    opt = _optimizer(model)
    first = SIMonitor(model, opt, example_batch=data[0][0], log_every=3, out=tmp_path / "part", verbose=False)
    _train(model, opt, data[:20], first)
    saved = [copy.deepcopy(x) for x in (model.state_dict(), opt.state_dict(), first.state_dict(),
                                         first.recorder.state_dict())]
    _train(model, opt, data[20:23], first)                   # records after the checkpoint, then a crash
    first.stream.close()
    del first

    model, _ = _setup(seed=5)
    model.load_state_dict(saved[0])
    opt = _optimizer(model)
    opt.load_state_dict(saved[1])
    again = SIMonitor(model, opt, si_groups=whole.names, log_every=3, out=tmp_path / "part", verbose=False)
    again.load_state_dict(saved[2], saved[3])
    _train(model, opt, data[20:], again)
    again.close()
    assert (tmp_path / "part" / "metrics.csv").read_bytes() == (tmp_path / "whole" / "metrics.csv").read_bytes()
    assert again.detector.events == whole.detector.events


def test_a_checkpoint_from_before_the_track_is_replayed():
    """Old checkpoints hold a log of hyper-parameter changes instead of the track: rebuilt exactly."""
    model, data = _setup()
    opt = _optimizer(model)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
    mon = SIMonitor(model, opt, example_batch=data[0][0], log_every=1, verbose=False)
    _train(model, opt, data[:10], mon, sched)
    h = mon.current_hypers()[0]
    old = {"iteration": 10, "hyper_log": [[i, [replace(h, lr=lr).to_dict()]] for i, lr in ((0, 0.3), (4, 0.15),
                                                                                           (8, 0.075))]}
    twin = SIMonitor(model, opt, si_groups=mon.names, log_every=1, verbose=False)
    twin.load_state_dict(old, mon.recorder.state_dict())
    for k, v in mon.track.arrays().items():
        np.testing.assert_array_equal(twin.track.arrays()[k], v, err_msg=k)
