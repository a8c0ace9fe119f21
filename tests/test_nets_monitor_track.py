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

from cli import verify_manifest, write_csv
from nets import SIMonitor
from nets.monitor.report import metrics_columns
from nets.monitor.theory import Hyper, equilibrium_law
from theory.rotational import adamw_equilibrium_norm, sgd_equilibrium_angular_update, sgd_equilibrium_norm

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
    assert verify_manifest(tmp_path / "part") == [] and verify_manifest(tmp_path / "whole") == []
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


@pytest.mark.parametrize("h", [
    Hyper("sgd", "SGD", 0.3, 5e-3), Hyper("sgd", "SGD", 0.1, 1e-2, 0.9),
    Hyper("sgd", "SGD", 0.1, 1e-2, 0.9, nesterov=True), Hyper("sgd", "SGD", 0.1, 1e-2, 0.5, dampening=0.3),
    Hyper("sgd", "SGD", 0.2, 1e-3, 0.9, decoupled=True), Hyper("adamw", "AdamW", 1e-3, 0.05, 0.9, decoupled=True)])
def test_the_equilibrium_law_is_the_theory_at_every_gradient_norm(h):
    """rho*(G) and eta~*(G) scaled from G = 1 equal theory.rotational's formulas called at each G."""
    g = np.geomspace(1e-3, 1e3, 13)
    law = equilibrium_law(h, 1000)
    got = np.array([law.at(v) for v in g])
    if h.kind == "sgd":
        rho = sgd_equilibrium_norm(h.lr, h.wd, g, h.momentum, nesterov=h.nesterov, dampening=h.dampening,
                                   decoupled=h.decoupled)
        eff = h.lr / rho ** 2
    else:
        rho = np.full(g.shape, adamw_equilibrium_norm(h.lr, h.wd, 1000))
        eff = h.lr / rho
    np.testing.assert_allclose(got[:, 0], rho, rtol=1e-13)
    np.testing.assert_allclose(got[:, 1], eff, rtol=1e-13)
    assert np.isnan(law.at(float("nan"))).all() == (h.kind == "sgd")


def test_no_equilibrium_law_without_a_formula():
    for h in (Hyper("sgd", "SGD", 0.1, 0.0), Hyper("adam", "Adam", 1e-3, 1e-2, 0.9), Hyper("sgd", "SGD", 10.0, 0.2)):
        assert np.isnan(equilibrium_law(h, 10).at(1.0)).all()


def test_with_out_no_table_of_records_grows_in_memory(tmp_path):
    """Every per-record table of the monitor (steps, per-tensor series, the theory's track, the online
    detector's series) keeps under one chunk in memory; the rest is in out/.records."""
    model, data = _setup()
    opt = _optimizer(model)
    mon = SIMonitor(model, opt, example_batch=data[0][0], log_every=1, out=tmp_path, verbose=False)
    _train(model, opt, data * 110, mon)                       # 4,400 records: more than a chunk (4,096)
    rec = mon.recorder
    tables = {"steps": rec.steps, "layer_norms": rec.layer_norms, "layer_grad_norms": rec.layer_grad_norms,
              "layer_angular_updates": rec.layer_angular_updates, "hyper": mon.track.hyper,
              "equilibrium": mon.track.series, "detector": mon.detector.store}
    for name, table in tables.items():
        assert len(table) == 4400 and table.in_memory == 4400 - 4096, name
        assert (tmp_path / ".records" / f"{name}.f64").stat().st_size == 4096 * table.width * 8, name
    mon.close()
