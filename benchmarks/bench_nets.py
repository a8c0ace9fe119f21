"""Training throughput of nets/' loop vs a plain DataLoader loop, and the cost of recording.

    python benchmarks/bench_nets.py [--device auto|cpu|cuda] [--dataset digits] [--augment]

All loops train the same ConvNet (fully SI, nets.models) with the same SGD (lr, WD, batch
size, drop_last) on the same images, in one process. They are timed in short blocks of
``--block`` iterations, interleaved over ``--rounds`` rounds, and each loop's *fastest* block
is kept: on a machine shared with other jobs that is the estimate least disturbed by them.

* **ours** -- :class:`nets.training.trainer.Trainer`: images pre-loaded once as a tensor on the device,
  one permutation per epoch on the device, batches by ``index_select``, normalisation on the
  batch, channels-last activations, SGD ``foreach`` (``fused`` on CUDA), no host sync between
  recordings, step metrics recorded every ``--record-every`` steps. The recording overhead is
  measured from the same loop recording every step vs never, divided by ``--record-every``
  (k times the signal of a direct comparison, which is also printed). ``ours_nchw`` is the
  loop without channels-last activations (what the data path alone buys);
* **DataLoader loop** -- the textbook loop of the paper's code base: a map-style ``Dataset``
  that converts and normalises one image at a time (as torchvision's ``ToTensor`` +
  ``Normalize``), ``DataLoader(shuffle=True, drop_last=True)`` re-iterated every epoch, the
  batch copied to the device, ``loss.item()`` logged every step, default SGD;
* **TensorDataset loop** -- the same loop over pre-normalised tensors (the cheapest DataLoader
  variant), reported for reference;
* **plain loop with / without SIMonitor** -- the cost of :class:`nets.SIMonitor` in a user's own
  loop (batches sliced from pre-normalised tensors, default SGD, ``mon.step(loss)`` after each
  step, online detection ``"auto"``, records streamed to an ``out`` folder): ``monitor_overhead`` from the loop monitored at every step
  vs not at all, divided by ``--record-every`` (as for ours), and the direct comparison.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nets.config import TrainConfig  # noqa: E402
from nets.data import load_data  # noqa: E402
from nets.models import build_model  # noqa: E402
from nets.training.trainer import Trainer, resolve_device  # noqa: E402


class PerImageDataset(Dataset):
    """One image at a time, (augmented,) converted and normalised on access (torchvision style:
    ``RandomCrop(size, padding=pad)``, ``RandomHorizontalFlip()``, ``Normalize``)."""

    def __init__(self, x, y, mean, std, augment=False, pad=4):
        self.x, self.y, self.augment, self.pad = x, y, augment, pad
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        img = self.x[i].float()
        if self.augment:
            h, w = img.shape[-2:]
            img = F.pad(img, (self.pad,) * 4)
            top, left = (int(v) for v in torch.randint(0, 2 * self.pad + 1, (2,)))
            img = img[:, top:top + h, left:left + w]
            if torch.rand(()) < 0.5:
                img = img.flip(-1)
        return (img - self.mean) / self.std, int(self.y[i])


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class OurLoop:
    """:class:`nets.training.trainer.Trainer` with test evaluation and checkpoints off."""

    def __init__(self, cfg, data, device, total, record_every, channels_last=True):
        c = TrainConfig(**{**cfg.to_dict(), "record_every": record_every, "eval_every": -1,
                           "checkpoint_every": 0, "iters": total + 1, "channels_last": channels_last})
        self.trainer = Trainer(c, data, device)

    def run(self, n):
        self.trainer.run(self.trainer.iteration + n)


class DataLoaderLoop:
    """The textbook loop: DataLoader re-iterated every epoch, batch to device, loss.item()."""

    def __init__(self, cfg, data, device, per_image: bool):
        torch.manual_seed(cfg.seed)
        self.device = device
        self.model = build_model(cfg.model, mode=cfg.mode, width=cfg.width, num_classes=data.num_classes,
                                 in_channels=data.channels, input_size=data.image_size).to(device).train()
        self.opt = torch.optim.SGD([p for p in self.model.parameters() if p.requires_grad], lr=cfg.lr,
                                   weight_decay=cfg.wd, momentum=cfg.momentum)
        if per_image:
            ds = PerImageDataset(data.x_train, data.y_train, data.mean, data.std, cfg.augment, cfg.aug_pad)
        else:
            scale, shift = data.normaliser()
            ds = TensorDataset(data.x_train * scale + shift, data.y_train)
        self.loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True, num_workers=0)
        self.batches = iter(self.loader)
        self.running = 0.0

    def run(self, n):
        for _ in range(n):
            try:
                x, y = next(self.batches)
            except StopIteration:                      # next epoch: a new iterator, reshuffled
                self.batches = iter(self.loader)
                x, y = next(self.batches)
            x, y = x.to(self.device), y.to(self.device)
            loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.running += loss.item()


class PlainLoop:
    """A user's loop: pre-normalised tensors sliced in order, SGD, optionally SIMonitor."""

    def __init__(self, cfg, data, device, log_every: int | None):
        from nets import SIMonitor

        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, mode=cfg.mode, width=cfg.width, num_classes=data.num_classes,
                                 in_channels=data.channels, input_size=data.image_size).to(device).train()
        self.opt = torch.optim.SGD([p for p in self.model.parameters() if p.requires_grad], lr=cfg.lr,
                                   weight_decay=cfg.wd, momentum=cfg.momentum)
        scale, shift = data.normaliser()
        self.x, self.y = (data.x_train * scale + shift).to(device), data.y_train.to(device)
        self.bs, self.pos = cfg.batch_size, 0
        self.folder = None if log_every is None else tempfile.TemporaryDirectory(prefix="sibn-bench-")
        self.mon = None if log_every is None else SIMonitor(   # as the README shows it: records streamed to out
            self.model, self.opt, example_batch=self.x[:8], log_every=log_every, out=self.folder.name, verbose=False)

    def run(self, n):
        for _ in range(n):
            if self.pos + self.bs > self.x.shape[0]:
                self.pos = 0
            x, y = self.x[self.pos:self.pos + self.bs], self.y[self.pos:self.pos + self.bs]
            self.pos += self.bs
            loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if self.mon is not None:
                self.mon.step(loss)


