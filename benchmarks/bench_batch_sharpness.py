"""What the batch sharpness costs: a training step with and without the measurement, paired.

    python benchmarks/bench_batch_sharpness.py [--data-dir ../shared/data] [--every 10] [--width 8]

Two :class:`nets.training.trainer.Trainer` s on the same data (real CIFAR-10 with ``--data-dir``, else
synthetic 32x32 images), one measuring the batch sharpness every ``--every`` steps
(``TrainConfig.batch_sharpness_every``, :mod:`nets.monitor.batch_sharpness`), one not, timed in
alternating blocks of ``--block`` steps over ``--rounds`` rounds on one thread. Prints the median
ms per step of each (min-max), the paired median overhead, and the cost of one measurement in steps.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nets.config import TrainConfig  # noqa: E402
from nets.data import load_data  # noqa: E402
from nets.training.trainer import Trainer  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--block", type=int, default=50)
    p.add_argument("--rounds", type=int, default=6)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    base = TrainConfig(dataset="cifar10" if a.data_dir else "synthetic", data_dir=a.data_dir,
                       image_size=None if a.data_dir else 32, width=a.width,
                       train_subset=2000 if a.data_dir else 0, test_subset=100 if a.data_dir else 0,
                       batch_size=128, iters=10**6, record_every=5, eval_every=-1, init_si_norm=20.0,
                       checkpoint_every=0, threads=1, quiet=True)
    data = load_data(base)
    trainers = {k: Trainer(replace(base, batch_sharpness_every=k), data) for k in (0, a.every)}
    for t in trainers.values():
        for _ in range(5):
            t.step()
    ms = {k: [] for k in trainers}
    for r in range(a.rounds):
        for k in (list(trainers) if r % 2 == 0 else list(trainers)[::-1]):
            t0 = time.perf_counter()
            for _ in range(a.block):
                trainers[k].step()
            ms[k].append((time.perf_counter() - t0) / a.block * 1e3)
    overhead = statistics.median(b / p_ - 1 for p_, b in zip(ms[0], ms[a.every]))
    for k, v in ms.items():
        label = "plain" if k == 0 else f"every {k}"
        print(f"{label:9s} {statistics.median(v):6.1f} ms/step ({min(v):.1f}-{max(v):.1f})")
    print(f"overhead {100 * overhead:.0f} % (paired median): one measurement costs ~{overhead * a.every:.1f} steps")
    return {"ms": ms, "overhead": overhead}


if __name__ == "__main__":
    main()
