"""``python -m nets.train`` -- train one scale-invariant network and report its periods.

With no flags: a fully scale-invariant ConvNet (width 16) on scikit-learn's digits (16x16),
batch 128, eta = 1, lambda = 3e-3, on the CPU in a few minutes; it destabilises periodically
(Lobacheva et al., NeurIPS 2021) and the run directory gets metrics, the period report and a
plot. ``--resume RUN_DIR`` continues an interrupted run from its last checkpoint.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.args import given_options
from nets.options import add_config_arguments, config_from_args
from nets.presets import preset_parser

PROG = "python -m nets.train"

__all__ = ["build_parser", "main", "RESUME_OPTIONS"]


def build_parser():
    p = preset_parser(prog=PROG, description=__doc__.split("\n\n", 1)[1],
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p)
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its checkpoint (its config is kept; "
                        "--iters/--epochs extend it, --device/--quiet apply)")
    return p


#: options that ``--resume`` applies; every other option is fixed by the run's checkpoint
RESUME_OPTIONS = ("iters", "epochs", "device", "threads", "quiet", "resume")


def main(argv=None) -> int:
    """Run the command; Ctrl-C at any moment gives one line and exit status 130."""
    try:
        from cli import catch_interrupts

        catch_interrupts()
        return _main(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt as exc:          # nets.training.run.RunAborted, or before the run started
        run_dir = getattr(exc, "run_dir", None)
        if run_dir is not None:
            msg = f"aborted; continue from the last checkpoint with: {PROG} --resume {run_dir}"
        else:
            msg = "interrupted before the first checkpoint: nothing to resume"
        sys.stderr.write(f"{PROG}: {msg}\n")
        return 130


def _main(argv: list[str]) -> int:
    from cli import cli_fail, deferred_interrupts, os_error_line, plain_warnings, writable_dir

    with deferred_interrupts():         # torch's import: a Ctrl-C inside its C++ code would abort
        from analysis.forecast import forecast_line
        from analysis.report import collapse_line, period_line, stability_line
        from nets.data import DataError, check_data
        from nets.training.run import resume_training, run_training
        from nets.training.trainer import TrainingDiverged

    plain_warnings(PROG)
    parser = build_parser()
    args = parser.parse_args(argv)
    given = given_options(parser, argv)
    if args.resume:
        flags = parser.option_flags()
        fixed = [flags[g] for g in given if g not in RESUME_OPTIONS]
        if fixed:
            cli_fail(PROG, f"--resume keeps the run's configuration; {', '.join(fixed)} cannot change "
                           "(only --iters/--epochs, --device, --threads, --quiet do); start a new run instead")
        if not Path(args.resume).is_dir():
            what = "a file" if Path(args.resume).exists() else "not there"
            cli_fail(PROG, f"no checkpoint at {args.resume}: --resume expects a run directory (the folder "
                           f"holding checkpoint.pt), and {args.resume} is {what}")
    try:
        if args.resume:
            writable_dir(PROG, args.resume)
            res = resume_training(args.resume, iters=args.iters if "iters" in given else None,
                                  epochs=args.epochs if "epochs" in given else None,
                                  device=args.device if "device" in given else None,
                                  threads=args.threads if "threads" in given else None,
                                  quiet=True if args.quiet else None)
        else:
            cfg = config_from_args(args)
            check_data(cfg)                 # before any folder is made
            writable_dir(PROG, cfg.out)
            res = run_training(cfg)
    except (DataError, ValueError, TrainingDiverged) as exc:
        cli_fail(PROG, str(exc))
    except OSError as exc:        # a missing checkpoint, or the disk filling up mid-run
        cli_fail(PROG, os_error_line(exc))
    timed = f"in {res.elapsed_s:.1f} s ({res.iters_per_s:.1f} it/s on {res.device})"
    if res.resumed_from:
        done = (f"resumed at iteration {res.resumed_from}, {res.iterations - res.resumed_from} more "
                f"iterations {timed}, {res.iterations} in all")
    else:
        done = f"{res.iterations} iterations {timed}"
    print(f"{res.run_dir}: {done}; SI group: {len(res.si_groups.si)} tensors "
          f"({len(res.si_groups.individual)} individually SI)")
    print(period_line(res.period_summary))
    if res.monitor:
        print(f"regime: {res.monitor['regime']['regime']} -- {res.monitor['regime']['reason']}")
    if "collapse" in res.period_summary:
        print(collapse_line(res.period_summary["collapse"]))
    if "stability" in res.period_summary:
        print(stability_line(res.period_summary["stability"]))
    if "forecast" in res.period_summary:
        print(forecast_line(res.period_summary["forecast"]))
    if not res.completed:
        print(f"interrupted at iteration {res.iterations}; continue with: {PROG} --resume {res.run_dir}")
        return 130
    return 0


if __name__ == "__main__":
    status = main()
    from cli import exit_process  # after main(): its Ctrl-C handling covers start-up

    exit_process(status)
