"""``python -m nets.regimes`` -- the three regimes of a network trained on the sphere, over fixed ELRs.

Kodryan et al. (NeurIPS 2022) train the SI weights at a fixed norm with a fixed effective LR
(``--fixed-elr``, :mod:`theory.sphere`) and find convergence, a chaotic equilibrium and
divergence as the ELR grows. Each ELR is one :func:`nets.run_training` run in its own
sub-directory of the sweep directory; each run is labelled by the rule of
:mod:`simulate.regimes` (the same code that labels the toy runs) from its recorded train loss
and effective gradient norm, with a random guess ln(classes) as the reference loss. With
``--sharpness-every`` the runs also measure eta*lambda_max = ELR x sphere sharpness, the
destabilisation condition's left-hand side (:mod:`nets.sharpness`, :mod:`theory.stability`).

Writes ``regimes.json`` (rows, boundaries, the rule's parameters), ``regimes.csv`` and
``regimes.png``. Re-running the same command with the same ``--sweep-dir`` skips finished runs
and resumes an interrupted one.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np

from simulate.io import CliParser, catch_interrupts, cli_fail, write_csv, write_json
from simulate.regimes import RegimeStats, regime_boundaries, regime_statistics

from .config import TrainConfig

PROG = "python -m nets.regimes"
ROW_KEYS = ("fixed_elr", "per_layer", "regime", "level", "angle", "loss_trend", "grad_trend", "final_loss",
            "final_grad", "final_train_acc", "eff_lr_sharpness_start", "eff_lr_sharpness", "iters", "completed",
            "run_dir")

__all__ = ["regime_configs", "regime_of_run", "run_regime_sweep", "build_parser", "main"]


def regime_configs(base: TrainConfig, elrs, *, per_layer: bool = False) -> list[TrainConfig]:
    """One config per fixed ELR (ascending), ``base`` otherwise unchanged."""
    return [replace(base, fixed_elr=float(e), fixed_elr_per_layer=per_layer, wrs_norm=None, exp_lr=False)
            for e in sorted(float(v) for v in elrs)]


def regime_of_run(steps: dict, num_classes: int, **rule) -> RegimeStats:
    """Label one run from its step table (:data:`nets.metrics.STEP_COLUMNS`) by
    :func:`simulate.regimes.regime_statistics`, reference loss ln(num_classes)."""
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
    of :func:`simulate.regimes.regime_boundaries` per variant (``"total"``/``"per_layer"``), and
    False when a run was interrupted (the sweep stops there; call again to continue). ``rule``
    overrides the classification parameters of :func:`simulate.regimes.regime_statistics`.
    """
    from .plots import plot_regimes
    from .sweep import run_or_resume

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


def build_parser() -> CliParser:
    from .train import add_config_arguments

    p = CliParser(prog=PROG, description=__doc__.split("\n\n", 1)[0].split("--", 1)[1].strip())
    p.add_argument("--elrs", type=float, nargs="+", required=True, metavar="ETA_TILDE",
                   help="fixed effective learning rates to compare (one run each)")
    p.add_argument("--sweep-dir", default=None,
                   help="sweep directory (default: <out>/regimes-<dataset>-<model>-<time>); an existing one "
                        "is continued")
    add_config_arguments(p)
    return p


def main(argv=None) -> int:
    catch_interrupts()
    from .data import DataError
    from .train import config_from_args

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.fixed_elr is not None:
            raise ValueError("give the effective LRs with --elrs, not --fixed-elr")
        if any(not (math.isfinite(e) and e > 0) for e in args.elrs):
            raise ValueError(f"--elrs must be finite numbers > 0, got {args.elrs}")
        base = config_from_args(args, fixed_elr=min(args.elrs))
        configs = regime_configs(base, args.elrs, per_layer=args.fixed_elr_per_layer)
        sweep_dir = args.sweep_dir or (Path(base.out) /
                                       f"regimes-{base.dataset}-{base.model}-{datetime.now():%Y%m%d-%H%M%S}")
        rows, bounds, completed = run_regime_sweep(configs, sweep_dir)
    except (DataError, ValueError, FileNotFoundError) as exc:
        cli_fail(PROG, str(exc))
    except KeyboardInterrupt:
        cli_fail(PROG, "aborted; run the same command with --sweep-dir to continue", 130)
    print(f"{sweep_dir}: {len(rows)}/{len(configs)} runs")
    for r in rows:
        print(f"  ELR {r['fixed_elr']:g}{' per layer' if r['per_layer'] else ''}: {r['regime']:11s} "
              f"loss {r['final_loss']:.3g} ({r['level']:.2g} x chance), {r['angle']:.2g} rad/step, trends: "
              f"loss t^{r['loss_trend']:+.2f} "
              f"G t^{r['grad_trend']:+.2f}, train acc {r['final_train_acc']:.2f}"
              + (f", ELR x sharpness {r['eff_lr_sharpness']:.3g}" if math.isfinite(r["eff_lr_sharpness"]) else ""))
    for variant, b in bounds.items():
        print(f"  boundaries ({variant}): convergence up to ~{_fmt(b['convergence_upper'])}, divergence from "
              f"~{_fmt(b['divergence_lower'])}{'' if b['ordered'] else ' (labels not monotone in the ELR)'}")
    if not completed:
        print(f"interrupted; continue with the same command and --sweep-dir {sweep_dir}")
        return 130
    return 0


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}"


if __name__ == "__main__":
    status = main()
    from simulate.io import exit_process     # after main(): its Ctrl-C handling covers start-up

    exit_process(status)
