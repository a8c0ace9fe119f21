"""Batched sweeps (nets.training.batched, nets.training.batched_run): K runs as one network == K single runs."""
import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nets import TrainConfig, resume_training, run_training
from nets.data import make_synthetic
from nets.models import build_model
from nets.training.batched import BatchedTrainer, check_batchable, group_models
from nets.training.batched_run import run_batched
from nets.training.checkpoint import load_checkpoint
from nets.training.sweep import run_sweep
from nets.training.trainer import Trainer, TrainingDiverged

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# width 16: every channel count a multiple of the CPU's vector width (16 float32 lanes with
# AVX-512, 8 with AVX2), so the grouped kernels round like the single ones (see
# nets.training.batched); at width 8 an AVX-512 CPU (AMD EPYC, family 25) picks other kernels for the
# first two convolutions' weight gradients (1e-6 apart after one step, chaotic after a jump)
TINY = dict(dataset="synthetic", width=16, batch_size=32, record_every=2, eval_every=40, quiet=True,
            threads=1, checkpoint_every=0, init_si_norm=None)
RTOL = 1e-5     # float rounding: equal to the last bit here except the batch-loss reduction


def _cfg(**kw):
    return TrainConfig(**{**TINY, **kw})


def _assert_same_run(single, batched):
    assert single.steps.keys() == batched.steps.keys()
    for k in single.steps:
        np.testing.assert_allclose(batched.steps[k], single.steps[k], rtol=RTOL, atol=1e-7, err_msg=k)
    for k in single.evals:
        np.testing.assert_allclose(batched.evals[k], single.evals[k], rtol=RTOL, atol=1e-7, err_msg=k)
    np.testing.assert_allclose(batched.layer_norms, single.layer_norms, rtol=RTOL)
    assert (single.sharpness is None) == (batched.sharpness is None)
    for k in single.sharpness or {}:
        np.testing.assert_allclose(batched.sharpness[k], single.sharpness[k], rtol=1e-4, err_msg=k)
    assert (batched.completed, batched.iterations) == (single.completed, single.iterations)


def test_batched_run_equals_single_runs_over_200_steps_with_the_same_periods():
    configs = [_cfg(iters=200, lr=1.0, wd=0.05, seed=0), _cfg(iters=200, lr=0.5, wd=0.1, seed=2)]
    batched = run_batched(configs, write=False)
    for cfg, b in zip(configs, batched):
        s = run_training(cfg, write=False)
        _assert_same_run(s, b)
        events = s.period_summary["event_iterations"]
        assert len(events) >= 3 and b.period_summary["event_iterations"] == events
        assert b.period_summary["measured_over_predicted"] == pytest.approx(
            s.period_summary["measured_over_predicted"], rel=1e-6)


@pytest.mark.parametrize("variant", [
    dict(momentum=0.9, augment=True), dict(wrs_norm=5.0), dict(exp_lr=True, wd=1e-3),
    dict(mode="practical", wd_on="si", sharpness_every=15, sharpness_iters=3),
    dict(model="resnet18", iters=12, width=32)], ids=["momentum-augment", "wrs", "exp_lr", "practical-sharpness",
                                            "resnet18"])
def test_variants_follow_their_single_runs_and_end_in_the_same_state(variant):
    base = _cfg(**{"iters": 30, "eval_every": 7, **variant})
    configs = [base, replace(base, lr=0.5, seed=3, record_every=3, iters=base.iters - 5)]
    data = make_synthetic()
    singles = [Trainer(c, data) for c in configs]
    for t in singles:
        t.run()
    trainers = [Trainer(c, data) for c in configs]
    batched = BatchedTrainer(trainers)
    while batched.active:
        batched.step()
        batched.retire([t for t in batched.active if t.iteration >= t.total_iters])
    for s, b in zip(singles, trainers):
        assert b.iteration == s.iteration
        np.testing.assert_allclose(np.array(b.recorder.steps), np.array(s.recorder.steps), rtol=RTOL, atol=1e-7)
        np.testing.assert_allclose(np.array(b.recorder.evals), np.array(s.recorder.evals), rtol=RTOL, atol=1e-7)
        np.testing.assert_allclose(np.array(b.recorder.sharpness), np.array(s.recorder.sharpness), rtol=1e-4)
        sb, ss = b.state_dict(), s.state_dict()
        for k, v in ss["model"].items():      # weights, BN running statistics and batch counters
            torch.testing.assert_close(sb["model"][k], v, rtol=RTOL, atol=1e-6, msg=k)
        for pb, ps in zip(sb["optimizer"]["state"].values(), ss["optimizer"]["state"].values()):
            torch.testing.assert_close(pb["momentum_buffer"], ps["momentum_buffer"], rtol=RTOL, atol=1e-6)
        assert sb["optimizer"]["param_groups"] == ss["optimizer"]["param_groups"]
        assert sb["sampler"]["pos"] == ss["sampler"]["pos"]
        assert torch.equal(sb["sampler"]["perm"], ss["sampler"]["perm"])
        assert torch.equal(sb["sampler"]["generator"], ss["sampler"]["generator"])


