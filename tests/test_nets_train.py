"""Training loop of nets/: recorded quantities, reproducibility, resume, WRS, exponential LR."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from nets import TrainConfig, resume_training, run_training
from nets.data import make_synthetic
from nets.training.checkpoint import load_checkpoint
from nets.training.trainer import Trainer
from theory.dynamics import next_sq_norm

TINY = dict(dataset="synthetic", width=2, batch_size=32, record_every=3, eval_every=7, quiet=True,
            threads=1, checkpoint_every=10, init_si_norm=None)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _same_tables(a, b):
    assert a.steps.keys() == b.steps.keys()
    for k in a.steps:
        np.testing.assert_array_equal(a.steps[k], b.steps[k], err_msg=k)
    for k in a.evals:
        np.testing.assert_array_equal(a.evals[k], b.evals[k], err_msg=k)
    np.testing.assert_array_equal(a.layer_norms, b.layer_norms)


def test_same_seed_same_metrics_different_seed_different():
    cfg = TrainConfig(**TINY, iters=25, augment=True)
    a, b = run_training(cfg, write=False), run_training(replace(cfg), write=False)
    _same_tables(a, b)
    c = run_training(replace(cfg, seed=1), write=False)
    assert not np.array_equal(a.steps["train_loss"], c.steps["train_loss"])


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    cfg = TrainConfig(**TINY, iters=40, augment=True, momentum=0.9, out=str(tmp_path))
    full = run_training(cfg, run_dir=tmp_path / "full")
    part = run_training(cfg, run_dir=tmp_path / "part", stop_after=17)  # mid-epoch, mid-interval
    assert not part.completed and part.iterations == 17
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["trainer"]["iteration"] == 17
    res = resume_training(tmp_path / "part")
    assert res.completed and res.iterations == 40
    _same_tables(full, res)
    wa = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["trainer"]["model"]
    wb = load_checkpoint(tmp_path / "part" / "checkpoint.pt")["trainer"]["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_can_extend_a_finished_run(tmp_path):
    cfg = TrainConfig(**TINY, iters=30, out=str(tmp_path))
    long = run_training(replace(cfg, iters=50), write=False)
    run_training(cfg, run_dir=tmp_path / "r")
    ext = resume_training(tmp_path / "r", iters=50)
    # the first run recorded its last step (29) as an extra row; otherwise identical
    keep = (long.steps["iteration"] != 29)
    np.testing.assert_array_equal(ext.steps["si_norm"][ext.steps["iteration"] != 29],
                                  long.steps["si_norm"][keep])


def _si_params(tr):
    return tr.watch.params


def test_recorded_norm_effective_lr_grad_norm_and_angle_match_the_weights():
    cfg = TrainConfig(**{**TINY, "record_every": 1}, iters=10, lr=0.7, wd=0.01)
    tr = Trainer(cfg, make_synthetic())
    tr.run(5)
    before = [p.detach().double().clone() for p in _si_params(tr)]
    rho = math.sqrt(sum(float((b ** 2).sum()) for b in before))
    tr.run(6)
    row = dict(zip(tr.recorder.arrays()[0].keys(), tr.recorder.steps[-1]))
    assert row["iteration"] == 5
    assert row["si_norm"] == pytest.approx(rho, rel=1e-6)
    assert row["eff_lr"] == pytest.approx(0.7 / rho ** 2, rel=1e-6)
    g = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in _si_params(tr)))
    assert row["grad_norm"] == pytest.approx(g, rel=1e-5)
    assert row["eff_grad_norm"] == pytest.approx(rho * g, rel=1e-5)
    a = torch.cat([b.reshape(-1) for b in before])
    b = torch.cat([p.detach().double().reshape(-1) for p in _si_params(tr)])
    cos = float(a @ b / (a.norm() * b.norm()))
    assert row["angular_update"] == pytest.approx(math.acos(min(cos, 1.0)), rel=1e-3, abs=1e-6)
    norms = tr.recorder.layer_norms[-1]
    assert norms == pytest.approx([float(x.norm()) for x in before], rel=1e-6)


def test_norm_follows_exact_sgd_wd_recurrence():
    """||x+||^2 = (1-eta*lam)^2 ||x||^2 + eta^2 ||g||^2 (Lobacheva et al., 2021, Sec. 2;
    theory.dynamics.next_sq_norm), since g is orthogonal to x."""
    cfg = TrainConfig(**{**TINY, "record_every": 1}, iters=8, lr=0.5, wd=0.05)
    tr = Trainer(cfg, make_synthetic())
    tr.run()
    steps = tr.recorder.arrays()[0]
    rho, g = steps["si_norm"], steps["grad_norm"]
    pred = (1 - 0.5 * 0.05) ** 2 * rho[:-1] ** 2 + 0.25 * g[:-1] ** 2
    np.testing.assert_allclose(rho[1:] ** 2, pred, rtol=2e-4)


def test_wrs_keeps_the_si_norm_fixed():
    cfg = TrainConfig(**{**TINY, "record_every": 1}, iters=12, wrs_norm=4.0)
    res = run_training(cfg, write=False)
    np.testing.assert_allclose(res.steps["si_norm"], 4.0, rtol=1e-5)
    np.testing.assert_allclose(res.steps["eff_lr"], cfg.lr / 16, rtol=1e-5)
    assert cfg.wd_si == 0.0


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_exponential_lr_follows_the_weight_decay_run(momentum):
    """Li & Arora: no WD, LR eta*alpha^(-2t-1) gives the WD run's weights divided by alpha^t."""
    base = TrainConfig(**{**TINY, "record_every": 1}, iters=15, lr=0.1, wd=0.02, momentum=momentum)
    wd = run_training(base, write=False)
    ex = run_training(replace(base, exp_lr=True), write=False)
    np.testing.assert_allclose(ex.steps["si_norm_equiv"], wd.steps["si_norm"], rtol=2e-3)
    np.testing.assert_allclose(ex.steps["train_loss"], wd.steps["train_loss"], rtol=1e-2, atol=1e-4)
    assert ex.steps["lr"][-1] > ex.steps["lr"][0] and ex.steps["si_norm"][-1] > ex.steps["si_norm"][0]


