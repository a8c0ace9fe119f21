"""Train a list of runs, ``workers`` processes at a time, resumable: the experiments' runner.

Each job is ``(TrainConfig, run_dir)``; :func:`nets.training.sweep.run_or_resume` runs it, continues
it from its checkpoint, or skips it when finished. One ``spawn`` process per run (``threads`` CPU
threads each, as its config says: on 2 cores two one-thread runs beat one two-thread run).
Ctrl-C or SIGTERM stops the runs after their current step (each checkpoints) and raises
``KeyboardInterrupt``; the same call continues them.
"""
from __future__ import annotations

import multiprocessing as mp
import signal
import threading
from pathlib import Path

__all__ = ["run_pool", "RunFailed"]


class RunFailed(RuntimeError):
    """A run's process ended without finishing its run (its error went to stderr)."""


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _worker(cfg_dict: dict, run_dir: str) -> None:
    from nets.config import TrainConfig
    from nets.training.sweep import run_or_resume

    run_or_resume(TrainConfig.from_dict(cfg_dict), run_dir)


def run_pool(jobs: list, workers: int, desc: str) -> None:
    """Run every unfinished ``(config, run_dir)`` of ``jobs`` in order, ``workers`` at a time."""
    from cli import Progress
    from nets.training.sweep import is_finished

    ctx = mp.get_context("spawn")
    queue, running = [(c, Path(d)) for c, d in jobs if not is_finished(d)], []
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    bar = Progress(len(queue), desc=f"{desc} ({workers} at a time)")
    try:
        while queue or running:
            alive = [p for p in running if p.is_alive()]
            bar.update(len(running) - len(alive))               # runs that ended since the last look
            running = alive
            while queue and len(running) < max(workers, 1):
                cfg, run_dir = queue.pop(0)
                run_dir.parent.mkdir(parents=True, exist_ok=True)
                p = ctx.Process(target=_worker, args=(cfg.to_dict(), str(run_dir)))
                p.start()
                running.append(p)
            if running:
                running[0].join(timeout=0.5)
    except KeyboardInterrupt:           # Ctrl-C (the workers got it too) or SIGTERM (forwarded here)
        for p in running:
            if p.is_alive():
                p.terminate()           # SIGTERM: the run stops after its current step and checkpoints
        for p in running:
            p.join()
        raise
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    failed = [str(d) for _, d in jobs if not is_finished(d)]
    if failed:
        raise RunFailed(f"{len(failed)} run(s) ended unfinished (first: {failed[0]}; its error is above); "
                        "the same command continues them from their checkpoints")
