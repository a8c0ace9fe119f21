"""Regime sweeps of a network trained on the sphere: one run per fixed effective LR, each labelled.

Kodryan et al. (NeurIPS 2022): at a fixed effective LR (``fixed_elr``, :mod:`theory.sphere`) training
converges, reaches a chaotic equilibrium or diverges as the ELR grows. Each ELR is one
:func:`nets.training.run.run_training` run in its own sub-directory ``elr<ELR>[_per_layer]`` of the
sweep directory, labelled by the rule of :mod:`analysis.regimes` (the same code that labels the toy
runs) from its recorded train loss and effective gradient norm, with a random guess ln(classes) as
the reference loss. :func:`run_regime_sweep` writes ``regimes.json`` (rows, boundaries, the rule's
parameters), ``regimes.csv`` and ``regimes.png``; calling it again skips finished runs and resumes
an interrupted one.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from analysis.regimes import RegimeStats, regime_boundaries, regime_statistics
from cli import write_csv, write_json
from nets.config import TrainConfig

ROW_KEYS = ("fixed_elr", "per_layer", "regime", "level", "angle", "loss_trend", "grad_trend", "final_loss",
            "final_grad", "final_train_acc", "eff_lr_sharpness_start", "eff_lr_sharpness", "iters", "completed",
            "run_dir")

__all__ = ["regime_configs", "regime_of_run", "run_regime_sweep", "ROW_KEYS"]


def regime_configs(base: TrainConfig, elrs, *, per_layer: bool = False) -> list[TrainConfig]:
    """One config per fixed ELR (ascending), ``base`` otherwise unchanged."""
    return [replace(base, fixed_elr=float(e), fixed_elr_per_layer=per_layer, wrs_norm=None, exp_lr=False)
            for e in sorted(float(v) for v in elrs)]


def regime_of_run(steps: dict, num_classes: int, **rule) -> RegimeStats:
    """Label one run from its step table (:data:`nets.monitor.metrics.STEP_COLUMNS`) by
    :func:`analysis.regimes.regime_statistics`, reference loss ln(num_classes)."""
    return regime_statistics(steps["train_loss"], steps["eff_grad_norm"], steps["angular_update"],
                             steps["iteration"], reference_loss=math.log(num_classes), **rule)


def _tag(cfg: TrainConfig) -> str:
    return f"elr{cfg.fixed_elr:g}" + ("_per_layer" if cfg.fixed_elr_per_layer else "")


def _row(cfg: TrainConfig, run_dir: Path, rule: dict) -> dict:
    """The row of a finished (or interrupted, or diverged) run, read back from its files."""
    data = np.load(run_dir / "metrics.npz")
    steps = {k[5:]: data[k] for k in data.files if k.startswith("step_")}
    info = json.loads((run_dir / "config.json").read_text())
    done = json.loads((run_dir / "periods.json").read_text())
    stats = regime_of_run(steps, info["data"]["num_classes"], **rule)
    sharp = data["sharpness_eff_lr_sharpness"] if "sharpness_eff_lr_sharpness" in data.files else []
    acc = steps["train_acc"]
    return {"fixed_elr": cfg.fixed_elr, "per_layer": cfg.fixed_elr_per_layer, **stats.to_dict(),
            "final_train_acc": float(np.median(acc[-max(len(acc) // 10, 1):])) if len(acc) else float("nan"),
            "eff_lr_sharpness_start": float(sharp[0]) if len(sharp) > 1 else float("nan"),
            "eff_lr_sharpness": float(sharp[-1]) if len(sharp) else float("nan"),
            "iters": int(done.get("iterations", 0)), "completed": bool(done.get("completed")),
            "run_dir": str(run_dir)}


def run_regime_sweep(configs: list[TrainConfig], sweep_dir: str | Path, **rule) -> tuple[list[dict], dict, bool]:
    """Run (or continue) every config in ``sweep_dir/elr<ELR>[_per_layer]/`` and label it.

    Returns ``(rows, boundaries, completed)``: one row per run (:data:`ROW_KEYS`), the boundaries
    of :func:`analysis.regimes.regime_boundaries` per variant (``"total"``/``"per_layer"``), and
    False when a run was interrupted (the sweep stops there; call again to continue). ``rule``
    overrides the classification parameters of :func:`analysis.regimes.regime_statistics`.
    """
    from nets.plots import plot_regimes
    from nets.training.sweep import run_or_resume

    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    rows, completed = [], True
    for cfg in configs:
        run_dir = sweep_dir / _tag(cfg)
        completed = run_or_resume(cfg, run_dir)
        rows.append(_row(cfg, run_dir, rule))
        if not completed:
            break
    bounds = {}
    for variant, flag in (("total", False), ("per_layer", True)):
        sel = [r for r in rows if r["per_layer"] == flag]
        if sel:
            bounds[variant] = regime_boundaries([r["fixed_elr"] for r in sel], [r["regime"] for r in sel])
    write_csv(sweep_dir / "regimes.csv", {k: [r[k] for r in rows] for k in ROW_KEYS})
    write_json(sweep_dir / "regimes.json", {"rows": rows, "boundaries": bounds, "rule": rule,
                                            "completed": completed, "configs": [c.to_dict() for c in configs]})
    if rows:
        c = configs[0]
        plot_regimes(sweep_dir / "regimes.png", rows, bounds,
                     f"{c.model} ({c.norm}, width {c.width}) on {c.dataset}: regimes at fixed effective LR")
    return rows, bounds, completed
