"""``python -m nets.monitor --demo``: SIMonitor on a standard recipe that has nothing of our trainer.

A *practical* CIFAR ResNet-18 (the common post-activation design: conv-BN-ReLU blocks, BN affine
on, a 1x1 conv + BN shortcut where the shape changes, everything trained), written here from
scratch, trained by a textbook loop: ``DataLoader`` over a subset of real CIFAR-10,
``torch.optim.SGD(momentum=0.9, weight_decay=5e-4)``, a cosine LR schedule, cross-entropy. The only
line of this toolkit in the loop is ``mon.step(loss)``; the monitor finds the SI weights (every
conv: each is followed by a BN) by testing and prints the per-layer table and the regime.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["ResNet18", "run_demo"]


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18 ([2, 2, 2, 2] basic blocks, channels w, 2w, 4w, 8w; w = 64 is the usual)."""

    def __init__(self, width: int = 64, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, c_in = [], width
        for i, c in enumerate([width, 2 * width, 4 * width, 8 * width]):
            layers += [BasicBlock(c_in, c, 1 if i == 0 else 2), BasicBlock(c, c, 1)]
            c_in = c
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def run_demo(data_dir, *, out="runs/monitor-demo", subset: int = 2560, epochs: int = 4, width: int = 16,
             batch_size: int = 128, lr: float = 0.1, log_every: int = 10, seed: int = 0, quiet: bool = False) -> dict:
    """Train the ResNet-18 on the first ``subset`` CIFAR-10 training images; return the summary."""
    from cli import Progress
    from nets.data import load_cifar
    from nets.monitor import SIMonitor

    data = load_cifar("cifar10", data_dir)
    torch.manual_seed(seed)
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    x, y = (data.x_train[:subset] - mean) / std, data.y_train[:subset]
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, drop_last=True)
    model = ResNet18(width)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
    mon = SIMonitor(model, optimizer, example_batch=x[:8], log_every=log_every, out=out,
                    steps_per_epoch=len(loader), verbose=not quiet, plot=True)
    t0 = time.perf_counter()
    with Progress(epochs * len(loader), desc="ResNet-18 / CIFAR-10 subset", enabled=False if quiet else None) as bar:
        try:
            for _ in range(epochs):
                for xb, yb in loader:
                    out_ = model(xb)
                    loss = F.cross_entropy(out_, yb)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    mon.step(loss, (out_.argmax(1) == yb).float().mean())
                    bar.update(1)
        except KeyboardInterrupt:
            print("\ninterrupted: reporting what was recorded")
    summary = mon.close()
    summary["elapsed_s"] = time.perf_counter() - t0
    return summary


PROG = "python -m nets.monitor"


def build_parser():

    from cli import CliParser

    p = CliParser(prog=PROG, description=(
        "SIMonitor from the command line. --demo trains a practical CIFAR ResNet-18 with a textbook loop "
        "(DataLoader, SGD momentum 0.9, weight decay 5e-4, cosine schedule; nothing from nets.Trainer) on a "
        "subset of real CIFAR-10 and prints the per-layer table and the regime. With RUN_DIRs: print the "
        "table of each finished run (SIMonitor.close() or nets.train), and with --figure draw them on shared "
        "axes. In your own loop: from nets import SIMonitor."))
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="folders written by SIMonitor.close() or nets.train")
    p.add_argument("--figure", default=None, help="with RUN_DIRs: write a comparison figure (PNG) there")
    p.add_argument("--demo", action="store_true", help="run the demonstration (CPU: a few minutes)")
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (python version)")
    p.add_argument("--subset", type=int, default=2560, help="first N training images (default %(default)s)")
    p.add_argument("--epochs", type=int, default=4, help="default %(default)s")
    p.add_argument("--width", type=int, default=16, help="ResNet-18 base width (64 is the usual; default %(default)s)")
    p.add_argument("--batch-size", type=int, default=128, help="default %(default)s")
    p.add_argument("--lr", type=float, default=0.1, help="peak LR of the cosine schedule (default %(default)s)")
    p.add_argument("--log-every", type=int, default=10, help="record every k steps (default %(default)s)")
    p.add_argument("--out", default="runs/monitor-demo", help="output folder (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: usable cores, max 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or online messages")
    return p


def load_run(run_dir) -> dict:
    """A finished run (SIMonitor.close() or nets.train): label, step table, equilibrium series,
    destabilisations and its periods.json."""
    import json
    from pathlib import Path

    import numpy as np

    from nets.monitor.track import SERIES_COLUMNS

    d = Path(run_dir)
    if (d / "metrics.csv").is_file() and not (d / "periods.json").is_file():
        raise FileNotFoundError("no periods.json: the run was not closed (SIMonitor.close() never ran); "
                                "every record it flushed is in its metrics.csv")
    for f in ("periods.json", "metrics.npz"):
        if not (d / f).is_file():
            raise FileNotFoundError(f"no {f} (not a folder written by SIMonitor.close() or nets.train)")
    rep = json.loads((d / "periods.json").read_text())
    if "layers" not in rep:
        raise ValueError("periods.json has no per-layer table (written before SIMonitor existed)")
    z = np.load(d / "metrics.npz")
    steps = {k[5:]: z[k] for k in z.files if k.startswith("step_")}
    periods = rep.get("periods", rep.get("summary", {}))
    h = rep["optimizer"][0]
    mom = ("mu" if h["kind"] == "sgd" else "beta1") + f"={h['momentum']:g}"
    label = f"{h['optimizer']} lr={h['lr']:g} wd={h['wd']:g} {mom} (lr*wd={h['lr'] * h['wd']:.2g})"
    return {"label": label, "steps": steps, "series": {k: z[k] for k in SERIES_COLUMNS},
            "events": periods.get("event_iterations", []), "periods": rep}


def main(argv=None) -> int:
    import os

    from cli import cli_fail
    from nets.data import DataError
    from nets.monitor.state import format_table

    args = build_parser().parse_args(argv)
    if args.demo == bool(args.run_dirs):
        cli_fail(PROG, "give either --demo or RUN_DIRs")
    if args.run_dirs:
        runs = []
        for d in args.run_dirs:
            try:
                runs.append(load_run(d))
            except (FileNotFoundError, KeyError, ValueError) as exc:
                cli_fail(PROG, f"{d}: {exc}")
            s = runs[-1]["periods"]
            print(f"{d} ({runs[-1]['label']}):\n{format_table(s['layers'] + [s['total']], s['regime'], s.get('window'))}")
        if args.figure:
            from nets.plots import plot_compare
            print(f"wrote {plot_compare(args.figure, runs)}")
        return 0
    for name in ("subset", "epochs", "width", "batch_size", "log_every"):
        if getattr(args, name) < 1:
            cli_fail(PROG, f"--{name.replace('_', '-')} must be >= 1")
    if not 0 < args.lr < float("inf"):
        cli_fail(PROG, "--lr must be a finite number > 0")
    torch.set_num_threads(args.threads or min(len(os.sched_getaffinity(0)), 8))
    try:
        s = run_demo(args.data_dir, out=args.out, subset=args.subset, epochs=args.epochs, width=args.width,
                     batch_size=args.batch_size, lr=args.lr, log_every=args.log_every, seed=args.seed,
                     quiet=args.quiet)
    except DataError as exc:
        cli_fail(PROG, str(exc))
    print(format_table(s["layers"] + [s["total"]], s["regime"], s.get("window")))
    print(f"{s['iterations']} steps in {s['elapsed_s']:.0f} s; files in {args.out}/ "
          "(metrics.csv/npz, periods.json, layers.csv, plot.png)")
    return 0
