"""FP32 vs bf16 autocast: training images/s of nets' own step, paired, and the FLOP rate achieved.

    python benchmarks/bench_precision.py [--data-dir ../shared/data] [--threads 2] [--rounds 5]

For each model (ConvNet widths 8, 16, 32 and ResNet-18, fully SI, batch 128, 32x32 images:
real CIFAR-10 with ``--data-dir``, else synthetic images of the same shape) one
:class:`nets.training.trainer.Trainer` per precision (``TrainConfig.precision``) is warmed up,
then both are timed in alternating blocks of ``--block`` steps over ``--rounds`` rounds (the order
flips every round). Reported per model: the median and min-max of each precision's images/s
over the rounds, the median and min-max of the *paired* ratio bf16/fp32 (the two blocks of one
round ran back to back, so a busy neighbour slows both), and the achieved GFLOP/s (counted
FLOPs of one forward + backward pass per image, :func:`nets.training.plan.flops_per_image`, times
images/s). Check ``uptime`` before; results also go to ``--json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nets.config import TrainConfig  # noqa: E402
from nets.data import load_data  # noqa: E402
from nets.training.plan import flops_per_image  # noqa: E402
from nets.training.trainer import Trainer  # noqa: E402

MODELS = {"convnet-8": ("convnet", 8), "convnet-16": ("convnet", 16), "convnet-32": ("convnet", 32),
          "resnet18": ("resnet18", 64)}


def _block(trainer: Trainer, steps: int) -> float:
    """Images/s of ``steps`` training steps (the last one's loss is waited for)."""
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    trainer.model.zero_grad(set_to_none=True)
    return steps * trainer.config.batch_size / (time.perf_counter() - t0)


def bench_model(name: str, base: TrainConfig, rounds: int, block: int, warmup: int) -> dict:
    model, width = MODELS[name]
    cfg = replace(base, model=model, width=width)
    data = load_data(cfg)
    trainers = {p: Trainer(replace(cfg, precision=p), data) for p in ("fp32", "bf16")}
    for tr in trainers.values():
        _block(tr, warmup)
    rates = {p: [] for p in trainers}
    for r in range(rounds):
        for p in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            rates[p].append(_block(trainers[p], block))
    ratios = [b / f for f, b in zip(rates["fp32"], rates["bf16"])]
    flops = flops_per_image(trainers["fp32"].model, image_shape=tuple(data.x_train.shape[1:]))
    out = {"model": name, "flops_per_image": flops, "ratio_median": statistics.median(ratios),
           "ratio_min": min(ratios), "ratio_max": max(ratios)}
    for p, v in rates.items():
        out[p] = {"images_per_s_median": statistics.median(v), "min": min(v), "max": max(v),
                  "gflops_median": statistics.median(v) * flops / 1e9}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: synthetic 32x32 images)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--block", type=int, default=10, help="steps per timed block (ResNet-18: a fifth, at least 2)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dataset = "cifar10" if args.data_dir else "synthetic"
    base = TrainConfig(dataset=dataset, data_dir=args.data_dir, image_size=None if args.data_dir else 32,
                       train_subset=2000 if args.data_dir else 0, test_subset=100 if args.data_dir else 0,
                       batch_size=128, iters=10**6, record_every=10, eval_every=-1, init_si_norm=None,
                       checkpoint_every=0, threads=args.threads, quiet=True)
    results = []
    print(f"{'model':12s} {'fp32 img/s':>18s} {'bf16 img/s':>18s} {'bf16/fp32 (paired)':>22s} {'GFLOP/s fp32 / bf16':>20s}")
    for name in args.models:
        block = max(2, args.block // 5) if name == "resnet18" else args.block
        r = bench_model(name, base, args.rounds, block, args.warmup)
        results.append(r)
        f, b = r["fp32"], r["bf16"]
        print(f"{name:12s} {f['images_per_s_median']:7.0f} ({f['min']:.0f}-{f['max']:.0f}) "
              f"{b['images_per_s_median']:7.0f} ({b['min']:.0f}-{b['max']:.0f}) "
              f"{r['ratio_median']:10.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) "
              f"{f['gflops_median']:8.0f} / {b['gflops_median']:.0f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "rounds": args.rounds, "dataset": dataset,
                                               "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
