"""SIMonitor's records leave the process as they are made: the output folder is checked when the
monitor is made, records stream to disk (a SIGKILL loses at most one flush interval), TensorBoard
gets the same numbers, a closure-based optimizer.step is measured after its closure, and the
Lightning callback attaches the monitor with one line."""
import csv
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_run import ROOT
from torch import nn

from nets import SIMonitor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def _data(n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(n)]


def _train(model, opt, data, mon, closure=False):
    for x, y in data:
        def compute():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss
        if closure:
            loss = opt.step(compute)
        else:
            loss = compute()
            opt.step()
        mon.step(loss.detach())


def test_the_output_folder_is_checked_when_the_monitor_is_made(tmp_path):
    (tmp_path / "file").write_text("x")
    model = _net()
    with pytest.raises(OSError):
        SIMonitor(model, torch.optim.SGD(model.parameters(), lr=0.1), example_batch=torch.randn(8, 6),
                  out=tmp_path / "file" / "sub", verbose=False)
    SIMonitor(model, torch.optim.SGD(model.parameters(), lr=0.1), example_batch=torch.randn(8, 6),
              out=tmp_path / "new" / "folder", verbose=False)
    assert (tmp_path / "new" / "folder").is_dir()


def test_records_stream_to_disk_before_close(tmp_path):
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, weight_decay=1e-2)
    mon = SIMonitor(model, opt, example_batch=torch.randn(8, 6), out=tmp_path, log_every=2, flush_every=3,
                    verbose=False)
    _train(model, opt, _data(14), mon)                     # 7 records: 6 flushed, 1 still buffered
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert len(rows) == 6
    assert [float(r["si_norm"]) for r in rows] == [r[5] for r in mon.recorder.steps[:6]]
    assert "norm:0.weight" in rows[0]
    mon.close()
    assert len(list(csv.DictReader((tmp_path / "metrics.csv").open()))) == 7


def test_a_sigkill_loses_at_most_one_flush_interval(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, sys, torch, torch.nn.functional as F
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from test_nets_monitor_sinks import _net, _data
        from nets import SIMonitor
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.2, weight_decay=1e-2)
        mon = SIMonitor(model, opt, example_batch=torch.randn(8, 6), out={str(tmp_path)!r}, log_every=1,
                        flush_every=10, verbose=False)
        for t, (x, y) in enumerate(_data(45)):
            loss = F.cross_entropy(model(x), y); opt.zero_grad(); loss.backward(); opt.step(); mon.step(loss)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -9, p.stderr
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert len(rows) == 40                                 # 45 records made, flushed every 10
    assert all(float(r["eq_angular_update"]) > 0 for r in rows)   # with the theory's values of each record
    p = subprocess.run([sys.executable, "-m", "nets.monitor", str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2 and "was not closed" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_closure_step_is_measured_after_its_closure():
    """optimizer.step(closure) (LBFGS-style, Lightning) records exactly what the plain loop does."""
    runs = []
    for closure in (False, True):
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.5, weight_decay=1e-2)
        mon = SIMonitor(model, opt, example_batch=torch.randn(8, 6), log_every=1, verbose=False)
        _train(model, opt, _data(8), mon, closure=closure)
        runs.append(np.array(mon.recorder.steps))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.all(runs[1][:, 7] > 0)                       # the gradient norm: the closure's, not stale


def test_tensorboard_gets_the_monitor_s_numbers(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed: pip install -e '.[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nets.monitor.sinks import TensorBoardSink

    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, weight_decay=1e-2)
    with SIMonitor(model, opt, example_batch=torch.randn(8, 6), log_every=2, sinks=[TensorBoardSink(tmp_path)],
                   verbose=False) as mon:
        _train(model, opt, _data(10), mon)
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    events = acc.Scalars("si/si_norm")
    assert [e.step for e in events] == [r[0] for r in mon.recorder.steps]
    np.testing.assert_allclose([e.value for e in events], [r[5] for r in mon.recorder.steps], rtol=1e-6)
    layer = acc.Scalars("si_layers/norm/0.weight")
    np.testing.assert_allclose([e.value for e in layer], [r[0] for r in mon.recorder.layer_norms], rtol=1e-6)


def test_lightning_callback_attaches_the_monitor_in_one_line(tmp_path):
    pytest.importorskip("lightning", reason="the lightning extra is not installed: pip install -e '.[lightning]'")
    import lightning

    from nets.monitor.lightning import SIMonitorCallback

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.2, weight_decay=1e-2)

    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(1)
    data = DataLoader(TensorDataset(torch.randn(320, 6, generator=g), torch.randint(0, 3, (320,), generator=g)),
                      batch_size=16)
    callback = SIMonitorCallback(out=tmp_path / "mon", log_every=2)
    trainer = lightning.Trainer(max_steps=20, accelerator="cpu", callbacks=[callback], logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Module(), train_dataloaders=data)
    mon = callback.monitor
    assert mon.names == ["net.0.weight"] and mon.iteration == 20
    steps = np.array(mon.recorder.steps)
    assert steps.shape[0] == 10 and np.all(steps[:, 7] > 0) and np.all(np.isfinite(steps[:, 3]))
    np.testing.assert_allclose(steps[:, 8], 0.2 / steps[:, 5] ** 2, rtol=1e-6)   # eff_lr = eta / rho^2
    assert callback.summary is not None and (tmp_path / "mon" / "periods.json").is_file()


def test_wandb_offline_run_holds_the_records(tmp_path, monkeypatch):
    """The offline run file, parsed back (tests/wandb_log.py), holds every record's numbers exactly."""
    pytest.importorskip("wandb", reason="the wandb extra is not installed: pip install -e '.[wandb]'")
    from wandb_log import history

    from nets.monitor.sinks import WandbSink, scalars

    monkeypatch.setenv("WANDB_SILENT", "true")
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, weight_decay=1e-2)
    with SIMonitor(model, opt, example_batch=torch.randn(8, 6), log_every=2, verbose=False,
                   sinks=[WandbSink(mode="offline", dir=str(tmp_path), project="sibn-test")]) as mon:
        _train(model, opt, _data(10), mon)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logged = history(next(runs[0].glob("run-*.wandb")))
    records = list(mon.recorder.step_records())
    assert sorted(logged) == [int(r.iteration) for r in records] == [0, 2, 4, 6, 8]
    layers = mon.recorder.layer_arrays()
    for i, r in enumerate(records):
        per_tensor = {q: dict(zip(mon.names, layers[k][i])) for q, k in
                      zip(("norm", "grad_norm", "angular_update"),
                          ("layer_norms", "layer_grad_norms", "layer_angular_updates"))}
        expected = scalars(r, per_tensor)
        assert {"si/si_norm", "si/eff_lr", "si/train_loss", "si_layers/norm/0.weight"} <= set(expected)
        assert logged[int(r.iteration)] == expected          # every key, every value to the last bit