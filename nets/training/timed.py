"""Several runs at once, each in its own process on the same device, for a fixed wall-clock budget.

:func:`run_until` starts one training process per config (``spawn``), lets them train until the
budget is spent (or they finish), then stops each after its current step with SIGTERM -- a run
that gets SIGTERM writes everything it recorded -- and summarises them as sweep rows
(:func:`nets.training.sweep.sweep_row`). Made for one call on a lent GPU (``nets.paper_check``).
"""
from __future__ import annotations

import math
import multiprocessing as mp
import time
from pathlib import Path

from cli import write_csv, write_json

__all__ = ["run_until", "device_name"]


def _train(cfg_dict: dict, run_dir: str) -> None:
    """Worker process: one run until SIGTERM (then it writes its files and returns)."""
    from nets.config import TrainConfig
    from nets.training.run import run_training

    run_training(TrainConfig.from_dict(cfg_dict), run_dir=run_dir)


def run_until(configs: list, out: Path, seconds: float, *, keep_checkpoints: bool = False,
              command: str = "", study_start: int = 0) -> dict:
    """Train every config concurrently for ``seconds`` of wall time; return the summary written
    (``command`` is recorded in it). The summary's ``study`` holds the eta*lambda study of the
    runs (:mod:`nets.training.study`; destabilisations before ``study_start`` open no period)."""
    from nets.plots import plot_sweep
    from nets.training.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME
    from nets.training.study import run_record, study_summary
    from nets.training.sweep import ROW_KEYS, run_tag, sweep_row

    out = Path(out)
    runs = out / "runs"
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    procs = []
    for cfg in configs:
        run_dir = runs / run_tag(cfg)
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
            for name in (CHECKPOINT_NAME, PREVIOUS_NAME):
                (run_dir / name).unlink(missing_ok=True)
    done = [r for r in rows if "note" not in r]
    studied = [run_record(runs / run_tag(cfg), start=study_start) for cfg, _, _ in procs
               if (runs / run_tag(cfg) / "periods.json").exists()]
    records = [rec for rec, _, _ in studied]
    study = {"runs": records, **study_summary(records, [a for _, _, a in studied])} if studied else None
    device = device_name(configs[0])
    summary = {"command": command, "device": device, "wall_s": wall, "budget_s": seconds, "interrupted": interrupted,
               "total_images_per_s": sum(r["images_per_s"] for r in done if math.isfinite(r["images_per_s"])),
               "config": {k: v for k, v in configs[0].to_dict().items() if k not in ("lr", "iters")},
               "rows": rows, "study": study}
    write_json(out / "summary.json", summary)
    if done:
        write_csv(out / "summary.csv", {k: [r[k] for r in done] for k in ROW_KEYS})
        plot_sweep(out / "frequency.png", done, f"paper setting (ConvNet-{configs[0].width}, CIFAR-10) on {device}: "
                                                f"frequency vs eta*lambda")
    return summary


def device_name(cfg) -> str:
    """The device a config trains on, in words (the GPU's name, or the CPU threads per run)."""
    import torch

    from nets.training.trainer import resolve_device

    dev = resolve_device(cfg.device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({cfg.threads or 'all usable'} thread(s) per run)"