def test_practical_mode_trains_bn_and_linear_with_chosen_wd():
    cfg = TrainConfig(**TINY, mode="practical", iters=5, wd=0.01, wd_on="si")
    tr = Trainer(cfg, make_synthetic())
    names = [g.get("name") for g in tr.optimizer.param_groups]
    assert names == ["si", "other"]
    assert tr.optimizer.param_groups[0]["weight_decay"] == 0.01
    assert tr.optimizer.param_groups[1]["weight_decay"] == 0.0
    lin = tr.model.linear.weight.detach().clone()
    tr.run()
    assert not torch.equal(lin, tr.model.linear.weight)


def test_a_dead_network_is_found_where_only_weight_decay_moves_the_si_weights():
    """After the collapse the recorded norm follows rho <- (1 - eta*lambda) rho exactly (theory's
    recurrence with zero gradient) and the steps do not turn the weights; before it, they do."""
    eta, lam = 5.0, 1e-2
    res = run_training(TrainConfig(**{**TINY, "record_every": 1}, iters=80, mode="practical", lr=eta, wd=lam),
                       write=False)
    c = res.period_summary["collapse"]
    j = int(np.flatnonzero(res.steps["iteration"] == c["iteration"])[0])
    assert 0 < j < 70 and c["records"] == 80 - j
    rho = res.steps["si_norm"].astype(float)
    sq_next = next_sq_norm(rho[j - 1:-1] ** 2, 0.0, eta, lam)     # zero gradient
    np.testing.assert_allclose(rho[j + 1:], np.sqrt(sq_next[1:]), rtol=1e-5)
    g = res.steps["grad_norm"].astype(float)
    assert g[j - 1] > 0 and np.all(g[j:] == 0)                # the last living step had a gradient
    assert rho[j] ** 2 == pytest.approx(next_sq_norm(rho[j - 1] ** 2, g[j - 1] ** 2, eta, lam), rel=1e-5)
    assert np.all(res.steps["angular_update"][j:] < 1e-5) and res.steps["angular_update"][j - 1] > 1e-5


def test_config_rejects_impossible_settings():
    with pytest.raises(ValueError, match="lr\\*wd"):
        TrainConfig(lr=10, wd=0.2)
    with pytest.raises(ValueError, match="at most one"):
        TrainConfig(wrs_norm=1.0, exp_lr=True)
    with pytest.raises(ValueError, match="model"):
        TrainConfig(model="vgg")
    with pytest.raises(ValueError, match="float32 overflow"):
        Trainer(TrainConfig(**TINY, iters=100000, exp_lr=True, lr=1, wd=0.01), make_synthetic())


