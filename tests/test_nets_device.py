"""The device contract of nets' training loop: no host reads between recordings.

On a GPU, reading a tensor to the host (``.item()``, ``.tolist()``, ``float(t)``, ``if t:``)
waits for the device and stalls the pipeline. The loop reads only on recording steps (one
``tolist`` each). On the CPU this is checked by intercepting those Python entry points; on a GPU
(skipped without one) also with CUDA's own sync detector, and against the CPU run.
"""
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from nets import TrainConfig
from nets.data import make_synthetic
from nets.monitor.sharpness import SharpnessProbe
from nets.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE = dict(dataset="synthetic", width=2, batch_size=32, record_every=5, eval_every=-1, quiet=True,
            threads=1, iters=17)
HOST_READS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@contextmanager
def host_reads(trainer):
    """Record (iteration being trained, method) for every Python-level host read of a tensor."""
    calls = []
    originals = {n: getattr(torch.Tensor, n) for n in HOST_READS}

    def spy(name):
        def read(self, *args, **kwargs):
            calls.append((trainer.iteration, name))
            return originals[name](self, *args, **kwargs)
        return read

    try:
        for n in HOST_READS:
            setattr(torch.Tensor, n, spy(n))
        yield calls
    finally:
        for n, f in originals.items():
            setattr(torch.Tensor, n, f)


@pytest.mark.parametrize("variant", [dict(momentum=0.9, augment=True), dict(wrs_norm=5.0),
                                     dict(exp_lr=True, wd=1e-3), dict(fixed_elr=1e-2, fixed_elr_per_layer=True)],
                         ids=["wd-momentum-augment", "wrs", "exp_lr", "fixed_elr_per_layer"])
def test_no_host_reads_between_recordings(variant):
    tr = Trainer(TrainConfig(**BASE, **variant), make_synthetic(), "cpu")
    with host_reads(tr) as calls:
        tr.run()
    # a recording step t reads once, after the step (iteration is then t + 1): t = 0, 5, 10, 15, 16
    assert calls == [(t + 1, "tolist") for t in (0, 5, 10, 15, 16)]


def _cuda_trainer(**kw):
    return Trainer(TrainConfig(**{**BASE, **kw}), make_synthetic(), "cuda")


@cuda
def test_cuda_steps_between_recordings_do_not_synchronise():
    tr = _cuda_trainer(record_every=1000, iters=40, augment=True, momentum=0.9)
    tr.run(2)                                     # first steps: cuDNN autotuning, state creation
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        tr.run(tr.batches_per_epoch)              # the rest of the first epoch (16 batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert tr.iteration == tr.batches_per_epoch == 16


@cuda
def test_cuda_run_follows_the_cpu_run_before_any_destabilisation(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cfg = dict(iters=10, record_every=1, channels_last=False)
    gpu, cpu = _cuda_trainer(**cfg), Trainer(TrainConfig(**BASE | cfg), make_synthetic(), "cpu")
    gpu.sampler.perm = cpu.sampler.perm = torch.arange(512)    # the same batches on both devices
    gpu.sampler.perm = gpu.sampler.perm.cuda()
    gpu.sampler.pos = cpu.sampler.pos = 0
    gpu.run()
    cpu.run()
    a, b = gpu.recorder.arrays()[0], cpu.recorder.arrays()[0]
    for k in ("train_loss", "si_norm", "grad_norm"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, err_msg=k)


@cuda
def test_cuda_sharpness_matches_cpu():
    tr = _cuda_trainer(iters=5)
    tr.run()
    batches = [(tr.sampler.x[:32] * 1.0, tr.sampler.y[:32])]
    gpu = SharpnessProbe(tr.model, tr.watch.params, batches, max_iter=60, rtol=1e-6).measure(0, 1.0)
    model = tr.model.cpu()
    cpu = SharpnessProbe(model, list(tr.watch.params), [(x.cpu(), y.cpu()) for x, y in batches],
                         max_iter=60, rtol=1e-6).measure(0, 1.0)
    assert gpu[3] == pytest.approx(cpu[3], rel=1e-3)


def _plain_loop(device, log_every, steps):
    """A user's loop with SIMonitor (momentum, WD, an LR schedule); returns (monitor, run)."""
    import torch.nn.functional as F

    from nets import SIMonitor
    from nets.models import build_model

    torch.manual_seed(0)
    model = build_model("convnet", mode="practical", width=2, input_size=8).to(device)
    x, y = torch.randn(64, 3, 8, 8, device=device), torch.randint(0, 10, (64,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    mon = SIMonitor(model, opt, example_batch=x[:8], log_every=log_every, verbose=False)

    def run(n):
        for _ in range(n):
            i = mon.iteration % 4
            loss = F.cross_entropy(model(x[16 * i:16 * i + 16]), y[16 * i:16 * i + 16])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            mon.step(loss)
    return mon, run


def test_the_monitor_in_a_plain_loop_reads_only_on_recorded_steps():
    mon, run = _plain_loop("cpu", 4, 13)
    with host_reads(mon) as calls:
        run(13)
    assert calls == [(t + 1, "tolist") for t in (0, 4, 8, 12)]


@cuda
def test_cuda_plain_loop_with_the_monitor_does_not_synchronise_between_records():
    mon, run = _plain_loop("cuda", 1000, 40)
    run(2)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run(30)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    run(1000 - mon.iteration + 1)                  # a record: one read, then the summary works
    assert len(mon.recorder.steps) == 2 and mon.summary()["records"] == 2
