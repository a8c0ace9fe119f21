"""``python -m nets.sweep`` -- period frequency vs eta*lambda across learning rates (and WDs).

The paper's claim on real networks (Lobacheva et al., NeurIPS 2021, Sec. 4): training with BN
and WD is periodic, and the frequency of destabilisations follows the theory as eta and lambda
change -- T = ln(rho_max/rho_min)/(-ln(1 - eta*lambda)), so at a fixed norm ratio the frequency
1/T grows linearly in eta*lambda. Each (lr, wd) pair is one :func:`nets.run_training` run in
its own sub-directory of the sweep directory; the sweep writes ``sweep.json``, ``sweep.csv``
and ``sweep.png`` (measured and predicted frequency vs eta*lambda).

Re-running the same command with ``--sweep-dir`` continues: finished runs are skipped and an
interrupted one resumes from its checkpoint -- so a sweep can be split over several
time-limited sessions (e.g. ``timeout -s TERM 570 python -m nets.sweep ...``, repeated).
With ``--batched`` every unfinished run is trained at once as one batched network
(:mod:`nets.batched`), into the same run directories with the same files.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from simulate.io import CliParser, cli_fail, write_csv, write_json

from .config import TrainConfig

PROG = "python -m nets.sweep"
ROW_KEYS = ("lr", "wd", "eta_lam", "iters", "n_periods", "mean_length", "std_length", "norm_ratio",
            "predicted_length", "measured_frequency", "predicted_frequency", "measured_over_predicted",
            "final_test_acc", "sharpness_peak_over_threshold", "collapsed_at", "completed", "diverged",
            "run_dir")

__all__ = ["run_sweep", "sweep_configs", "build_parser", "main"]


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


def _row(cfg: TrainConfig, run_dir: Path) -> dict:
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
            "n_periods": s.get("n_periods", 0), **{k: _nan_if_none(s.get(k)) for k in ROW_KEYS[5:12]},
            "final_test_acc": acc,
            "sharpness_peak_over_threshold": _nan_if_none(
                s.get("stability", {}).get("median_peak_over_threshold")),
            "collapsed_at": _nan_if_none(s.get("collapse", {}).get("iteration")),
            "completed": bool(rep.get("completed")),
            "diverged": bool(rep.get("diverged")), "run_dir": str(run_dir)}


def _nan_if_none(v):
    """JSON stores NaN as null: read it back as NaN."""
    return float("nan") if v is None else v


def _finished(run_dir: Path) -> bool:
    done = run_dir / "periods.json"
    return done.exists() and any(json.loads(done.read_text()).get(k) for k in ("completed", "diverged"))


def _tag(cfg: TrainConfig) -> str:
    return f"lr{cfg.lr:g}_wd{cfg.wd:g}"


def run_sweep(configs: list[TrainConfig], sweep_dir: str | Path, *,
              batched: bool = False) -> tuple[list[dict], bool]:
    """Run (or continue) every config in ``sweep_dir/<lr..._wd...>/``; write the sweep files.

    Returns ``(rows, completed)``; ``completed`` is False when a run was interrupted (the sweep
    then stops; call again to continue). ``batched``: train every unfinished run at once as one
    batched network (:mod:`nets.batched_run`), into the same run directories.
    """
    from .checkpoint import CHECKPOINT_NAME
    from .plots import plot_sweep
    from .run import resume_training, run_training
    from .trainer import TrainingDiverged

    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json(sweep_dir / "sweep_config.json", {"runs": [c.to_dict() for c in configs]})
    rows, completed = [], True
    if batched:
        from .batched_run import run_batched_in_dirs
        todo = [c for c in configs if not _finished(sweep_dir / _tag(c))]
        if todo:
            res = run_batched_in_dirs(todo, [sweep_dir / _tag(c) for c in todo])
            completed = all(r.completed or r.diverged for r in res)
    for cfg in configs:
        run_dir = sweep_dir / _tag(cfg)
        if not batched and not _finished(run_dir):
            try:
                if (run_dir / CHECKPOINT_NAME).exists():
                    res = resume_training(run_dir, iters=cfg.iters, epochs=cfg.epochs, quiet=cfg.quiet)
                else:
                    res = run_training(cfg, run_dir=run_dir)
                completed = res.completed
            except TrainingDiverged:    # recorded as a row without periods; the sweep goes on
                pass
        rows.append(_row(cfg, run_dir))
        if not completed and not batched:
            break
    write_csv(sweep_dir / "sweep.csv", {k: [r[k] for r in rows] for k in ROW_KEYS})
    write_json(sweep_dir / "sweep.json", {"rows": rows, "completed": completed})
    if rows:
        c = configs[0]
        plot_sweep(sweep_dir / "sweep.png", rows,
                   f"{c.model} ({c.mode}, width {c.width}) on {c.dataset}: period frequency vs eta*lambda")
    return rows, completed


def build_parser() -> CliParser:
    from .train import add_config_arguments

    p = CliParser(prog=PROG, description=__doc__.split("\n\n", 1)[0].split("--", 1)[1].strip())
    p.add_argument("--lrs", type=float, nargs="+", required=True, help="learning rates to compare")
    p.add_argument("--wds", type=float, nargs="+", default=None,
                   help="weight decays to compare (default: --wd); the sweep is the grid lrs x wds")
    p.add_argument("--scale-length", action="store_true",
                   help="scale each run's length by max(eta*lam)/(eta*lam): equal number of periods")
    p.add_argument("--sweep-dir", default=None,
                   help="sweep directory (default: <out>/sweep-<dataset>-<model>-<time>); an existing one "
                        "is continued")
    p.add_argument("--batched", action="store_true",
                   help="train all runs at once as one batched network (one program, same run "
                        "directories and files; the runs must share model, data and batch size)")
    add_config_arguments(p, sweep=True)
    return p


def main(argv=None) -> int:
    from .data import DataError
    from .train import config_from_args
    from .trainer import TrainingDiverged

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        base = config_from_args(args, lr=max(args.lrs))
        configs = sweep_configs(base, args.lrs, args.wds, scale_length=args.scale_length)
        for c in configs:
            c.validate()
        sweep_dir = args.sweep_dir or (Path(base.out) /
                                       f"sweep-{base.dataset}-{base.model}-{datetime.now():%Y%m%d-%H%M%S}")
        rows, completed = run_sweep(configs, sweep_dir, batched=args.batched)
    except (DataError, ValueError, FileNotFoundError, TrainingDiverged) as exc:
        cli_fail(PROG, str(exc))
    except KeyboardInterrupt:
        cli_fail(PROG, "aborted; run the same command with --sweep-dir to continue", 130)
    print(f"{sweep_dir}: {len(rows)}/{len(configs)} runs")
    for r in rows:
        print(f"  eta={r['lr']:g} lam={r['wd']:g} eta*lam={r['eta_lam']:.3g}: {r['n_periods']} periods, "
              f"mean {r['mean_length']:.0f} it, predicted {r['predicted_length']:.0f} it, "
              f"frequency {r['measured_frequency']:.3g} vs {r['predicted_frequency']:.3g} /it, "
              f"test acc {r['final_test_acc']:.3f}"
              + (f", eta*lambda_max/threshold before jumps {r['sharpness_peak_over_threshold']:.2f}"
                 if math.isfinite(r["sharpness_peak_over_threshold"]) else "")
              + (f", dead from iteration {r['collapsed_at']:.0f}" if math.isfinite(r["collapsed_at"]) else ""))
    if not completed:
        print(f"interrupted; continue with the same command and --sweep-dir {sweep_dir}")
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