def test_diverged_run_writes_what_it_recorded(tmp_path, monkeypatch):
    import json

    from nets.training.trainer import TrainingDiverged

    orig = Trainer.step

    def step(self):
        if self.iteration == 12:
            raise TrainingDiverged("loss is nan at iteration 12; lower --lr")
        return orig(self)

    monkeypatch.setattr(Trainer, "step", step)
    with pytest.raises(TrainingDiverged, match="iteration 12"):
        run_training(TrainConfig(**TINY, iters=30), run_dir=tmp_path / "r")
    rep = json.loads((tmp_path / "r" / "periods.json").read_text())
    assert rep["diverged"] and not rep["completed"] and rep["iterations"] == 12


def test_trainer_records_what_the_loop_before_the_monitor_recorded():
    """The Trainer measures through nets.SIMonitor now. Its step table must hold what the loop
    recorded before (step columns and per-tensor norms): recomputed here independently from the
    same model, batches and SGD, with explicit float64 norms and arccos angles."""
    import torch.nn.functional as F

    from nets.data.augment import EpochSampler
    from nets.models import build_model
    from nets.monitor.metrics import STEP_COLUMNS

    cfg = TrainConfig(**{**TINY, "record_every": 2}, iters=9, lr=0.5, wd=0.01, momentum=0.5, augment=True)
    data = make_synthetic()
    tr = Trainer(cfg, data)
    tr.run()
    scale, shift = data.normaliser()
    torch.manual_seed(cfg.seed)
    model = build_model("convnet", mode="si", width=cfg.width, num_classes=data.num_classes,
                        in_channels=data.channels, input_size=data.image_size).to(memory_format=torch.channels_last)
    si = [p for p in model.parameters() if p.requires_grad]          # SI mode: every trained weight is SI
    opt = torch.optim.SGD(si, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.wd, foreach=True)
    sampler = EpochSampler(data.x_train, data.y_train, cfg.batch_size, scale, shift, augment=True,
                           pad=cfg.aug_pad, generator=torch.Generator().manual_seed(cfg.seed + 1_000_003))
    rows, layers = [], []
    for t in range(cfg.iters):
        xb, yb, _ = sampler.next()
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        opt.zero_grad()
        loss.backward()
        before = torch.cat([p.detach().double().reshape(-1) for p in si])
        g = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in si))
        norms = [float(p.detach().double().norm()) for p in si]
        opt.step()
        if t % 2 == 0 or t == cfg.iters - 1:
            after = torch.cat([p.detach().double().reshape(-1) for p in si])
            rho = float(before.norm())
            cos = float(before @ after / (before.norm() * after.norm()))
            acc = float((out.argmax(1) == yb).double().mean())
            rows.append([t, t // sampler.batches_per_epoch, cfg.lr, float(loss.detach()), acc, rho, rho, g,
                         cfg.lr / rho ** 2, rho * g, math.acos(min(cos, 1.0))])
            layers.append(norms)
    got = tr.recorder.steps
    assert len(got) == len(rows) == 5
    for a, b in zip(got, rows):
        for col, x, y in zip(STEP_COLUMNS, a, b):
            tol = dict(rel=1e-3, abs=1e-6) if col == "angular_update" else dict(rel=1e-5)
            assert x == pytest.approx(y, **tol), col
    np.testing.assert_allclose(tr.recorder.layer_norms, layers, rtol=1e-6)


@pytest.mark.parametrize("optimizer", ["adamw", "adam"])
def test_adam_runs_record_their_effective_lr_and_make_no_sgd_period_prediction(optimizer):
    from analysis.report import analyse_periods, period_line

    cfg = TrainConfig(**{**TINY, "record_every": 1}, iters=6, optimizer=optimizer, lr=0.01, wd=0.1, beta1=0.8)
    tr = Trainer(cfg, make_synthetic())
    cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    assert type(tr.optimizer) is cls and tr.optimizer.param_groups[0]["betas"] == (0.8, 0.999)
    tr.run()
    steps = tr.recorder.arrays()[0]
    np.testing.assert_allclose(steps["eff_lr"], 0.01 / steps["si_norm"], rtol=1e-6)     # eta/rho for Adam
    hyper = tr.monitor.hypers()[0]
    assert (hyper.kind, hyper.decoupled, hyper.wd) == (optimizer, optimizer == "adamw", 0.1)
    t = np.arange(400)
    fake = {"iteration": t * cfg.record_every, "si_norm_equiv": 20 * 0.98 ** (t % 100),   # a sawtooth
            "train_loss": np.where(t % 100 == 0, 1.0, 1e-3)}
    rep, summary = analyse_periods(fake, cfg)
    assert summary["n_periods"] == 2 and math.isnan(summary["predicted_mean_length"]) and optimizer in summary["note"]
    assert "no prediction" in period_line(summary)


