"""``python -m nets.paper_check`` -- the eta*lambda study at the paper's width, in one call on a GPU.

Made for a single call on a GPU machine (run from the checkout with ``PYTHONPATH=.``; nothing to
install): one training process per run, all started together on the same device, each the
authors' configuration (:data:`nets.presets.PAPER`: SI ConvNet of width 32 at its default init,
batch 128 keeping the last partial batch, momentum 0, full-pass train loss) on a CIFAR-10 pack
(``python -m nets.data pack``) or data folder, at the learning rates of
:data:`nets.presets.GPU_STUDY` (lambda = 1e-3) plus the equal-product twin, with the batch sharpness
measured every 10 iterations, in bf16 autocast by default. At the deadline every run is stopped
after its current step (SIGTERM: it writes everything it recorded), and the command writes to
``--out``

* ``summary.json`` / ``summary.csv`` -- per run: iterations done, images/s, periods measured (mean,
  sd) vs predicted, the forecast errors, and under ``study`` the records of the eta*lambda study
  (:mod:`nets.training.study`: anatomy, leave-one-out prediction, fits, forecasts);
* ``frequency.png`` -- destabilisations per iteration vs eta*lambda, measured and predicted;
* ``runs/lr<eta>_wd<lambda>/`` -- each run's files (``metrics.csv``, ``periods.json``,
  ``batch_sharpness.csv``, ``plot.png``, ...), without the checkpoint (``--keep-checkpoints`` keeps it).

``--plan CIFAR_JSON`` prints how the smallest eta*lambda was chosen (:mod:`nets.training.plan`).
Periods need the network to fit its training set first (phase A of the paper lasts until then),
so give the GPU at least a few minutes; on a CPU use a tiny ``--width`` and ``--seconds``.
"""
from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from pathlib import Path

from cli import CliParser, cli_fail
from nets.config import PRECISIONS
from nets.presets import GPU_STUDY

PROG = "python -m nets.paper_check"
#: budget of a device call (10 min) minus start-up and the copy back: what the GPU run may use
DEFAULT_SECONDS = 480

__all__ = ["build_parser", "check_configs", "main"]


def check_configs(args) -> list:
    """One run of the preset ``paper`` (:mod:`nets.presets`) per learning rate (lambda 1e-3), and
    the twin (another (eta, lambda) of the same product as one of them), as the flags say."""
    from nets.presets import preset_config

    base = preset_config("paper", data_dir=args.data_dir, width=args.width, iters=args.iters,
                         record_every=args.record_every, eval_every=args.eval_every, test_subset=args.test_subset,
                         train_subset=args.train_subset, sharpness_every=args.sharpness_every, sharpness_batches=2,
                         sharpness_iters=20, batch_sharpness_every=args.batch_sharpness_every,
                         sharpness_from=args.study_start, precision=args.precision, checkpoint_every=0,
                         device=args.device, threads=args.threads, quiet=True, seed=args.seed)
    pairs = [(float(lr), base.wd) for lr in args.lrs] + ([tuple(args.twin)] if args.twin else [])
    return [replace(base, lr=eta, wd=lam).validate() for eta, lam in dict.fromkeys(pairs)]


