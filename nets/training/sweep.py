"""Sweeps of training runs over (eta, lambda): one run directory each, resumable, summarised.

Each (lr, wd) pair is one :func:`nets.training.run.run_training` run in its own sub-directory
``lr<eta>_wd<lambda>`` of the sweep directory; :func:`run_sweep` writes ``sweep.json``,
``sweep.csv`` and ``sweep.png`` (measured and predicted period frequency vs eta*lambda). Calling it
again continues: finished runs are skipped and an interrupted one resumes from its checkpoint.
With ``batched=True`` every unfinished run is trained at once as one batched network
(:mod:`nets.training.batched`), into the same run directories with the same files.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from cli import verify_manifest, write_csv, write_json
from nets.config import TrainConfig

ROW_KEYS = ("lr", "wd", "eta_lam", "iters", "images_per_s", "n_periods", "mean_length", "std_length", "norm_ratio",
            "predicted_length", "measured_frequency", "predicted_frequency", "measured_over_predicted",
            "final_test_acc", "sharpness_peak_over_threshold", "forecast_median_error_fraction",
            "forecast_median_abs_error_fraction", "collapsed_at", "completed", "diverged", "run_dir")

__all__ = ["run_sweep", "run_or_resume", "is_finished", "run_tag", "sweep_configs", "sweep_row", "plot_sweep_rows",
           "ROW_KEYS"]


def sweep_configs(base: TrainConfig, lrs, wds=None, *, scale_length: bool = False) -> list[TrainConfig]:
    """One config per (lr, wd) pair; with ``scale_length`` each run's length is scaled by
    ``max(eta*lam)/(eta*lam)`` so every run spans about the same number of periods."""
    wds = [base.wd] if not wds else list(wds)
    pairs = [(float(lr), float(wd)) for wd in wds for lr in lrs]
    top = max(lr * wd for lr, wd in pairs)
    out = []
    for lr, wd in pairs:
        f = top / (lr * wd) if scale_length and lr * wd > 0 else 1.0
        out.append(replace(base, lr=lr, wd=wd, iters=int(math.ceil(base.iters * f)),
                           epochs=int(math.ceil(base.epochs * f))))
    return out


def sweep_row(cfg: TrainConfig, run_dir: Path) -> dict:
    """The sweep row of a finished (or interrupted) run, read back from its files."""
    rep = json.loads((run_dir / "periods.json").read_text())
    s = rep["summary"]
    acc = float("nan")
    evals = run_dir / "evals.csv"
    if evals.exists():
        lines = evals.read_text().strip().splitlines()
        if len(lines) > 1:
            header = lines[0].split(",")
            acc = float(lines[-1].split(",")[header.index("test_acc")])

    return {"lr": cfg.lr, "wd": cfg.wd, "eta_lam": cfg.lr * cfg.wd, "iters": rep.get("iterations"),
            "images_per_s": _nan_if_none(rep.get("images_per_s")),
            "n_periods": s.get("n_periods", 0), **{k: _nan_if_none(s.get(k)) for k in ROW_KEYS[6:13]},
            "final_test_acc": acc,
            "sharpness_peak_over_threshold": _nan_if_none(
                s.get("stability", {}).get("median_peak_over_threshold")),
            "forecast_median_error_fraction": _nan_if_none(s.get("forecast", {}).get("median_error_fraction")),
            "forecast_median_abs_error_fraction": _nan_if_none(
                s.get("forecast", {}).get("median_abs_error_fraction")),
            "collapsed_at": _nan_if_none(s.get("collapse", {}).get("iteration")),
            "completed": bool(rep.get("completed")),
            "diverged": bool(rep.get("diverged")), "run_dir": str(run_dir)}


def _nan_if_none(v):
    """JSON stores NaN as null: read it back as NaN."""
    return float("nan") if v is None else v


def run_tag(cfg: TrainConfig) -> str:
    """Name of a run's sub-directory in a sweep directory: ``lr<eta>_wd<lambda>``."""
    return f"lr{cfg.lr:g}_wd{cfg.wd:g}"