@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_entry_points_make_openmp_threads_sleep_unless_told_otherwise(preset):
    """Each package sets OMP_WAIT_POLICY=PASSIVE on import, before torch loads (nets/README.md,
    "CPU threads on a busy machine"); a value the user set is kept."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = ("import importlib, os\n"
            "for m in ('theory', 'simulate', 'nets', 'paper_figures'):\n"
            "    os.environ.pop('OMP_WAIT_POLICY', None) if {preset!r} is None else None\n"
            "    importlib.import_module(m)\n"
            "    print(m, os.environ.get('OMP_WAIT_POLICY'))\n").format(preset=preset)
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-c", code], cwd=root, env={**env, "PYTHONPATH": str(root)},
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [w for m in ("theory", "simulate", "nets", "paper_figures")
                                for w in (m, preset or "PASSIVE")]


def test_exponential_lr_is_lambdalr_with_the_exact_schedule_and_resumes_on_it(tmp_path):
    """TEXP runs on ``torch.optim.lr_scheduler.LambdaLR``: every step's LR is exactly
    eta * alpha^(-2t-1) (the recorded lr column, bit for bit), the other groups keep theirs, and a
    resumed run continues on the same schedule (identical tables to the uninterrupted run)."""
    cfg = TrainConfig(**{**TINY, "record_every": 1}, iters=20, lr=0.1, wd=0.02, momentum=0.5, exp_lr=True,
                      mode="practical", out=str(tmp_path))
    tr = Trainer(cfg, make_synthetic())
    alpha = tr.texp.alpha
    for t in range(6):
        tr.step()
        assert isinstance(tr.scheduler, torch.optim.lr_scheduler.LambdaLR)
        assert tr.recorder.steps[-1][2] == cfg.lr * alpha ** (-2 * t - 1)        # bit for bit
        assert tr.optimizer.param_groups[1]["lr"] == cfg.lr                     # not the SI group
    whole = run_training(replace(cfg, out=str(tmp_path / "whole")), write=False)
    np.testing.assert_array_equal(whole.steps["lr"], cfg.lr * alpha ** (-2.0 * np.arange(20) - 1))
    part = run_training(replace(cfg, out=str(tmp_path / "part")), stop_after=9)
    resumed = resume_training(part.run_dir)
    _same_tables(whole, resumed)


def test_a_run_is_analysed_once(monkeypatch):
    """One analysis per run: the monitor's (with the run's config), reused by the run's summary."""
    import analysis.report

    calls = []
    real = analysis.report.analyse_periods

    def counting(steps, config):
        calls.append(type(config).__name__)
        return real(steps, config)
    monkeypatch.setattr(analysis.report, "analyse_periods", counting)
    res = run_training(TrainConfig(**TINY, iters=30), write=False)
    assert calls == ["TrainConfig"]
    assert res.period_summary is res.monitor["periods"]


def test_config_json_holds_configuration_not_notes(tmp_path):
    res = run_training(TrainConfig(**TINY, iters=6, out=str(tmp_path)))
    import json

    written = json.loads((res.run_dir / "config.json").read_text())
    assert "notes" not in written
    assert TrainConfig.from_dict(written["config"]) == res.config


def test_monitor_records_have_named_fields():
    from nets.monitor.metrics import STEP_COLUMNS, StepRecord

    tr = Trainer(TrainConfig(**{**TINY, "record_every": 1}, iters=3), make_synthetic())
    row = tr.step()
    assert isinstance(row, StepRecord) and row._fields == STEP_COLUMNS
    assert row.iteration == 0 and row.si_norm == row.si_norm_equiv and row.lr == tr.config.lr
    assert list(row) == tr.recorder.steps[-1]
