"""``python -m nets.paper_check`` -- the paper's setting at several learning rates within a time budget.

Made for a single call on a GPU machine (run from the checkout with ``PYTHONPATH=.``; nothing to
install): one training process per learning rate, all started together on the same device, each
the authors' configuration (:data:`nets.config.PAPER_PRESET`: SI ConvNet of width 32 at its
default init, batch 128 keeping the last partial batch, lambda = 1e-3, momentum 0, full-pass train
loss) on a CIFAR-10 pack (``python -m nets.data pack``) or data folder. At the deadline every run
is stopped after its current step (SIGTERM: it writes everything it recorded), and the command
writes to ``--out``

* ``summary.json`` / ``summary.csv`` -- per learning rate: iterations done, images/s, periods
  measured (mean, sd) vs predicted from the measured norm ratios (:mod:`nets.report`), the
  forecast error of the next destabilisation (:mod:`nets.forecast`), and the total images/s;
* ``frequency.png`` -- destabilisations per iteration vs eta*lambda, measured and predicted;
* ``runs/lr<eta>/`` -- each run's files (``metrics.csv``, ``periods.json``, ``plot.png``, ...),
  without the checkpoint (``--keep-checkpoints`` keeps it).

Periods need the network to fit its training set first (phase A of the paper lasts until then),
so give the GPU at least a few minutes; on a CPU use a tiny ``--width`` and ``--seconds``.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from simulate.io import CliParser, cli_fail, write_csv, write_json

PROG = "python -m nets.paper_check"
#: budget of a device call (10 min) minus start-up and the copy back: what the GPU run may use
DEFAULT_SECONDS = 480

__all__ = ["build_parser", "check_configs", "run_check", "main"]


def check_configs(args) -> list:
    """One :func:`nets.config.paper_config` per learning rate, as the flags say."""
    from .config import paper_config

    base = paper_config(data_dir=args.data_dir, width=args.width, iters=args.iters, record_every=args.record_every,
                        eval_every=args.eval_every, test_subset=args.test_subset, train_subset=args.train_subset,
                        sharpness_every=args.sharpness_every, sharpness_batches=2, sharpness_iters=20,
                        checkpoint_every=0, device=args.device, threads=args.threads, quiet=True, seed=args.seed)
    return [replace(base, lr=float(lr)).validate() for lr in args.lrs]


def _train(cfg_dict: dict, run_dir: str) -> None:
    """Worker process: one run until SIGTERM (then it writes its files and returns)."""
    from .config import TrainConfig
    from .run import run_training

    run_training(TrainConfig.from_dict(cfg_dict), run_dir=run_dir)


def run_check(configs: list, out: Path, seconds: float, *, keep_checkpoints: bool = False,
              command: str = PROG) -> dict:
    """Train every config concurrently for ``seconds`` of wall time; return the summary written
    (``command`` is recorded in it)."""
    from .checkpoint import CHECKPOINT_NAME
    from .plots import plot_sweep
    from .sweep import ROW_KEYS, sweep_row

    out = Path(out)
    runs = out / "runs"
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    procs = []
    for cfg in configs:
        run_dir = runs / f"lr{cfg.lr:g}"
        p = ctx.Process(target=_train, args=(cfg.to_dict(), str(run_dir)), name=run_dir.name)
        p.start()
        procs.append((cfg, run_dir, p))
    interrupted = False
    try:
        while time.perf_counter() - t0 < seconds and any(p.is_alive() for _, _, p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:          # the children got the SIGINT too and stop after their step
        interrupted = True
    for _, _, p in procs:
        if p.is_alive():
            p.terminate()              # SIGTERM: the run stops after its current step and writes its files
    for _, _, p in procs:
        p.join(timeout=120)
    wall = time.perf_counter() - t0
    rows = []
    for cfg, run_dir, p in procs:
        if not (run_dir / "periods.json").exists():
            rows.append({"lr": cfg.lr, "wd": cfg.wd, "eta_lam": cfg.lr * cfg.wd, "run_dir": str(run_dir),
                         "note": f"no result (exit code {p.exitcode}): the budget ended before training began"})
            continue
        rows.append(sweep_row(cfg, run_dir))
        if not keep_checkpoints:
            (run_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
    done = [r for r in rows if "note" not in r]
    device = _device_name(configs[0])
    summary = {"command": command, "device": device, "wall_s": wall, "budget_s": seconds, "interrupted": interrupted,
               "total_images_per_s": sum(r["images_per_s"] for r in done if math.isfinite(r["images_per_s"])),
               "config": {k: v for k, v in configs[0].to_dict().items() if k not in ("lr", "iters")},
               "rows": rows}
    write_json(out / "summary.json", summary)
    if done:
        write_csv(out / "summary.csv", {k: [r[k] for r in done] for k in ROW_KEYS})
        plot_sweep(out / "frequency.png", done, f"paper setting (ConvNet-{configs[0].width}, CIFAR-10) on {device}: "
                                                f"frequency vs eta*lambda")
    return summary


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _device_name(cfg) -> str:
    import torch

    from .trainer import resolve_device

    dev = resolve_device(cfg.device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({cfg.threads or 'all usable'} thread(s) per run)"


def build_parser() -> CliParser:
    from .train import _int_at_least, _pos_float

    p = CliParser(prog=PROG, description=__doc__.split("\n\n", 1)[1],
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None,
                   help="CIFAR-10 pack (.npz) or folder (default $SIBN_DATA_DIR); e.g. packs/cifar10-16k.npz")
    p.add_argument("--out", required=True, help="output folder (on the device: $OUT)")
    p.add_argument("--lrs", type=_pos_float, nargs="+", default=[0.5, 1.0, 2.0],
                   help="learning rates, one process each (default %(default)s; lambda = 1e-3)")
    p.add_argument("--seconds", type=_pos_float, default=DEFAULT_SECONDS,
                   help="wall-clock budget from start to stop (default %(default)s)")
    p.add_argument("--iters", type=_int_at_least(1), default=10**9,
                   help="stop a run after this many iterations (default: only at the deadline)")
    p.add_argument("--width", type=_int_at_least(1), default=32, help="ConvNet width (paper: 32; tests: 2)")
    p.add_argument("--train-subset", type=_int_at_least(0), default=0, help="first N train images (0: all)")
    p.add_argument("--test-subset", type=_int_at_least(0), default=0, help="first N test images (0: all)")
    p.add_argument("--record-every", type=_int_at_least(1), default=10, help="default %(default)s")
    p.add_argument("--eval-every", type=int, default=1000,
                   help="test and full-pass train loss every k iterations (default %(default)s)")
    p.add_argument("--sharpness-every", type=_int_at_least(0), default=250,
                   help="sphere sharpness for the forecast every k iterations (0: never; default %(default)s)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, ...")
    p.add_argument("--threads", type=_int_at_least(0), default=1, help="CPU threads per run (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="default %(default)s")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's checkpoint.pt")
    return p


def main(argv=None) -> int:
    from .data import DataError, load_data
    from .trainer import resolve_device

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        configs = check_configs(args)
        resolve_device(args.device)
        load_data(configs[0])           # fail here, in one line, rather than in every worker
    except (DataError, ValueError) as exc:
        cli_fail(PROG, str(exc))
    signal.signal(signal.SIGTERM, _interrupt)     # a `timeout` around the command: stop and summarise
    s = run_check(configs, Path(args.out), args.seconds, keep_checkpoints=args.keep_checkpoints,
                  command=" ".join([PROG, *map(str, argv)]))
    print(f"{args.out}: {len(s['rows'])} runs in {s['wall_s']:.0f} s on {s['device']}, "
          f"{s['total_images_per_s']:.0f} images/s in all")
    for r in s["rows"]:
        if "note" in r:
            print(f"  eta={r['lr']:g}: {r['note']}")
            continue
        print(f"  eta={r['lr']:g} lam={r['wd']:g}: {r['iters']} it ({r['images_per_s']:.0f} images/s), "
              f"{r['n_periods']} periods, {r['mean_length']:.0f} +/- {r['std_length']:.0f} it vs "
              f"{r['predicted_length']:.0f} predicted (x{r['measured_over_predicted']:.2f}); forecast error "
              f"{100 * r['forecast_median_error_fraction']:+.0f}% of the period")
    return 130 if s["interrupted"] else 0


if __name__ == "__main__":
    status = main()
    from simulate.io import exit_process     # after main(): its Ctrl-C handling covers start-up

    exit_process(status)
