"""Shared pieces of the figure scripts: results, saving, styling, and cached runs.

Every figure function has the signature ``make(out: Path, quick: bool) -> FigureResult``. It
writes ``<name>.png`` and ``<name>.pdf`` plus the data behind the figure (``<name>.npz`` /
``<name>.json``) into ``out`` and returns the numbers the report and the tests check.

Real-network runs are expensive, so figures that need them share :func:`net_runs`, which trains
each learning rate once per output folder and reuses the saved run afterwards (an interrupted
run resumes from its checkpoint).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cli import write_json, write_npz  # noqa: E402

__all__ = ["FigureResult", "save_figure", "save_data", "table_row", "relative_error", "net_runs", "NET_LRS",
           "net_config"]


@dataclass
class FigureResult:
    """What a figure script produced.

    Attributes
    ----------
    name : str
        Figure name (``periodic``, ``period_detail``, ...).
    files : list of Path
        Written files (images first, then data).
    summary : dict
        Key numbers (measured and predicted) for the report and the tests.
    table : list of dict
        Rows ``{quantity, setting, predicted, measured, rel_error}`` for the report's
        theory-vs-experiment table.
    """

    name: str
    files: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    table: list = field(default_factory=list)

    def to_dict(self) -> dict:
        # file names only: a result moves between machines, and no machine's path belongs in it
        return {"name": self.name, "files": [Path(f).name for f in self.files], "summary": self.summary,
                "table": self.table}


def relative_error(predicted: float, measured: float) -> float:
    """``|measured - predicted| / |predicted|`` (NaN when either is missing or the prediction is 0:
    a relative error has no scale there, e.g. a forecast of "now")."""
    if predicted is None or measured is None or not np.isfinite(predicted) or not np.isfinite(measured) \
            or predicted == 0:
        return float("nan")
    return abs(measured - predicted) / abs(predicted)


def table_row(quantity: str, setting: str, predicted: float, measured: float) -> dict:
    return {"quantity": quantity, "setting": setting, "predicted": float(predicted),
            "measured": float(measured), "rel_error": relative_error(predicted, measured)}


def save_figure(fig, out: Path, name: str, result: FigureResult) -> None:
    """Save ``fig`` as PNG (150 dpi) and PDF and register both in ``result``."""
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        path = out / f"{name}.{ext}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        result.files.append(path)
    plt.close(fig)


def save_data(out: Path, name: str, result: FigureResult, arrays: dict | None = None) -> None:
    """Save the numbers behind a figure: ``<name>.npz`` (arrays) and ``<name>.json`` (summary)."""
    if arrays:
        result.files.append(write_npz(out / f"{name}.npz", **{k: np.asarray(v) for k, v in arrays.items()}))
    result.files.append(write_json(out / f"{name}.json", result.to_dict()))


# ----------------------------------------------------------------------------- network runs

#: learning rates of the network figures (the paper compares 1.0, 0.03, 0.01, 0.001 over ~1,000
#: CIFAR epochs, 10,000 for the smallest; we keep eta*lam in the range where several periods fit)
NET_LRS = {"quick": (0.5, 1.0, 2.0), "full": (0.25, 0.5, 1.0, 2.0)}


def net_config(lr: float, quick: bool):
    """The :class:`nets.config.TrainConfig` of one network run of the figures.

    ``quick``: fully SI ConvNet of width 8 on scikit-learn's digits at 8x8 on the CPU, 3,000
    iterations (~12 s per run on 2 cores). WD 6e-3 and an initial SI norm of 10 only shorten the
    time scale (periods last ~ln(ratio)/(eta*lam) iterations), so 2-25 periods fit in a run.

    Full: every run lasts ``N / lr`` iterations, so that each spans about the same number of
    periods (period ~ 1/(eta*lam)). With ``$SIBN_DATA_DIR`` set: the paper's width-32 ConvNet on
    CIFAR-10, WD 1e-3, N = 100,000 (lr 0.25: 400k iterations, ~1,000 epochs; 750k iterations for
    the four runs -- GPU-sized). Without it: width-16 ConvNet on the digits at 16x16, WD 3e-3,
    N = 8,000 (60k iterations in all, ~25 min on 2 CPU cores at ~40 it/s).
    """
    import os

    from nets.config import TrainConfig

    base = TrainConfig(model="convnet", mode="si", lr=lr, quiet=True, seed=0)
    if quick:
        return replace(base, width=8, dataset="digits", image_size=8, wd=6e-3, iters=3000,
                       record_every=5, init_si_norm=10.0, checkpoint_every=3000, eval_every=0)
    data_dir = os.environ.get("SIBN_DATA_DIR")
    if data_dir:
        return replace(base, width=32, dataset="cifar10", data_dir=data_dir, wd=1e-3,
                       iters=int(round(100_000 / lr)), record_every=20, checkpoint_every=10_000)
    return replace(base, width=16, dataset="digits", image_size=16, wd=3e-3,
                   iters=int(round(8_000 / lr)), record_every=10, checkpoint_every=4_000)


def net_runs(out: Path, quick: bool, lrs=None) -> dict:
    """Train (or reuse) one network run per learning rate; returns ``{lr: run}``.

    Each run lives in ``out/net_runs/lr<lr>/``. A run of the same configuration found there is
    continued from its checkpoint (which does nothing more than reload it when it is complete),
    so the network figures share their runs and an interrupted figure job loses nothing. A run
    stopped by a signal (Ctrl-C, SIGTERM; :func:`nets.run_training` catches it and checkpoints)
    raises ``KeyboardInterrupt``, so that no figure is drawn from an incomplete run. A run
    is a dict with ``steps`` (metric arrays), ``periods`` (:class:`analysis.periods.PeriodReport`),
    ``period_summary`` (:func:`analysis.report.analyse_periods`) and ``config``. Completed runs are
    also kept in memory, so the figures of one ``report`` load (and rewrite) each run only once.
    """
    from nets.training.checkpoint import has_checkpoint
    from nets.training.run import resume_training, run_training

    lrs = NET_LRS["quick" if quick else "full"] if lrs is None else lrs
    results = {}
    for lr in lrs:
        run_dir = out / "net_runs" / f"lr{lr:g}"
        cfg = net_config(lr, quick)
        key = (run_dir.resolve(), tuple(sorted(cfg.to_dict().items())))
        if key in _COMPLETED:
            results[lr] = _COMPLETED[key]
            continue
        if has_checkpoint(run_dir) and _same_config(run_dir, cfg):
            res = resume_training(run_dir, quiet=True)
        else:
            res = run_training(cfg, run_dir=run_dir)
        if not res.completed:   # stopped by SIGINT/SIGTERM: the checkpoint is kept, no figure from it
            raise KeyboardInterrupt(f"network run {run_dir} stopped at iteration {res.iterations}")
        results[lr] = {"steps": res.steps, "periods": res.periods, "period_summary": res.period_summary,
                       "config": res.config, "run_dir": res.run_dir}
        if res.completed:
            _COMPLETED[key] = results[lr]
    return results


#: completed network runs of this process, keyed by run folder and configuration
_COMPLETED: dict = {}


def _same_config(run_dir: Path, cfg) -> bool:
    try:
        saved = json.loads((run_dir / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return False
    return all(saved.get(k) == v for k, v in cfg.to_dict().items() if k not in ("out", "quiet", "device"))
