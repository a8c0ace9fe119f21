"""``python -m nets.train`` -- train one scale-invariant network and report its periods.

With no flags: a fully scale-invariant ConvNet (width 16) on scikit-learn's digits (16x16),
batch 128, eta = 1, lambda = 3e-3, on the CPU in a few minutes; it destabilises periodically
(Lobacheva et al., NeurIPS 2021) and the run directory gets metrics, the period report and a
plot. ``--resume RUN_DIR`` continues an interrupted run from its last checkpoint.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from simulate.io import CliParser, cli_fail

from .config import DATASETS, MODELS, MODES, NORMS, WD_GROUPS, TrainConfig

PROG = "python -m nets.train"
_D = {f.name: f.default for f in fields(TrainConfig)}

__all__ = ["build_parser", "add_config_arguments", "config_from_args", "main"]


def _pos_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {s!r}")
    return v


def _int_at_least(lo: int):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {s!r}")
        return v
    return parse


_nonneg_int, _pos_int = _int_at_least(0), _int_at_least(1)


def add_config_arguments(p: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    """The TrainConfig options (shared by ``nets.train`` and ``nets.sweep``)."""
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=MODELS, default=_D["model"], help="architecture (default %(default)s)")
    g.add_argument("--mode", choices=MODES, default=_D["mode"],
                   help="si: BN without affine, last layer fixed at norm 10 (every trained weight SI); "
                        "practical: everything trained (default %(default)s)")
    g.add_argument("--width", type=_pos_int, default=_D["width"],
                   help="channels of the first stage (paper: 32 ConvNet, 64 ResNet-18; default %(default)s)")
    g.add_argument("--norm", choices=NORMS, default=_D["norm"],
                   help="ConvNet normalisation: bn BatchNorm, ln LayerNorm, gn GroupNorm, wn weight norm "
                        "(default %(default)s)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=_D["dataset"], help="default %(default)s")
    g.add_argument("--data-dir", default=None,
                   help="folder holding cifar-10-batches-py/ or cifar-100-python/ (python version)")
    g.add_argument("--image-size", type=_pos_int, default=None,
                   help="input size (default: 16 digits, 32 CIFAR, 8 synthetic)")
    g.add_argument("--train-subset", type=_nonneg_int, default=0, help="use the first N train images (0: all)")
    g.add_argument("--augment", action="store_true", help="random crop (padding 4) + horizontal flip")
    g = p.add_argument_group("optimisation")
    if not sweep:
        g.add_argument("--lr", type=_pos_float, default=_D["lr"], help="learning rate eta (default %(default)s)")
    g.add_argument("--wd", type=float, default=_D["wd"], help="weight decay lambda (default %(default)s)")
    g.add_argument("--wd-on", choices=WD_GROUPS, default=_D["wd_on"],
                   help="parameter groups that get WD (default %(default)s)")
    g.add_argument("--momentum", type=float, default=_D["momentum"], help="heavy-ball momentum (default 0)")
    g.add_argument("--batch-size", type=_pos_int, default=_D["batch_size"], help="default %(default)s")
    g.add_argument("--wrs-norm", type=_pos_float, default=None,
                   help="instead of WD on the SI group, rescale it to this total norm after each step")
    g.add_argument("--exp-lr", action="store_true",
                   help="instead of WD on the SI group, Li & Arora's equivalent exponential LR")
    g.add_argument("--fixed-elr", type=_pos_float, default=None, metavar="ETA_TILDE",
                   help="train on the sphere at this fixed effective LR: no WD on the SI group, which is "
                        "projected back to norm sqrt(lr/ETA_TILDE) after each step")
    g.add_argument("--fixed-elr-per-layer", action="store_true",
                   help="with --fixed-elr: every SI tensor on its own sphere, each at effective LR ETA_TILDE")
    g.add_argument("--init-si-norm", type=_pos_float, default=_D["init_si_norm"],
                   help="rescale the SI weights to this total norm at init (default %(default)s)")
    g.add_argument("--keep-init-norm", action="store_true", help="do not rescale the SI weights at init")
    g = p.add_argument_group("length and recording")
    g.add_argument("--iters", type=_nonneg_int, default=_D["iters"], help="SGD steps (default %(default)s)")
    g.add_argument("--epochs", type=_nonneg_int, default=0, help="epochs instead of --iters (if > 0)")
    g.add_argument("--record-every", type=_pos_int, default=_D["record_every"],
                   help="record step metrics every k iterations (default %(default)s)")
    g.add_argument("--eval-every", type=int, default=_D["eval_every"],
                   help="test evaluation every k iterations (0: every epoch, -1: never)")
    g.add_argument("--checkpoint-every", type=_nonneg_int, default=_D["checkpoint_every"],
                   help="iterations between checkpoints (0: only at the end; default %(default)s)")
    g.add_argument("--sharpness-every", type=_nonneg_int, default=_D["sharpness_every"], metavar="K",
                   help="every K iterations measure eta*lambda_max, the top Hessian eigenvalue of the "
                        "train loss on the SI sphere times the LR, to check the destabilisation "
                        "condition > 2(1+mu) (0: never; each costs up to --sharpness-iters "
                        "double-backward passes over --sharpness-batches batches)")
    g.add_argument("--sharpness-batches", type=_pos_int, default=_D["sharpness_batches"],
                   help="fixed training batches the sharpness is measured on (default %(default)s)")
    g.add_argument("--sharpness-iters", type=_pos_int, default=_D["sharpness_iters"],
                   help="at most this many Lanczos steps per measurement (default %(default)s)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=_D["seed"], help="default %(default)s")
    g.add_argument("--device", default=_D["device"], help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    g.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="keep NCHW activations (default: channels-last, faster convs)")
    g.add_argument("--threads", type=_nonneg_int, default=0, help="CPU threads (0: usable cores, max 8)")
    g.add_argument("--out", default=_D["out"], help="parent folder of run directories (default %(default)s)")
    g.add_argument("--quiet", action="store_true", help="no progress bar, only the final report")


def build_parser() -> CliParser:
    p = CliParser(prog=PROG, description=__doc__.split("\n\n", 1)[1],
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p)
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its checkpoint (its config is kept; "
                        "--iters/--epochs extend it, --device/--quiet apply)")
    return p


def config_from_args(args: argparse.Namespace, **override) -> TrainConfig:
    """A validated TrainConfig from parsed arguments (``ValueError`` with one line if invalid)."""
    names = {f.name for f in fields(TrainConfig)}
    kw = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "keep_init_norm", False):
        kw["init_si_norm"] = None
    kw.update(override)
    return TrainConfig(**kw)


def _explicit(argv, flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def main(argv=None) -> int:
    from .data import DataError
    from .report import collapse_line, period_line, stability_line
    from .run import resume_training, run_training
    from .trainer import TrainingDiverged

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        if args.resume:
            res = resume_training(args.resume, iters=args.iters if _explicit(argv, "--iters") else None,
                                  epochs=args.epochs if _explicit(argv, "--epochs") else None,
                                  device=args.device if _explicit(argv, "--device") else None,
                                  quiet=True if args.quiet else None)
        else:
            res = run_training(config_from_args(args))
    except (DataError, ValueError, FileNotFoundError, TrainingDiverged) as exc:
        cli_fail(PROG, str(exc))
    except KeyboardInterrupt:
        cli_fail(PROG, "aborted; continue from the last checkpoint with --resume RUN_DIR", 130)
    print(f"{res.run_dir}: {res.iterations} iterations in {res.elapsed_s:.1f} s "
          f"({res.iters_per_s:.1f} it/s on {res.device}); SI group: {len(res.si_groups.si)} tensors "
          f"({len(res.si_groups.individual)} individually SI)")
    print(period_line(res.period_summary))
    if "collapse" in res.period_summary:
        print(collapse_line(res.period_summary["collapse"]))
    if "stability" in res.period_summary:
        print(stability_line(res.period_summary["stability"]))
    if not res.completed:
        print(f"interrupted at iteration {res.iterations}; continue with: {PROG} --resume {res.run_dir}")
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