def plan(path: str, seconds: float, n_runs: int, efficiency: float) -> dict:
    """The GPU estimate (:func:`nets.training.plan.gpu_estimate`) from a CPU study's ``cifar.json``."""
    import json

    from nets.models import build_model
    from nets.presets import GPU_STUDY, PAPER
    from nets.training.plan import flops_per_image, gpu_estimate

    study = json.loads(Path(path).read_text())["summary"]
    model = build_model("convnet", mode="si", width=GPU_STUDY["width"], num_classes=10, in_channels=3, input_size=32,
                        last_layer_norm=PAPER["last_layer_norm"], keep_last_bias=PAPER["keep_last_bias"], norm="bn")
    return gpu_estimate(study, flops_image=flops_per_image(model), batch_size=PAPER["batch_size"],
                        train_images=GPU_STUDY["train_images"], n_runs=n_runs, seconds=seconds, efficiency=efficiency)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def build_parser() -> CliParser:
    from cli import int_at_least, pos_float

    p = CliParser(prog=PROG, description=__doc__.split("\n\n", 1)[1],
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None,
                   help="CIFAR-10 pack (.npz) or folder (default $SIBN_DATA_DIR); e.g. packs/cifar10-16k.npz")
    p.add_argument("--out", help="output folder (on the device: $OUT); required unless --plan")
    p.add_argument("--lrs", type=pos_float, nargs="+", default=list(GPU_STUDY["lrs"]),
                   help="learning rates, one process each (default %(default)s; lambda = 1e-3)")
    p.add_argument("--twin", type=pos_float, nargs=2, default=list(GPU_STUDY["twin"]), metavar=("ETA", "LAM"),
                   help="one more run at (eta, lambda), the equal-product twin of one of --lrs (default %(default)s)")
    p.add_argument("--no-twin", dest="twin", action="store_const", const=None, help="no twin run")
    p.add_argument("--precision", choices=PRECISIONS, default=GPU_STUDY["precision"],
                   help="forward/loss precision (default %(default)s: 2x the steps at width 32, no detectable "
                        "change of the dynamics, docs/measurements.md; TF32: PyTorch's defaults)")
    p.add_argument("--batch-sharpness-every", type=int_at_least(0), default=GPU_STUDY["batch_sharpness_every"],
                   help="batch sharpness on the step's own batch every k iterations (default %(default)s)")
    p.add_argument("--study-start", type=int_at_least(0), default=0,
                   help="destabilisations before this iteration open no period of the study (default %(default)s)")
    p.add_argument("--plan", metavar="CIFAR_JSON",
                   help="print the estimate of the smallest eta*lambda that completes 3 periods in --seconds on "
                        "an H100 from a CPU study (docs/figures/cifar/cifar.json) and exit")
    p.add_argument("--efficiency", type=pos_float, default=0.10,
                   help="with --plan: assumed fraction of the H100's TF32 peak sustained (default %(default)s)")
    p.add_argument("--seconds", type=pos_float, default=DEFAULT_SECONDS,
                   help="wall-clock budget from start to stop (default %(default)s)")
    p.add_argument("--iters", type=int_at_least(1), default=10**9,
                   help="stop a run after this many iterations (default: only at the deadline)")
    p.add_argument("--width", type=int_at_least(1), default=32, help="ConvNet width (paper: 32; tests: 2)")
    p.add_argument("--train-subset", type=int_at_least(0), default=0, help="first N train images (0: all)")
    p.add_argument("--test-subset", type=int_at_least(0), default=0, help="first N test images (0: all)")
    p.add_argument("--record-every", type=int_at_least(1), default=10, help="default %(default)s")
    p.add_argument("--eval-every", type=int, default=1000,
                   help="test and full-pass train loss every k iterations (default %(default)s)")
    p.add_argument("--sharpness-every", type=int_at_least(0), default=GPU_STUDY["sharpness_every"],
                   help="sphere sharpness for the forecast every k iterations (0: never; default %(default)s)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, ...")
    p.add_argument("--threads", type=int_at_least(0), default=1, help="CPU threads per run (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="default %(default)s")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's checkpoint.pt")
    return p


def main(argv=None) -> int:
    from nets.data import DataError, load_data
    from nets.training.timed import run_until
    from nets.training.trainer import resolve_device

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.plan:
        try:
            est = plan(args.plan, args.seconds, len(args.lrs) + (1 if args.twin else 0), args.efficiency)
        except (OSError, ValueError, KeyError) as exc:
            cli_fail(PROG, f"cannot plan from {args.plan}: {exc}")
        print(f"smallest eta*lambda with {est['n_periods']} periods in {est['seconds']:.0f} s: "
              f"{est['smallest_eta_lam']:.3g} ({est['iterations_needed']:.0f} iterations at "
              f"{est['iters_per_s_per_run']:.0f} it/s per run, {est['n_runs']} runs sharing "
              f"{est['gpu_flops_assumed'] / 1e12:.0f} TFLOP/s; first phase {est['first_phase_iters']} it)"
              + (f"; the floor of the fits' range (at most {est['extrapolation_floor']:.3g}: fitted power laws are "
                 "not extrapolated further)" if est["floored"] else ""))
        return 0
    if not args.out:
        cli_fail(PROG, "give --out DIR (or --plan CIFAR_JSON)")
    try:
        configs = check_configs(args)
        resolve_device(args.device)
        load_data(configs[0])           # fail here, in one line, rather than in every worker
    except (DataError, ValueError) as exc:
        cli_fail(PROG, str(exc))
    signal.signal(signal.SIGTERM, _interrupt)     # a `timeout` around the command: stop and summarise
    s = run_until(configs, Path(args.out), args.seconds, keep_checkpoints=args.keep_checkpoints,
                  command=" ".join([PROG, *map(str, argv)]), study_start=args.study_start)
    print(f"{args.out}: {len(s['rows'])} runs in {s['wall_s']:.0f} s on {s['device']}, "
          f"{s['total_images_per_s']:.0f} images/s in all")
    for r in s["rows"]:
        if "note" in r:
            print(f"  eta={r['lr']:g}: {r['note']}")
            continue
        print(f"  eta={r['lr']:g} lam={r['wd']:g}: {r['iters']} it ({r['images_per_s']:.0f} images/s), "
              f"{r['n_periods']} periods, {r['mean_length']:.0f} +/- {r['std_length']:.0f} it vs "
              f"{r['predicted_length']:.0f} predicted (x{r['measured_over_predicted']:.2f}); forecast error "
              f"{100 * r['forecast_median_error_fraction']:+.0f}% of the period")
    return 130 if s["interrupted"] else 0


if __name__ == "__main__":
    status = main()
    from cli import exit_process  # after main(): its Ctrl-C handling covers start-up

    exit_process(status)
