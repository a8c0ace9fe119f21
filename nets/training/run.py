"""Python API of one run: :func:`run_training` and :func:`resume_training`.

A run directory (``<out>/nets-<dataset>-<model>-<timestamp>/``) receives

* ``config.json``  -- the full :class:`TrainConfig`, derived sizes, the SI groups found by
  testing, data summary, device and versions;
* ``metrics.csv``  -- one row every ``record_every`` iterations (:data:`nets.monitor.metrics.STEP_COLUMNS`,
  the theory's equilibrium values ``eq_si_norm``, ``eq_eff_lr``, ``eq_angular_update``, and per SI
  tensor ``norm:<name>``, ``grad_norm:<name>``, ``angular_update:<name>``);
* ``evals.csv``    -- one row per evaluation (per epoch by default): train means, test loss/acc;
* ``metrics.npz``  -- both tables and the per-layer norm matrix;
* ``periods.json`` -- destabilisations, measured vs predicted period lengths (:mod:`analysis.report`),
  where the network died if it did (``summary.collapse``), and, with sharpness measurements,
  eta*lambda_max before each destabilisation vs 2(1+mu) and the forecast of each next
  destabilisation from the critical norm (``summary.forecast``, :mod:`analysis.forecast`); the
  speed (``elapsed_s``, ``iters_per_s``, ``images_per_s``, ``device``); the regime and the
  per-tensor table of :class:`nets.SIMonitor` (``regime``, ``layers``, ``total``);
* ``layers.csv``   -- that table: per SI tensor and in total, measured vs equilibrium values;
* ``sharpness.csv`` -- with ``sharpness_every`` > 0: :data:`nets.monitor.sharpness.SHARPNESS_COLUMNS`;
* ``batch_sharpness.csv`` -- with ``batch_sharpness_every`` > 0:
  :data:`nets.monitor.batch_sharpness.BATCH_SHARPNESS_COLUMNS`;
* ``plot.png``     -- loss, norm, effective LR, test accuracy with destabilisations marked;
* ``equilibrium.png`` -- norm, effective LR and angular update against their equilibrium values;
* ``checkpoint.pt`` -- the resumable state (every ``checkpoint_every`` iterations and at the end),
  checksummed, with the one before it as ``checkpoint.prev.pt`` (:mod:`nets.training.checkpoint`);
* ``SHA256SUMS``   -- SHA-256 of every result file above (``sha256sum -c SHA256SUMS`` checks them);
* ``.lock``        -- while a process trains in the directory (:mod:`nets.training.lock`).
"""
from __future__ import annotations

import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from analysis.forecast import forecast_destabilisations
from analysis.report import analyse_run, stability_at_destabilisations
from cli import (
    Progress,
    stop_on_signals,
    usable_cores,
    write_csv,
    write_json,
    write_manifest,
    write_npz,
)
from nets.config import TrainConfig
from nets.data import load_data
from nets.monitor.si import SIGroups
from nets.training.checkpoint import CHECKPOINT_NAME, has_checkpoint, load_run_checkpoint, save_checkpoint
from nets.training.lock import run_dir_lock
from nets.training.precision import check_precision
from nets.training.trainer import Trainer, TrainingDiverged, resolve_device

#: a run measures its speed after this many seconds and warns if what is left would take LONG_RUN_S
LENGTH_CHECK_S, LONG_RUN_S = 10.0, 86400.0
#: the result files of a run directory (those present are listed in its SHA256SUMS)
RUN_FILES = ("config.json", "metrics.csv", "evals.csv", "sharpness.csv", "batch_sharpness.csv", "metrics.npz", "periods.json", "layers.csv",
             "plot.png", "equilibrium.png")

__all__ = ["RUN_FILES", "RunResult", "RunAborted", "run_training", "resume_training", "resume_config", "finish_run",
           "new_run_dir", "set_threads", "describe_run"]


@dataclass
class RunResult:
    """What a run produced (arrays as in ``metrics.npz``; ``periods`` is a ``PeriodReport``)."""

    config: TrainConfig
    run_dir: Path | None
    si_groups: SIGroups
    steps: dict
    layer_norms: np.ndarray
    evals: dict
    periods: object
    period_summary: dict
    completed: bool
    iterations: int
    elapsed_s: float
    iters_per_s: float
    device: str
    diverged: str | None = None
    sharpness: dict | None = None
    batch_sharpness: dict | None = None
    layers: dict | None = None      # per-SI-tensor series (nets.monitor.metrics.LAYER_SERIES)
    monitor: dict | None = None     # SIMonitor.summary(): regime, per-tensor table, equilibrium series
    resumed_from: int = 0
    """Iterations the run had done before this call (``elapsed_s``, ``iters_per_s`` time this call only)."""


