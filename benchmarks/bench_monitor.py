"""What SIMonitor costs as a run grows: memory per record, and the time of ``close()``.

    python benchmarks/bench_monitor.py [--steps 100000] [--log-every 10] [--json out.json]

A tiny BN MLP (6 -> 16 -> 16 -> 3, two SI tensors) is trained by a plain loop with the monitor
attached (``out`` set: records streamed to disk) for ``--steps`` steps. The resident set size
(``/proc/self/statm``) is read every ``--probe-every`` steps: the slope of RSS against records
is the memory the monitor keeps per record (the model and the loop keep none). Then ``close()``
is timed (the summary, the files and the figure). The per-step time overhead on the width-16
ConvNet is measured by ``benchmarks/bench_nets.py`` (``monitor_overhead``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nets import SIMonitor  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--probe-every", type=int, default=5_000)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Linear(6, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.Linear(16, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-3)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    with tempfile.TemporaryDirectory() as out:
        mon = SIMonitor(model, opt, example_batch=x[:8], log_every=a.log_every, out=out, verbose=False)
        probes, t0 = [], time.perf_counter()
        for t in range(a.steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.step(loss)
            if t % a.probe_every == 0 or t == a.steps - 1:
                probes.append((len(mon.recorder.steps), rss_bytes()))
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        mon.close()
        close_s = time.perf_counter() - t1
    records, rss = np.array(probes, dtype=float).T
    half = records >= records[-1] / 2                      # after the allocator has warmed up
    slope = float(np.polyfit(records[half], rss[half], 1)[0])
    result = {"steps": a.steps, "log_every": a.log_every, "records": int(records[-1]), "train_s": train_s,
              "bytes_per_record": slope, "rss_growth_bytes": float(rss[-1] - rss[0]), "close_s": close_s,
              "probes": probes, "torch": torch.__version__}
    print(f"{a.steps:,} steps, {int(records[-1]):,} records in {train_s:.1f} s; RSS grows {slope:.0f} B per record "
          f"({(rss[-1] - rss[0]) / 2**20:.1f} MiB in all); close() {close_s:.2f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