def is_finished(run_dir: str | Path) -> bool:
    """True when the run in ``run_dir`` has completed or diverged (nothing left to train) and its
    result files are intact (``SHA256SUMS``): a damaged one makes the run resume from its checkpoint,
    which writes them again."""
    done = Path(run_dir) / "periods.json"
    if not done.exists() or verify_manifest(run_dir):
        return False
    return any(json.loads(done.read_text()).get(k) for k in ("completed", "diverged"))


def run_or_resume(cfg: TrainConfig, run_dir: str | Path) -> bool:
    """Run ``cfg`` in ``run_dir``, or continue it from its checkpoint, or do nothing if it is
    finished (completed or diverged). Returns False when it was interrupted (call again)."""
    from nets.training.checkpoint import has_checkpoint
    from nets.training.run import resume_training, run_training
    from nets.training.trainer import TrainingDiverged

    run_dir = Path(run_dir)
    if is_finished(run_dir):
        return True
    try:
        if has_checkpoint(run_dir):
            return resume_training(run_dir, iters=cfg.iters, epochs=cfg.epochs, quiet=cfg.quiet).completed
        return run_training(cfg, run_dir=run_dir).completed
    except TrainingDiverged:    # recorded as a row without periods; the sweep goes on
        return True


def run_sweep(configs: list[TrainConfig], sweep_dir: str | Path, *,
              batched: bool = False, launch=None) -> tuple[list[dict], bool]:
    """Run (or continue) every config in ``sweep_dir/<lr..._wd...>/``; write the sweep files.

    Returns ``(rows, completed)``; ``completed`` is False when a run was interrupted (the sweep
    then stops; call again to continue). ``batched``: train every unfinished run at once as one
    batched network (:mod:`nets.training.batched_run`), into the same run directories.
    ``launch``: a :class:`nets.training.launch.LaunchOptions` to run each unfinished run as a
    cluster job (submitit; logs in ``sweep_dir/submitit``), same directories and files.
    """
    if batched and launch is not None:
        raise ValueError("choose --batched (one process) or --launcher submitit (one job per run), not both")
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json(sweep_dir / "sweep_config.json", {"runs": [c.to_dict() for c in configs]})
    rows, completed = [], True
    if launch is not None:
        from nets.training.launch import run_jobs
        todo = [c for c in configs if not is_finished(sweep_dir / run_tag(c))]
        if todo:
            completed = all(run_jobs(todo, [sweep_dir / run_tag(c) for c in todo], sweep_dir / "submitit", launch))
    elif batched:
        from nets.training.batched_run import run_batched_in_dirs
        todo = [c for c in configs if not is_finished(sweep_dir / run_tag(c))]
        if todo:
            res = run_batched_in_dirs(todo, [sweep_dir / run_tag(c) for c in todo])
            completed = all(r.completed or r.diverged for r in res)
    for cfg in configs:
        run_dir = sweep_dir / run_tag(cfg)
        local = not batched and launch is None
        if local:
            completed = run_or_resume(cfg, run_dir)
        rows.append(sweep_row(cfg, run_dir))
        if not completed and local:
            break
    write_csv(sweep_dir / "sweep.csv", {k: [r[k] for r in rows] for k in ROW_KEYS})
    write_json(sweep_dir / "sweep.json", {"rows": rows, "completed": completed})
    plot_sweep_rows(sweep_dir / "sweep.png", rows, configs)
    return rows, completed


def plot_sweep_rows(path: Path, rows: list[dict], configs: list[TrainConfig]) -> Path | None:
    """Draw the runs that measured a period frequency (:func:`nets.plots.plot_sweep`); the title
    says how many of the sweep's runs that is. Nothing is drawn (``None``) while no run has one,
    e.g. when the sweep was interrupted in its first run; a figure from an earlier call is removed
    then, so that ``sweep.png`` always matches ``sweep.json``."""
    from nets.plots import plot_sweep

    shown = [r for r in rows if math.isfinite(r["measured_frequency"])]
    if not shown:
        Path(path).unlink(missing_ok=True)
        return None
    c = configs[0]
    title = f"{c.model} ({c.mode}, width {c.width}) on {c.dataset}: period frequency vs eta*lambda"
    if len(shown) < len(configs):
        title += f"\n{len(shown)} of {len(configs)} runs shown (the others: not run yet, or no complete period)"
    return plot_sweep(path, shown, title)