class RunAborted(KeyboardInterrupt):
    """Ctrl-C outside the training loop (before it started, or a second one) aborted the run.

    ``run_dir`` is the run directory when it holds a checkpoint to resume from, else ``None``.
    (A first Ctrl-C or SIGTERM inside the loop does not raise: the run stops cleanly, checkpoints
    and returns with ``completed=False``.)
    """

    def __init__(self, run_dir: Path | None):
        super().__init__(f"run aborted; {'resume from ' + str(run_dir) if run_dir else 'nothing to resume'}")
        self.run_dir = run_dir


def set_threads(config: TrainConfig, device: torch.device) -> int:
    """Cap CPU threads: ``config.threads`` if set, else the usable cores (at most 8). More threads
    than cores is allowed, with a warning: they oversubscribe the cores (measured 60x slower on a
    loaded 2-core machine)."""
    cores = usable_cores()
    if config.threads > cores:
        warnings.warn(f"threads = {config.threads} is more than the {cores} usable CPU cores: the threads "
                      f"oversubscribe them (measured 60x slower on a loaded machine); use {cores} or fewer",
                      stacklevel=2)
    n = config.threads or min(cores, 8)
    if device.type == "cpu" or config.threads:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def new_run_dir(config: TrainConfig) -> Path:
    """A fresh ``<out>/nets-<dataset>-<model>-<YYYYmmdd-HHMMSS>[-n]`` directory."""
    base = Path(config.out) / f"nets-{config.dataset}-{config.model}-{datetime.now():%Y%m%d-%H%M%S}"
    path, n = base, 1
    while path.exists():
        path, n = Path(f"{base}-{n}"), n + 1
    path.mkdir(parents=True)
    return path


def describe_run(config: TrainConfig, trainer: Trainer, device: torch.device, threads: int) -> dict:
    return {"config": config.to_dict(),
            "derived": {"total_iters": trainer.total_iters, "batches_per_epoch": trainer.batches_per_epoch,
                        "eval_every": trainer.eval_every, "wd_si": config.wd_si, "wd_other": config.wd_other,
                        "initial_si_norm": trainer.initial_si_norm,
                        "si_numel": int(sum(p.numel() for p in trainer.watch.params))},
            "si_groups": trainer.groups.to_dict(), "data": trainer.data.summary(),
            "device": str(device), "threads": threads, "torch": torch.__version__}


def _write_results(run_dir: Path, result: RunResult, title: str) -> None:
    from nets.monitor.report import layer_columns
    from nets.plots import plot_monitor, plot_run

    mon = result.monitor or {}
    series = mon.get("series", {})
    cols = {**result.steps, **series, **layer_columns(result.si_groups.si, result.layers)}
    write_csv(run_dir / "metrics.csv", cols)
    write_csv(run_dir / "evals.csv", result.evals)
    sharp = result.sharpness or {}
    if sharp:
        write_csv(run_dir / "sharpness.csv", sharp)
    batch = result.batch_sharpness or {}
    if batch:
        write_csv(run_dir / "batch_sharpness.csv", batch)
    write_npz(run_dir / "metrics.npz", **{f"step_{k}": v for k, v in result.steps.items()},
              **{f"eval_{k}": v for k, v in result.evals.items()},
              **{f"sharpness_{k}": v for k, v in sharp.items()},
              **{f"batch_sharpness_{k}": v for k, v in batch.items()}, **result.layers, **series,
              si_names=np.array(result.si_groups.si))
    extra = {k: mon[k] for k in ("regime", "optimizer", "layers", "total") if k in mon}
    write_json(run_dir / "periods.json", {"summary": result.period_summary, "report": result.periods,
                                          "completed": result.completed, "diverged": result.diverged,
                                          "iterations": result.iterations, "elapsed_s": result.elapsed_s,
                                          "iters_per_s": result.iters_per_s,
                                          "images_per_s": result.iters_per_s * result.config.batch_size,
                                          "device": result.device, **extra})
    if mon:
        table = mon["layers"] + [mon["total"]]
        write_csv(run_dir / "layers.csv", {k: [r[k] for r in table] for k in table[0]})
    if len(result.steps["iteration"]) > 1:
        adaptive = result.config.optimizer != "sgd"
        plot_run(run_dir / "plot.png", result.steps, result.evals, result.period_summary, title,
                 sharpness=result.sharpness,
                 threshold=result.period_summary.get("stability", {}).get("threshold", 2.0),
                 eff_lr_label="effective LR $\\eta/\\rho$" if adaptive else "effective LR $\\eta/\\rho^2$")
        if mon:
            plot_monitor(run_dir / "equilibrium.png", result.steps, series, mon, sharpness=result.sharpness)
    write_manifest(run_dir, RUN_FILES)              # SHA256SUMS: what a later reader can verify


