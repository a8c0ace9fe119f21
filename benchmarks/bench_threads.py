"""Images/s of the default ``nets.train`` workload by CPU thread setting, on a quiet and a loaded machine.

    python benchmarks/bench_threads.py [--rounds 5] [--steps 60] [--json OUT.json]

Each measurement is a fresh worker process (thread settings and OpenMP environment variables
take effect only before torch starts) that builds the default :class:`nets.TrainConfig` run
(SI ConvNet-16 on the digits, batch 128, metrics every 10 steps), trains ``--warmup`` steps, then
times ``--steps`` steps (at most ``--max-seconds``) and reports images/s.

Settings (``--settings``, default all):

* ``t1``          -- ``torch.set_num_threads(1)``
* ``t2``          -- 2 threads, OpenMP defaults (libgomp: a waiting thread spins ~300k
  iterations before it sleeps)
* ``t2-passive``  -- 2 threads, ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep at once)
* ``t2-active``   -- 2 threads, ``OMP_WAIT_POLICY=ACTIVE`` (waiting threads never sleep)
* ``t2-interop1`` -- 2 threads and ``torch.set_num_interop_threads(1)``

Loads (``--loads``, default ``none torch``), started before and stopped after each loaded
measurement by this script itself:

* ``none``  -- nothing else of ours running;
* ``spin``  -- one process spinning in pure Python (one busy core);
* ``torch`` -- a second torch training loop of the same kind with 2 threads (another user's
  ``nets.train``; the case seen to slow test runs 4-7x).

Paired and interleaved: every round measures every (load, setting) once, in an order that
rotates from round to round; the table gives the median and min-max over rounds. Timings on a
machine shared with other jobs are noisy: the 1-minute load average before each measurement is
kept in the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "t1": ({}, 1, None),
    "t2": ({}, 2, None),
    "t2-passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2, None),
    "t2-active": ({"OMP_WAIT_POLICY": "ACTIVE"}, 2, None),
    "t2-interop1": ({}, 2, 1),
}
LOADS = ("none", "spin", "torch")
SPIN = "while True:\n    pass\n"


def worker(threads: int, interop: int | None, warmup: int, steps: int, max_seconds: float,
           width: int) -> dict:
    """Run in the child: time the default training loop; returns images/s and what ran."""
    import torch

    if interop:
        torch.set_num_interop_threads(interop)
    torch.set_num_threads(threads)
    sys.path.insert(0, str(ROOT))
    from nets import TrainConfig
    from nets.data import load_data
    from nets.training.trainer import Trainer

    cfg = TrainConfig(width=width, iters=10 ** 6, eval_every=-1, checkpoint_every=0, quiet=True,
                      threads=threads, device="cpu")
    trainer = Trainer(cfg, load_data(cfg), "cpu")
    trainer.run(warmup)
    t0, done = time.perf_counter(), 0
    while done < steps and time.perf_counter() - t0 < max_seconds:
        trainer.run(trainer.iteration + 2)
        done += 2
    elapsed = time.perf_counter() - t0
    return {"images_per_s": done * cfg.batch_size / elapsed, "steps": done, "seconds": elapsed,
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}


def _child_env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT)
    return env


def start_load(kind: str, a) -> subprocess.Popen | None:
    """Start the load process (None for ``none``); it runs until :func:`stop_load`."""
    if kind == "none":
        return None
    if kind == "spin":
        cmd = [sys.executable, "-c", SPIN]
    else:
        cmd = [sys.executable, __file__, "--worker", "--threads", "2", "--steps", str(10 ** 9),
               "--max-seconds", str(10 ** 6), "--width", str(a.width)]
    proc = subprocess.Popen(cmd, env=_child_env({}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(a.load_ramp)                      # let it start and reach its steady state
    return proc


def stop_load(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(setting: str, a) -> dict:
    env_extra, threads, interop = SETTINGS[setting]
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--warmup", str(a.warmup),
           "--steps", str(a.steps), "--max-seconds", str(a.max_seconds), "--width", str(a.width)]
    if interop:
        cmd += ["--interop", str(interop)]
    p = subprocess.run(cmd, env=_child_env(env_extra), capture_output=True, text=True,
                       timeout=a.max_seconds + 300)
    if p.returncode != 0:
        raise RuntimeError(f"worker failed: {p.stderr.strip().splitlines()[-1:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_rounds(a) -> list[dict]:
    """Every (load, setting) once per round, the order rotated by one each round."""
    pairs = [(load, s) for load in a.loads for s in a.settings]
    rows = []
    for r in range(a.rounds):
        k = r % len(pairs)
        for load, setting in pairs[k:] + pairs[:k]:
            before = os.getloadavg()[0]
            proc = start_load(load, a)
            try:
                res = measure(setting, a)
            finally:
                stop_load(proc)
            rows.append({"round": r, "load": load, "setting": setting, "loadavg_1min": before, **res})
            print(f"round {r}: load {load:5s} {setting:12s} {res['images_per_s']:7.0f} images/s "
                  f"({res['steps']} steps, {res['seconds']:.1f} s; load average {before:.2f})", flush=True)
    return rows


def summarise(rows: list[dict], loads, settings) -> dict:
    table = {}
    for load in loads:
        for s in settings:
            v = [r["images_per_s"] for r in rows if r["load"] == load and r["setting"] == s]
            if v:
                table[f"{load}/{s}"] = {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
    return table


def markdown(table: dict, loads, settings) -> str:
    lines = ["| setting | " + " | ".join(f"load: {lo}" for lo in loads) + " |",
             "|---|" + "---|" * len(loads)]
    for s in settings:
        cells = []
        for lo in loads:
            c = table.get(f"{lo}/{s}")
            cells.append(f"{c['median']:.0f} ({c['min']:.0f}-{c['max']:.0f})" if c else "")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--loads", nargs="+", default=["none", "torch"], choices=LOADS)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=60, help="timed steps per measurement (default 60)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="stop a measurement after this long (a collapsed run stays bounded)")
    p.add_argument("--load-ramp", type=float, default=2.0, help="seconds the load runs before measuring")
    p.add_argument("--width", type=int, default=16, help="ConvNet width (default 16, as nets.train)")
    p.add_argument("--json", default=None, help="write every measurement and the table to this JSON file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--interop", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.threads, a.interop or None, a.warmup, a.steps, a.max_seconds, a.width)))
        return None
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} usable cores; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    rows = run_rounds(a)
    table = summarise(rows, a.loads, a.settings)
    md = markdown(table, a.loads, a.settings)
    print(f"\nimages/s, median (min-max) over {a.rounds} rounds, default nets.train workload:\n{md}")
    if a.json:
        out = {"cores": cores, "rounds": a.rounds, "steps": a.steps, "width": a.width, "table": table,
               "markdown": md, "measurements": rows}
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return table


if __name__ == "__main__":
    main()
