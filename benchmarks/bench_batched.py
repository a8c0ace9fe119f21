"""Images/s of K networks trained as one batched network vs the same K runs one after another.

    python benchmarks/bench_batched.py [--device cuda] [--k 4] [--widths 8 16] [--json OUT.json]

For each width, K fully SI ConvNets that differ in eta and seed (eta = 0.25, 0.5, 1, 2, ...;
lambda = 3e-3; batch 128; step metrics recorded every 10 steps, as ``nets.train`` does) are
trained in one process, paired and interleaved: each round times a block of ``--block`` steps

* **sequential** -- K ordinary :class:`nets.Trainer` runs, ``--block`` steps of each in turn
  (what K ``python -m nets.train`` runs do once started);
* **batched** -- :class:`nets.training.batched.BatchedTrainer` over K such trainers (what
  ``python -m nets.sweep --batched`` runs): ``--block`` steps of all K at once;

and reports images/s of each (median and min-max over the rounds) and the paired speed-up
(batched / sequential within a round; median, min-max). With ``--vmap`` it also times the two
formulations of the batched forward/backward on their own (no recording, a plain SGD + WD update
on the stacked weights): the grouped network of :mod:`nets.training.batched` and ``torch.func.vmap``
over ``functional_call`` with stacked parameters and BN buffers.

Timings on a shared machine are noisy: the 1-minute load average at the start and end is in
the output. Start-up (data, SI detection) is not timed.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_nets import measure  # noqa: E402  (same folder: the one interleaved timing loop)

from nets.config import TrainConfig  # noqa: E402
from nets.data import load_data  # noqa: E402
from nets.training.batched import BatchedTrainer, group_models  # noqa: E402
from nets.training.trainer import Trainer, resolve_device  # noqa: E402


class Sequential:
    """K ordinary trainers; a block is ``n`` steps of each in turn."""

    def __init__(self, configs, data, device):
        self.trainers = [Trainer(c, data, device) for c in configs]

    def run(self, n):
        for t in self.trainers:
            t.run(t.iteration + n)


class Batched:
    """The K trainers as one :class:`nets.training.batched.BatchedTrainer`; a block is ``n`` steps."""

    def __init__(self, configs, data, device):
        self.batched = BatchedTrainer([Trainer(c, data, device) for c in configs])

    def run(self, n):
        for _ in range(n):
            self.batched.step()


class BareBatched:
    """Forward, backward and ``p -= lr (g + wd p)`` of K networks on their own batches, no
    recording: the grouped network (``vmap=False``) or ``torch.func.vmap`` (``vmap=True``)."""

    def __init__(self, configs, data, device, vmap: bool):
        trainers = [Trainer(c, data, device) for c in configs]
        self.samplers = [t.sampler for t in trainers]
        self.vmap = vmap
        self.lr = torch.tensor([c.lr for c in configs], device=device)
        self.wd = torch.tensor([c.wd for c in configs], device=device)
        models = [t.model for t in trainers]
        if vmap:
            params, self.buffers = torch.func.stack_module_state(models)
            self.params = {n: p for n, p in params.items() if models[0].get_parameter(n).requires_grad}
            self.frozen = {n: p.detach() for n, p in params.items() if n not in self.params}
            base = copy.deepcopy(models[0]).to("meta")

            def loss(p, b, f, x, y):
                return F.cross_entropy(torch.func.functional_call(base, {**p, **b, **f}, (x,)), y)

            self.loss = torch.vmap(loss)
            self.trainable = [(p, lambda t: t) for p in self.params.values()]
        else:
            self.grouped, shared, _ = group_models(models, channels_last=configs[0].channels_last)
            self.trainable = [(s.grouped, s.stacked) for s in shared if s.grouped.requires_grad]

    def batch(self):
        xs, ys = zip(*(s.batch(s.next_indices()[0]) for s in self.samplers))
        return torch.stack(xs), torch.stack(ys)                # K x B x C x H x W, K x B

    def losses(self, x, y):
        if self.vmap:
            return self.loss(self.params, self.buffers, self.frozen, x, y)
        k, b = y.shape
        logits = self.grouped(x.transpose(0, 1).reshape(b, -1, *x.shape[3:]))
        return F.cross_entropy(logits.view(b, k, -1).transpose(0, 1).reshape(k * b, -1), y.reshape(-1),
                               reduction="none").view(k, b).mean(1)

    def run(self, n):
        for _ in range(n):
            x, y = self.batch()
            self.losses(x, y).sum().backward()
            with torch.no_grad():
                for p, stacked in self.trainable:           # K x ... views of weight and gradient
                    w, g = stacked(p), stacked(p.grad)
                    col = (-1,) + (1,) * (w.dim() - 1)
                    w.sub_(self.lr.view(col) * (g + self.wd.view(col) * w))
                    p.grad = None


def _spread(values) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_width(width: int, a, data, device) -> dict:
    lrs = [0.25 * 2 ** i for i in range(a.k)]
    iters = a.warmup + a.rounds * a.block + 2
    base = TrainConfig(dataset=a.dataset, data_dir=a.data_dir, image_size=a.image_size, width=width,
                       batch_size=a.batch_size, iters=iters, record_every=10, eval_every=-1,
                       checkpoint_every=0, quiet=True, device=str(device))
    configs = [replace(base, lr=lr, seed=i) for i, lr in enumerate(lrs)]
    loops = {"sequential": Sequential(configs, data, device), "batched": Batched(configs, data, device)}
    if a.vmap:
        loops["grouped_bare"] = BareBatched(configs, data, device, vmap=False)
        loops["vmap_bare"] = BareBatched(configs, data, device, vmap=True)
        with torch.no_grad():   # the two formulations compute the same K losses
            x, y = loops["grouped_bare"].batch()
            g, v = loops["grouped_bare"].losses(x, y), loops["vmap_bare"].losses(x, y)
        tol = 2e-2 if device.type == "cuda" else 1e-4             # cuDNN may use TF32
        torch.testing.assert_close(g, v, rtol=tol, atol=tol)
    times = measure(loops, a.block, a.rounds, a.warmup, device)
    images = a.k * a.block * a.batch_size
    out = {"width": width, "lrs": lrs,
           "images_per_s": {n: _spread([images / t for t in ts]) for n, ts in times.items()},
           "speedup_batched_vs_sequential": _spread([s / b for s, b in zip(times["sequential"],
                                                                            times["batched"])]),
           "block_seconds": times}
    if a.vmap:
        out["speedup_grouped_vs_vmap"] = _spread([v / g for g, v in zip(times["grouped_bare"],
                                                                         times["vmap_bare"])])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    p.add_argument("--dataset", default="digits", choices=["digits", "synthetic", "cifar10", "cifar100"])
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (CIFAR only)")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--widths", type=int, nargs="+", default=[8, 16])
    p.add_argument("--k", type=int, default=4, help="networks per batched program (default 4)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--block", type=int, default=20, help="steps per timed block (default 20)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: usable cores, max 8)")
    p.add_argument("--vmap", action="store_true", help="also time grouped vs torch.func.vmap alone")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    a = p.parse_args(argv)
    device = resolve_device(a.device)
    torch.set_num_threads(a.threads or min(len(os.sched_getaffinity(0)), 8))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = load_data(TrainConfig(dataset=a.dataset, data_dir=a.data_dir, image_size=a.image_size,
                                 batch_size=a.batch_size)).to(device)
    load_start = os.getloadavg()[0]
    results = [bench_width(w, a, data, device) for w in a.widths]
    out = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
           else "cpu", "torch": torch.__version__, "threads": torch.get_num_threads(), "k": a.k,
           "dataset": a.dataset, "image_size": data.image_size, "batch_size": a.batch_size,
           "block": a.block, "rounds": a.rounds, "load_average_1min": [load_start, os.getloadavg()[0]],
           "results": results}
    print(f"{a.k} SI ConvNets on {a.dataset} {data.image_size}x{data.image_size}, batch {a.batch_size}, "
          f"{device} ({out['threads']} threads), {a.rounds} interleaved rounds of {a.block} steps; "
          f"load average {load_start:.2f} -> {out['load_average_1min'][1]:.2f}")
    for r in results:
        ips = r["images_per_s"]
        line = ", ".join(f"{n} {v['median']:.0f} ({v['min']:.0f}-{v['max']:.0f})" for n, v in ips.items())
        s = r["speedup_batched_vs_sequential"]
        print(f"  width {r['width']}: images/s {line}; batched/sequential {s['median']:.2f}x "
              f"({s['min']:.2f}-{s['max']:.2f})"
              + (f"; grouped/vmap {r['speedup_grouped_vs_vmap']['median']:.2f}x" if a.vmap else ""))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
