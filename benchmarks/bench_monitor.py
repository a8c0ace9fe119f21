"""What SIMonitor costs as a run grows: memory per step, and the time of ``close()``.

    python benchmarks/bench_monitor.py [--steps 100000] [--log-every 10] [--close-at 1e5,1e6] [--json out.json]

A tiny BN MLP (6 -> 16 -> 16 -> 3, two SI tensors) is trained by a plain loop for ``--steps``
steps twice, each in a fresh process: with the monitor attached (``out`` set: records streamed to
disk, tables spilled) and without it. The resident set size (``/proc/self/statm``) is read every
``--probe-every`` steps (after ``gc.collect()`` and glibc's ``malloc_trim``: memory in use, not
what the allocator keeps cached); the slope of RSS against steps over the second half (after the allocator
has warmed up) is fitted for both, and their difference is the memory the monitor adds per step
(the loop alone creeps by itself: PyTorch's and the C library's allocators). Then ``close()`` is
timed (the summary and the files, not the figure). The per-step time overhead on the width-16
ConvNet is measured by ``benchmarks/bench_nets.py`` (``monitor_overhead``).
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import multiprocessing
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


def _trim():
    """Hand the C library's free heap back to the system (glibc ``malloc_trim``), so that RSS
    measures memory in use rather than what the allocator keeps cached; a no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_bytes() -> int:
    gc.collect()
    _trim()
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def tiny_setup():
    """The tiny BN MLP (two SI tensors), its SGD and one fixed batch, seeded."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Linear(6, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.Linear(16, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-3)
    return model, opt, torch.randn(32, 6), torch.randint(0, 3, (32,))


def train_step(model, opt, x, y, mon=None) -> None:
    """One plain-loop SGD step, as a user writes it, told to the monitor if there is one."""
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if mon is not None:
        mon.step(loss)


def run_loop(steps: int, log_every: int | None, probe_every: int) -> dict:
    """Train for ``steps`` steps, monitored every ``log_every`` (None: no monitor); RSS probes."""
    model, opt, x, y = tiny_setup()
    with tempfile.TemporaryDirectory() as out:
        mon = None if log_every is None else SIMonitor(model, opt, example_batch=x[:8], log_every=log_every,
                                                       out=out, verbose=False)
        probes, t0 = [], time.perf_counter()
        for t in range(steps):
            train_step(model, opt, x, y, mon)
            if t % probe_every == 0 or t == steps - 1:
                probes.append((t + 1, rss_bytes()))
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        records = 0
        if mon is not None:
            records = len(mon.recorder.steps)
            mon.close()
        close_s = time.perf_counter() - t1
    it, rss = np.array(probes, dtype=float).T
    half = (it >= it[-1] / 2) & ((it - 1) % probe_every == 0)     # the probes on chunk boundaries
    slope = float(np.polyfit(it[half], rss[half], 1)[0]) if half.sum() >= 3 else float("nan")
    return {"records": records, "train_s": train_s, "close_s": close_s if mon is not None else None,
            "bytes_per_step": slope, "rss_growth_bytes": float(rss[-1] - rss[0]), "probes": probes}


def close_time(n_records: int, real_steps: int = 500) -> dict:
    """``close()`` of a monitor holding ``n_records`` records, without training that long: the
    records of a short real run (``log_every=1``) are tiled to ``n_records`` (iterations renumbered)
    and loaded with ``load_state_dict``, which also rewrites ``metrics.csv`` from them."""
    model, opt, x, y = tiny_setup()
    with tempfile.TemporaryDirectory() as out:
        mon = SIMonitor(model, opt, example_batch=x[:8], log_every=1, out=out, verbose=False)
        for _ in range(real_steps):
            train_step(model, opt, x, y, mon)
        reps = -(-n_records // real_steps)
        rec, state = mon.recorder.state_dict(), mon.state_dict()

        def tile(rows):
            return np.tile(np.asarray(rows, dtype=float), (reps, 1))[:n_records].tolist()
        steps = np.tile(np.asarray(rec["steps"]), (reps, 1))[:n_records]
        steps[:, 0] = np.arange(n_records)
        rec.update(steps=steps.tolist(), **{k: tile(rec[k]) for k in ("layer_norms", "layer_grad_norms",
                                                                      "layer_angular_updates")})
        track = dict(state["track"], hyper=tile(state["track"]["hyper"]), series=tile(state["track"]["series"]))
        mon.load_state_dict({"iteration": n_records, "track": track}, rec)
        del rec, track, steps
        t0 = time.perf_counter()
        mon.close()
        return {"records": n_records, "close_s": time.perf_counter() - t0}


def _child(fn, args, queue):
    queue.put(fn(*args))


def in_fresh_process(fn, *args) -> dict:
    """``fn(*args)`` in a new interpreter (its memory and allocator start clean)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn, args, queue))
    p.start()
    result = queue.get()
    p.join()
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--probe-every", type=int, default=None,
                   help="steps between RSS probes (default: 4096 records, the chunk of the spilled tables, "
                        "so that their in-memory part is empty at every probe)")
    p.add_argument("--close-at", default="", help="also time close() at these record counts (comma-separated, "
                   "records of a short run tiled), e.g. 100000,300000,1000000")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    a.probe_every = a.probe_every or 4096 * a.log_every
    closes = [in_fresh_process(close_time, int(float(n))) for n in a.close_at.split(",") if n]
    for c in closes:
        print(f"close() with {c['records']:,} records: {c['close_s']:.3f} s", flush=True)
    monitored = in_fresh_process(run_loop, a.steps, a.log_every, a.probe_every)
    plain = in_fresh_process(run_loop, a.steps, None, a.probe_every)
    added = monitored["bytes_per_step"] - plain["bytes_per_step"]
    result = {"steps": a.steps, "log_every": a.log_every, "records": monitored["records"],
              "monitor_bytes_per_step": added, "monitor_bytes_per_record": added * a.log_every,
              "close_s": monitored["close_s"], "close_at": closes, "monitored": monitored, "plain": plain, "torch": torch.__version__}
    mib = 2 ** 20
    if added != added:
        print(f"(fewer than 3 probes on chunk boundaries in the second half: no slope; run more steps, or "
              f"--log-every 1, for {4096 * 6 * a.log_every:,}+ steps)")
    print(f"{a.steps:,} steps, {monitored['records']:,} records: train {monitored['train_s']:.1f} s "
          f"(without the monitor {plain['train_s']:.1f} s); RSS grows {monitored['bytes_per_step']:.1f} B/step with "
          f"the monitor ({monitored['rss_growth_bytes'] / mib:.1f} MiB in all), {plain['bytes_per_step']:.1f} B/step "
          f"without ({plain['rss_growth_bytes'] / mib:.1f} MiB): the monitor adds {added:.1f} B/step "
          f"({added * a.log_every:.0f} B/record); close() {monitored['close_s']:.2f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