@pytest.fixture
def quick_plots(monkeypatch):
    """Figures are the single runs' code and tested there: here a placeholder file each."""
    import nets.plots

    def touch(path, *args, **kwargs):
        Path(path).write_bytes(b"png")

    monkeypatch.setattr(nets.plots, "plot_run", touch)
    monkeypatch.setattr(nets.plots, "plot_sweep", touch)


@pytest.mark.slow
def test_interrupted_batched_sweep_continues_into_single_run_directories(tmp_path, quick_plots):
    configs = [_cfg(iters=24, lr=1.0, wd=0.05, seed=0, checkpoint_every=10),
               _cfg(iters=16, lr=0.5, wd=0.05, seed=1, checkpoint_every=10, momentum=0.5)]
    dirs = [tmp_path / "sw" / f"lr{c.lr:g}_wd{c.wd:g}" for c in configs]
    part = run_batched(configs, dirs, stop_after=13)          # as a signal would leave them
    assert [(r.completed, r.iterations) for r in part] == [(False, 13), (False, 13)]
    rows, completed = run_sweep(configs, tmp_path / "sw", batched=True)
    assert completed and [r["completed"] for r in rows] == [True, True]
    for i, (cfg, b) in enumerate(zip(configs, dirs)):
        s = tmp_path / f"single{i}"
        single = run_training(cfg, run_dir=s)                 # uninterrupted, alone
        z = np.load(b / "metrics.npz")
        for k in single.steps:
            np.testing.assert_allclose(z[f"step_{k}"], single.steps[k], rtol=RTOL, atol=1e-7, err_msg=k)
        np.testing.assert_allclose(z["eval_test_acc"], single.evals["test_acc"])
        assert {f.name for f in b.iterdir()} == {f.name for f in s.iterdir()}
        assert json.loads((b / "config.json").read_text()) == json.loads((s / "config.json").read_text())
        for name in ("metrics.csv", "evals.csv"):
            assert (b / name).read_text().splitlines()[0] == (s / name).read_text().splitlines()[0]
        pb, ps = (json.loads((d / "periods.json").read_text()) for d in (b, s))
        assert pb.keys() == ps.keys() and pb["summary"].keys() == ps["summary"].keys()
        cb, cs = load_checkpoint(b / "checkpoint.pt"), load_checkpoint(s / "checkpoint.pt")
        assert cb.keys() == cs.keys() and cb["trainer"].keys() == cs["trainer"].keys()
        assert cb["config"] == cs["config"] and cb["trainer"]["iteration"] == cfg.iters
        # the model tensors are saved alone, not with the whole grouped network's storage
        assert (b / "checkpoint.pt").stat().st_size < 1.2 * (s / "checkpoint.pt").stat().st_size
    stamps = [(d / "metrics.npz").stat().st_mtime_ns for d in dirs]
    again, _ = run_sweep(configs, tmp_path / "sw", batched=True)     # finished: nothing re-run
    assert json.dumps(again) == json.dumps(rows)
    assert [(d / "metrics.npz").stat().st_mtime_ns for d in dirs] == stamps
    # a batched run's directory continues alone, as the single run's does (momentum state too)
    _assert_same_run(resume_training(tmp_path / "single1", iters=24), resume_training(dirs[1], iters=24))


def test_a_diverged_run_leaves_the_group_and_the_others_go_on(tmp_path, monkeypatch, quick_plots):
    orig = Trainer.finish_step

    def finish_step(self, t, *args):
        if self.config.seed == 1 and t == 12:
            raise TrainingDiverged("loss is nan at iteration 12; lower --lr")
        return orig(self, t, *args)

    monkeypatch.setattr(Trainer, "finish_step", finish_step)
    configs = [_cfg(iters=20, seed=0), _cfg(iters=20, seed=1)]
    ok, bad = run_batched(configs, [tmp_path / "ok", tmp_path / "bad"])
    assert ok.completed and ok.iterations == 20 and ok.diverged is None
    assert not bad.completed and "iteration 12" in bad.diverged
    assert json.loads((tmp_path / "bad" / "periods.json").read_text())["diverged"]
    _assert_same_run(run_training(configs[0], write=False), ok)


def test_no_host_reads_between_recordings():
    from test_nets_device import host_reads

    configs = [_cfg(eval_every=-1, record_every=5, iters=17),
               _cfg(eval_every=-1, record_every=7, iters=17, seed=1)]
    data = make_synthetic()
    batched = BatchedTrainer([Trainer(c, data) for c in configs])
    with host_reads(batched.trainers[0]) as calls:
        while batched.active:
            batched.step()
            batched.retire([t for t in batched.active if t.iteration >= t.total_iters])
    # one read per recorded step of each run: t = 0, 5, 10, 15, 16 and t = 0, 7, 14, 16
    assert sorted(calls) == sorted([(t + 1, "tolist") for t in (0, 5, 10, 15, 16, 0, 7, 14, 16)])