def measure(loops: dict, block: int, rounds: int, warmup: int, device) -> dict:
    """Seconds per block of ``block`` iterations for each loop, interleaved over ``rounds``."""
    for loop in loops.values():
        loop.run(warmup)
    times = {k: [] for k in loops}
    for _ in range(rounds):
        for k, loop in loops.items():
            _sync(device)
            t0 = time.perf_counter()
            loop.run(block)
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--dataset", default="digits", choices=["digits", "synthetic", "cifar10", "cifar100"])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--block", type=int, default=40, help="iterations per timed block")
    p.add_argument("--rounds", type=int, default=5, help="interleaved blocks per loop (best is kept)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--record-every", type=int, default=10)
    p.add_argument("--augment", action="store_true", help="random crop + flip in both loops")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    device = resolve_device(a.device)
    cfg = TrainConfig(dataset=a.dataset, data_dir=a.data_dir, image_size=a.image_size, width=a.width,
                      batch_size=a.batch_size, threads=a.threads, device=str(device), quiet=True,
                      augment=a.augment)
    if a.threads or device.type == "cpu":
        import os
        torch.set_num_threads(a.threads or min(len(os.sched_getaffinity(0)), 8))
    data = load_data(cfg)
    total = a.warmup + a.rounds * a.block
    k = a.record_every
    loops = {"ours": OurLoop(cfg, data, device, total, k),
             "ours_no_recording": OurLoop(cfg, data, device, total, 10 ** 9),
             "ours_recording_every_step": OurLoop(cfg, data, device, total, 1),
             "ours_nchw": OurLoop(cfg, data, device, total, k, channels_last=False),
             "dataloader": DataLoaderLoop(cfg, data, device, per_image=True)}
    if not a.augment:   # a TensorDataset has no per-image transforms, hence no augmentation
        loops["tensordataset"] = DataLoaderLoop(cfg, data, device, per_image=False)
    loops.update({"plain": PlainLoop(cfg, data, device, None), "plain_monitor": PlainLoop(cfg, data, device, k),
                  "plain_monitor_every_step": PlainLoop(cfg, data, device, 1)})
    times = measure(loops, a.block, a.rounds, a.warmup, device)
    best = {name: min(t) for name, t in times.items()}          # least disturbed by neighbours
    ips = {name: a.block * a.batch_size / t for name, t in best.items()}
    per_record = best["ours_recording_every_step"] - best["ours_no_recording"]
    out = {"device": str(device), "threads": torch.get_num_threads(), "dataset": a.dataset,
           "image_size": data.image_size, "width": a.width, "batch_size": a.batch_size,
           "augment": a.augment, "block": a.block, "rounds": a.rounds, "images_per_s": ips,
           "block_seconds": times,
           "speedup_vs_dataloader": ips["ours"] / ips["dataloader"],
           "speedup_vs_tensordataset": ips["ours"] / ips["tensordataset"] if "tensordataset" in ips else None,
           "speedup_nchw_vs_dataloader": ips["ours_nchw"] / ips["dataloader"],
           "recording_overhead": per_record / (k * best["ours_no_recording"]),
           "recording_overhead_direct": best["ours"] / best["ours_no_recording"] - 1,
           "monitor_overhead": (best["plain_monitor_every_step"] - best["plain"]) / (k * best["plain"]),
           "monitor_overhead_direct": best["plain_monitor"] / best["plain"] - 1}
    print(f"device {device} ({out['threads']} threads), {a.dataset} {data.image_size}x{data.image_size}, "
          f"ConvNet width {a.width}, batch {a.batch_size}, augment {a.augment}; best of {a.rounds} "
          f"interleaved blocks of {a.block} iterations")
    for name, v in ips.items():
        print(f"  {name:28s} {v:10.0f} images/s")
    tds = out["speedup_vs_tensordataset"]
    print(f"speed-up vs DataLoader loop: {out['speedup_vs_dataloader']:.2f}x"
          + (f" (vs TensorDataset loop: {tds:.2f}x)" if tds else "")
          + f"; without channels-last: {out['speedup_nchw_vs_dataloader']:.2f}x")
    print(f"recording overhead at every {k} steps: {100 * out['recording_overhead']:.1f}% of step time "
          f"(from recording every step; direct comparison: {100 * out['recording_overhead_direct']:.1f}%)")
    print(f"SIMonitor in a plain loop at every {k} steps: {100 * out['monitor_overhead']:.1f}% of step time "
          f"(from monitoring every step; direct comparison: {100 * out['monitor_overhead_direct']:.1f}%)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
