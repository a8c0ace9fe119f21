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
(:mod:`nets.training.batched`), into the same run directories with the same files.
"""
from __future__ import annotations

import math
import sys
from datetime import datetime
from pathlib import Path

from cli import CliParser, catch_interrupts, cli_fail, os_error_line, writable_dir

PROG = "python -m nets.sweep"

__all__ = ["build_parser", "main"]


def build_parser() -> CliParser:
    from cli import int_at_least, pos_float
    from nets.options import add_config_arguments
    from nets.presets import preset_parser

    p = preset_parser(prog=PROG, description=__doc__.split("\n\n", 1)[0].split("--", 1)[1].strip())
    p.add_argument("--lrs", type=pos_float, nargs="+", required=True, help="learning rates to compare")
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
    g = p.add_argument_group("cluster (--launcher submitit: one Slurm job per run; pip install -e '.[slurm]')")
    g.add_argument("--launcher", choices=("local", "submitit"), default="local",
                   help="local: the runs one after another in this process (default); submitit: one job each, "
                        "requeued from its checkpoint when preempted")
    g.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's)")
    g.add_argument("--time-min", type=int_at_least(1), default=60, help="wall-clock minutes per job (default 60)")
    g.add_argument("--gpus-per-job", type=int_at_least(0), default=0, help="GPUs per job (default 0)")
    g.add_argument("--cpus-per-job", type=int_at_least(1), default=2, help="CPUs per job (default 2)")
    g.add_argument("--cluster", choices=("slurm", "local"), default=None,
                   help="submitit's executor (default: Slurm when available; local: local processes, for tests)")
    add_config_arguments(p, sweep=True)
    return p


def main(argv=None) -> int:
    catch_interrupts()
    from nets.data import DataError, check_data
    from nets.options import config_from_args
    from nets.training.sweep import run_sweep, sweep_configs
    from nets.training.trainer import TrainingDiverged

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    sweep_dir = None
    try:
        base = config_from_args(args, lr=max(args.lrs))
        configs = sweep_configs(base, args.lrs, args.wds, scale_length=args.scale_length)
        for c in configs:
            c.validate()
        check_data(base)                    # before any folder is made
        sweep_dir = writable_dir(PROG, args.sweep_dir or (
            Path(base.out) / f"sweep-{base.dataset}-{base.model}-{datetime.now():%Y%m%d-%H%M%S}"))
        launch = None
        if args.launcher == "submitit":
            from nets.training.launch import LaunchOptions
            launch = LaunchOptions(partition=args.partition, time_min=args.time_min, gpus_per_job=args.gpus_per_job,
                                   cpus_per_job=args.cpus_per_job, cluster=args.cluster)
        rows, completed = run_sweep(configs, sweep_dir, batched=args.batched, launch=launch)
    except (DataError, ValueError, TrainingDiverged, ImportError) as exc:   # ImportError: an extra is missing
        cli_fail(PROG, str(exc))
    except OSError as exc:
        cli_fail(PROG, os_error_line(exc))
    except KeyboardInterrupt:
        cli_fail(PROG, f"aborted; continue with the same command and --sweep-dir {sweep_dir}" if sweep_dir
                 else "interrupted before the sweep started: nothing to continue", 130)
    finished = sum(r["completed"] or r["diverged"] for r in rows)
    print(f"{sweep_dir}: {finished}/{len(configs)} runs finished"
          + (f" ({sum(r['diverged'] for r in rows)} diverged)" if any(r["diverged"] for r in rows) else "")
          + ("" if (sweep_dir / "sweep.png").exists() else "; no run has a complete period: sweep.png not drawn"))
    for r in rows:
        print(f"  eta={r['lr']:g} lam={r['wd']:g} eta*lam={r['eta_lam']:.3g}: {r['n_periods']} periods, "
              f"mean {r['mean_length']:.0f} it, predicted {r['predicted_length']:.0f} it, "
              f"frequency {r['measured_frequency']:.3g} vs {r['predicted_frequency']:.3g} /it, "
              f"test acc {r['final_test_acc']:.3f}"
              + (f", eta*lambda_max/threshold before jumps {r['sharpness_peak_over_threshold']:.2f}"
                 if math.isfinite(r["sharpness_peak_over_threshold"]) else "")
              + (f", forecast error {100 * r['forecast_median_error_fraction']:+.0f}% of the period"
                 if math.isfinite(r["forecast_median_error_fraction"]) else "")
              + (f", dead from iteration {r['collapsed_at']:.0f}" if math.isfinite(r["collapsed_at"]) else ""))
    if not completed:
        print(f"interrupted; continue with the same command and --sweep-dir {sweep_dir}")
        return 130
    return 0


if __name__ == "__main__":
    status = main()
    from cli import exit_process  # after main(): its Ctrl-C handling covers start-up

    exit_process(status)
