"""Benchmark of the vectorised toy simulator (issue #3): not a timed test, run by hand.

    python benchmarks/bench_simulate.py [--configs 1000] [--steps 10000] [--dim 100] [--out DIR]

Times, in the same process:

1. the sweep: ``simulate.sweep`` of ``configs`` configurations (10 learning rates x 10 weight
   decays x 10 seeds) of GD + WD on the normalised quadratic, ``steps`` steps each, recording
   the norm and the loss at every step (eigenbasis fast path, float32);
2. a plain Python loop over configurations doing the same steps with the same code a user would
   write (``objective.loss_and_grad`` on one vector and ``theory.dynamics.sgd_step``), timed on a
   subset of configurations and extrapolated linearly (stated in the output);
3. the generic vectorised engine (dense A, float64), timed on a fraction of the steps and
   extrapolated -- the "plain vectorised numpy" reference;
4. the same sweep with explicit gradient noise (generic engine on the diagonal problem), timed on
   a fraction of the steps and extrapolated.

Prints the figures and writes them to ``bench.json`` in ``--out`` (default
``runs/bench-simulate-<timestamp>/``). The load average is recorded: on the shared 2-core
machine other jobs slow every figure down.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli import write_json  # noqa: E402
from simulate.engine import run  # noqa: E402
from simulate.objectives import NormalizedQuadratic  # noqa: E402
from simulate.sweep import make_grid, sweep  # noqa: E402
from theory.dynamics import sgd_step  # noqa: E402


def grid(n_configs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = max(int(round(n_configs ** (1 / 3))), 1)
    cfg = make_grid(np.geomspace(0.1, 10, k), np.geomspace(1e-4, 1e-2, k), np.arange(k))
    reps = -(-n_configs // cfg["eta"].size)
    take = lambda a: np.tile(a, reps)[:n_configs]  # noqa: E731
    return take(cfg["eta"]), take(cfg["lam"]), take(cfg["seed"])


def loop_reference(obj, x0, eta, lam, steps):
    """The plain loop: one configuration at a time, one vector per step."""
    x = x0.copy()
    norms, losses = np.empty(steps), np.empty(steps)
    for t in range(steps):
        loss, g = obj.loss_and_grad(x[None])
        norms[t], losses[t] = np.sqrt(x @ x), loss[0]
        x, _ = sgd_step(x, g[0], eta, lam)
    return norms, losses


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t0, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", type=int, default=1000)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3, help="repeats of the sweep (best is reported)")
    p.add_argument("--loop-configs", type=int, default=3, help="configurations timed in the plain loop")
    p.add_argument("--fraction", type=float, default=0.05, help="fraction of steps timed for 3 and 4")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    obj = NormalizedQuadratic(args.dim, seed=0)
    eta, lam, seeds = grid(args.configs)
    load_before = os.getloadavg()

    sweep_times = []
    for _ in range(args.repeat):
        t, traj = timed(sweep, obj, eta, lam, seeds, steps=args.steps, grid=False, record=("loss",),
                        method="fast")
        sweep_times.append(t)
    assert traj.norm.shape == (args.steps, args.configs) and traj.loss.shape == traj.norm.shape

    sub = np.linspace(0, args.configs - 1, args.loop_configs).astype(int)
    x0 = obj.init(seeds[sub])
    t_loop, refs = timed(lambda: [loop_reference(obj, x0[j], eta[i], lam[i], args.steps)
                                  for j, i in enumerate(sub)])
    loop_per_config = t_loop / len(sub)
    agree = max(float(np.max(np.abs(refs[j][0][:20] - traj.norm[:20, i]) / refs[j][0][:20]))
                for j, i in enumerate(sub))

    n_part = max(int(args.steps * args.fraction), 1)
    x0_all = obj.init(seeds)
    t_gen, _ = timed(run, obj, x0_all, eta, lam, steps=n_part, record=("loss",))
    t_noise, _ = timed(sweep, obj, eta, lam, seeds, steps=n_part, grid=False, record=("loss",),
                       noise=1e-8)

    best = min(sweep_times)
    result = {
        "what": f"GD+WD, normalised quadratic d={args.dim}, {args.configs} configs x {args.steps} steps, "
                "norm and loss recorded every step",
        "sweep_seconds_best": best, "sweep_seconds_all": sweep_times,
        "loop_configs_timed": int(len(sub)), "loop_seconds_timed": t_loop,
        "loop_seconds_per_config": loop_per_config,
        "loop_seconds_extrapolated": loop_per_config * args.configs,
        "speedup_vs_loop": loop_per_config * args.configs / best,
        "generic_vectorised_seconds_extrapolated": t_gen * args.steps / n_part,
        "noisy_sweep_seconds_extrapolated": t_noise * args.steps / n_part,
        "steps_timed_for_extrapolation": n_part,
        "loop_vs_sweep_max_rel_diff_first_20_steps": agree,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
        "machine": platform.machine(),
    }
    folder = args.out or Path("runs") / f"bench-simulate-{datetime.now():%Y%m%d-%H%M%S}"
    path = write_json(folder / "bench.json", result)

    print(result["what"])
    print(f"  vectorised sweep (fast path): {best:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in sweep_times)})")
    print(f"  plain Python loop: {loop_per_config:.2f} s per configuration, timed on {len(sub)} "
          f"configurations x {args.steps} steps and extrapolated to {args.configs}: "
          f"{result['loop_seconds_extrapolated']:.0f} s")
    print(f"  speed-up vs loop: {result['speedup_vs_loop']:.0f}x")
    print(f"  generic vectorised engine (dense A, float64), {n_part} steps timed, extrapolated: "
          f"{result['generic_vectorised_seconds_extrapolated']:.1f} s")
    print(f"  with gradient noise 1e-8 (generic engine on the eigenbasis), {n_part} steps timed, "
          f"extrapolated: {result['noisy_sweep_seconds_extrapolated']:.1f} s")
    print(f"  loop and sweep agree to {agree:.1e} (relative, first 20 steps; float32 vs float64)")
    print(f"  load average before/after: {load_before[0]:.2f} / {result['load_average_after'][0]:.2f}")
    print(f"  wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