def run_training(config: TrainConfig, *, run_dir: str | Path | None = None, write: bool = True,
                 stop_after: int | None = None, _state: dict | None = None) -> RunResult:
    """Train one network as ``config`` says; record, detect periods, write the run directory.

    Parameters
    ----------
    config : TrainConfig
    run_dir : path, optional
        Where to write (default: a new directory under ``config.out``).
    write : bool
        False: keep everything in memory (no directory, no checkpoint).
    stop_after : int, optional
        Stop (as if interrupted, with a checkpoint) once this many iterations are done.

    Returns
    -------
    RunResult
        ``completed`` is False when the run was stopped early (signal or ``stop_after``); it can be
        continued with :func:`resume_training`. A diverged run (NaN loss) writes what it recorded
        and raises :class:`nets.training.trainer.TrainingDiverged`. A ``KeyboardInterrupt`` outside the
        training loop (while loading the data, or a second Ctrl-C) becomes :class:`RunAborted`.
    """
    config.validate()
    device = resolve_device(config.device)
    check_precision(config.precision, device)               # bf16 on a device without it: before any folder
    created = write and run_dir is None
    run_dir = new_run_dir(config) if created else run_dir   # fails early when the output is unwritable
    previous_threads = torch.get_num_threads()
    try:
        with run_dir_lock(run_dir) if write else nullcontext():    # one process per run directory
            return _run(config, device, set_threads(config, device), run_dir, write, stop_after, _state)
    except KeyboardInterrupt as exc:
        resumable = write and has_checkpoint(run_dir)
        raise RunAborted(Path(run_dir) if resumable else None) from exc
    finally:
        torch.set_num_threads(previous_threads)   # the cap holds for the run only
        if created and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()                        # e.g. the data could not be loaded


def _run(config, device, threads, run_dir, write, stop_after, _state) -> RunResult:
    trainer = Trainer(config, load_data(config), device)
    if _state is not None:
        trainer.load_state_dict(_state)
        if trainer.iteration > trainer.total_iters:
            raise ValueError(f"the run in {run_dir} has done {trainer.iteration} iterations already; a length of "
                             f"{trainer.total_iters} would shorten it (resume with more, or without --iters/--epochs)")
    if write:
        run_dir = Path(run_dir)            # run_training made a new one when none was given
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", describe_run(config, trainer, device, threads))
    else:
        run_dir = None

    def checkpoint():
        if run_dir is not None:
            save_checkpoint(run_dir / CHECKPOINT_NAME, trainer, config.to_dict())

    until = trainer.total_iters if stop_after is None else min(stop_after, trainer.total_iters)
    start_it, t0 = trainer.iteration, time.perf_counter()
    bar = Progress(until - start_it, desc=f"{config.model}/{config.dataset}",
                   enabled=False if config.quiet else None)
    last, warned = [start_it], [False]

    def on_record(row):
        bar.update(trainer.iteration - last[0], postfix=f"loss {row.train_loss:.3g} rho {row.si_norm_equiv:.3g}")
        last[0] = trainer.iteration
        elapsed = time.perf_counter() - t0
        if not warned[0] and elapsed > LENGTH_CHECK_S:
            warned[0] = True
            rate = (trainer.iteration - start_it) / elapsed
            left = (trainer.total_iters - trainer.iteration) / max(rate, 1e-9)
            if left > LONG_RUN_S:
                warnings.warn(f"at {rate:.3g} it/s the {trainer.total_iters - trainer.iteration:,} iterations left "
                              f"take ~{left / 86400:.1f} days; Ctrl-C stops the run with a checkpoint (continue "
                              "it with --resume)", stacklevel=2)

    diverged = None
    with bar, stop_on_signals(trainer):
        try:
            completed = trainer.run(until, on_record=on_record, on_checkpoint=checkpoint)
        except TrainingDiverged as exc:
            completed, diverged = False, exc
        completed = completed and trainer.iteration >= trainer.total_iters
    elapsed = time.perf_counter() - t0
    if diverged is None:
        checkpoint()
    result = finish_run(trainer, device, run_dir, completed=completed, diverged=diverged,
                        elapsed_s=elapsed, iterations_done=trainer.iteration - start_it,
                        resumed_from=start_it)
    if diverged is not None:
        raise diverged
    return result