def test_grouped_network_computes_each_model_on_its_own_input():
    """Independent of the training loop: K ResNet-18s (practical mode: BN affine, trained
    linear layer with bias) vs the grouped network, outputs, gradients and BN statistics."""
    k, b = 3, 6
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(build_model("resnet18", mode="practical", width=4, input_size=8).train())
    ref = [copy.deepcopy(m) for m in models]
    grouped, params, _ = group_models(models)
    x = torch.randn(k, b, 3, 8, 8)
    out = grouped(x.transpose(0, 1).reshape(b, k * 3, 8, 8)).view(b, k, -1)
    out.square().sum().backward()
    for i, m in enumerate(ref):
        o = m(x[i])
        torch.testing.assert_close(out[:, i], o, rtol=1e-5, atol=1e-5)
        o.square().sum().backward()
        scale = max(float(p.grad.abs().max()) for p in m.parameters() if p.grad is not None)
        for sh in params:                        # rounding: 4 channels, unlike the CPU's 8
            name = [n for n, p in models[i].named_parameters() if p is sh.per_net[i]][0]
            torch.testing.assert_close(sh.stacked(sh.grouped.grad)[i], m.get_parameter(name).grad,
                                       rtol=1e-4, atol=1e-5 * scale, msg=name)
        for name, buf in m.named_buffers():      # running statistics: the models' own, updated
            if buf.is_floating_point():
                torch.testing.assert_close(models[i].get_buffer(name), buf, msg=name)
    stem = params[0]                             # conv1.weight
    with torch.no_grad():                        # the models' weights are the grouped network's
        stem.grouped.mul_(2)
    assert torch.equal(models[1].conv1.weight, stem.stacked(stem.grouped)[1])


def test_grouped_layers_with_biases_and_group_norm():
    def net():
        return nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.GroupNorm(2, 4), nn.ReLU(),
                             nn.Conv2d(4, 6, 3, padding=1, bias=True), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(6, 3))
    models = [net() for _ in range(3)]
    ref = [copy.deepcopy(m) for m in models]
    grouped, _, _ = group_models(models)
    x = torch.randn(3, 5, 3, 6, 6)
    out = grouped(x.transpose(0, 1).reshape(5, 9, 6, 6)).view(5, 3, 3)
    for i, m in enumerate(ref):
        torch.testing.assert_close(out[:, i], m(x[i]))


def test_what_cannot_be_batched_is_refused_in_one_line():
    a = _cfg(iters=10)
    with pytest.raises(ValueError, match="share width"):
        check_batchable([a, replace(a, width=4)])
    with pytest.raises(ValueError, match="LayerNorm"):
        group_models([nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3)) for _ in range(2)])
    with pytest.raises(ValueError, match="Conv2d"):
        group_models([nn.Conv2d(3, 3, 3, padding_mode="circular") for _ in range(2)])


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _cuda_pair(**kw):
    configs = [_cfg(device="cuda", **kw), _cfg(device="cuda", lr=0.5, seed=1, **kw)]
    data = make_synthetic()
    return configs, data


@cuda
def test_cuda_batched_steps_between_recordings_do_not_synchronise():
    configs, data = _cuda_pair(iters=40, record_every=1000, eval_every=-1, momentum=0.9)
    batched = BatchedTrainer([Trainer(c, data, "cuda") for c in configs])
    for _ in range(2):                                # cuDNN autotuning, optimizer state creation
        batched.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(12):                           # within the first epoch (16 batches)
            batched.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert [t.iteration for t in batched.trainers] == [14, 14]


@cuda
def test_cuda_batched_run_follows_single_cuda_runs(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    configs, data = _cuda_pair(iters=10, record_every=1)
    batched = BatchedTrainer([Trainer(c, data, "cuda") for c in configs])
    for _ in range(10):
        batched.step()
    for cfg, b in zip(configs, batched.trainers):
        s = Trainer(cfg, data, "cuda")
        s.run()
        np.testing.assert_allclose(np.array(b.recorder.steps), np.array(s.recorder.steps), rtol=1e-3, atol=1e-5)


def test_batched_runs_share_and_apply_the_precision():
    """bf16 is applied to the grouped network as to a single run (not silently FP32), and runs of
    different precisions are not batched together."""
    cfg = _cfg(iters=1, record_every=1, eval_every=-1)
    data = make_synthetic()
    losses = {}
    for p in ("fp32", "bf16"):
        batched = BatchedTrainer([Trainer(replace(cfg, precision=p), data)])
        batched.step()
        losses[p] = batched.trainers[0].recorder.steps[0][3]
    single = Trainer(replace(cfg, precision="bf16"), data)
    single.step()
    assert losses["bf16"] != losses["fp32"]
    assert losses["bf16"] == pytest.approx(single.recorder.steps[0][3], rel=1e-3)
    with pytest.raises(ValueError, match="must share precision"):
        check_batchable([cfg, replace(cfg, precision="bf16")])