def finish_run(trainer: Trainer, device: torch.device, run_dir: Path | None, *, completed: bool,
               diverged: Exception | None, elapsed_s: float, iterations_done: int,
               resumed_from: int = 0) -> RunResult:
    """Analyse what ``trainer`` recorded (periods, stability) and write the run's result files
    into ``run_dir`` (None: write nothing); the checkpoint is the caller's. ``elapsed_s`` timed
    the ``iterations_done`` of this call, which started at iteration ``resumed_from``. Shared by
    :func:`run_training` and :func:`nets.training.batched_run.run_batched`."""
    config = trainer.config
    steps, layer_norms, evals = trainer.recorder.arrays()
    sharpness = trainer.recorder.sharpness_table()
    # one analysis of the run: the monitor's, of the periods with this config (SIMonitor run_info)
    monitor = trainer.monitor.summary() if len(steps["iteration"]) else None
    report = monitor.pop("period_report") if monitor is not None else None
    if diverged is not None:
        periods, summary = None, {"n_periods": 0, "event_iterations": [], "note": str(diverged)}
    elif monitor is not None:
        periods, summary = report, monitor["periods"]
    else:
        periods, summary = analyse_run(steps, config)
    if sharpness is not None:
        if "stability" not in summary:
            summary["stability"] = stability_at_destabilisations(sharpness, summary["event_iterations"],
                                                                 config.momentum)
        if summary.get("wd_mode") == "wd" and config.wd_si > 0:
            summary["forecast"] = forecast_destabilisations(steps, sharpness, summary["event_iterations"],
                                                            config.lr, config.wd_si, config.momentum)
    result = RunResult(config=config, run_dir=run_dir, si_groups=trainer.groups, steps=steps,
                       layer_norms=layer_norms, evals=evals, periods=periods, period_summary=summary,
                       completed=completed, iterations=trainer.iteration, elapsed_s=elapsed_s,
                       iters_per_s=iterations_done / max(elapsed_s, 1e-9),
                       device=str(device), diverged=None if diverged is None else str(diverged),
                       sharpness=sharpness, batch_sharpness=trainer.recorder.batch_sharpness_table(),
                       layers=trainer.recorder.layer_arrays(), monitor=monitor,
                       resumed_from=resumed_from)
    if run_dir is not None:
        opt = (f"fixed ELR {config.fixed_elr:g}{' per layer' if config.fixed_elr_per_layer else ''}"
               if config.fixed_elr is not None else f"eta={config.lr:g}, lambda={config.wd:g}")
        norm = "" if config.norm == "bn" else f", {config.norm}"
        title = (f"{config.model} ({config.mode}{norm}, width {config.width}) on {config.dataset}: {opt}, "
                 f"batch {config.batch_size}")
        _write_results(run_dir, result, title)
    return result


def resume_training(run_dir: str | Path, *, iters: int | None = None, epochs: int | None = None,
                    device: str | None = None, quiet: bool | None = None, threads: int | None = None,
                    stop_after: int | None = None) -> RunResult:
    """Continue the run in ``run_dir`` from its checkpoint (optionally extending its length).

    The checkpoint's config is authoritative; only the length, the device string, the CPU
    ``threads`` and ``quiet`` may change (none of them is part of what the run is; another thread
    count can round the resumed part differently, as kernels split their work differently).
    Metrics recorded before the checkpoint are kept; later ones are re-recorded identically.
    """
    cfg, payload = resume_config(run_dir, iters=iters, epochs=epochs, device=device, quiet=quiet, threads=threads)
    return run_training(cfg, run_dir=run_dir, stop_after=stop_after, _state=payload["trainer"])


def resume_config(run_dir: str | Path, *, iters: int | None = None, epochs: int | None = None,
                  device: str | None = None, quiet: bool | None = None,
                  threads: int | None = None) -> tuple[TrainConfig, dict]:
    """The config to continue the run in ``run_dir`` with (its checkpoint's, with the length,
    device string and ``quiet`` replaced where given) and the checkpoint payload: the newest
    intact checkpoint (:func:`nets.training.checkpoint.load_run_checkpoint`; a fallback to the
    previous one is said in a warning)."""
    run_dir = Path(run_dir)
    payload, note = load_run_checkpoint(run_dir)
    if note:
        warnings.warn(note, stacklevel=2)
    cfg = TrainConfig.from_dict(payload["config"])
    if iters is not None:
        cfg.iters, cfg.epochs = int(iters), 0
    if epochs is not None:
        cfg.epochs = int(epochs)
    if device is not None:
        cfg.device = device
    if quiet is not None:
        cfg.quiet = quiet
    if threads is not None:
        cfg.threads = int(threads)
    if resolve_device(cfg.device).type != payload["device_type"]:
        raise ValueError(f"checkpoint was written on {payload['device_type']}; resume it on the same "
                         f"kind of device (--device {payload['device_type']})")
    return cfg, payload
