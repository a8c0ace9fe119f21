"""The :class:`nets.config.TrainConfig` options on the command line, shared by every nets command.

:func:`add_config_arguments` adds them (with the ``--<preset>`` flags of :mod:`nets.presets`) to a
parser; :func:`config_from_args` turns the parsed flags into a validated config.
"""
from __future__ import annotations

import argparse
from dataclasses import fields

from cli.args import int_at_least, pos_float
from nets.config import DATASETS, MODELS, MODES, NORMS, OPTIMIZERS, PRECISIONS, WD_GROUPS, TrainConfig

_D = {f.name: f.default for f in fields(TrainConfig)}

__all__ = ["add_config_arguments", "config_from_args"]


_nonneg_int, _pos_int = int_at_least(0), int_at_least(1)


def _device(s: str) -> str:
    """``auto`` or a device string torch understands (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    if s == "auto":
        return s
    import torch

    try:
        torch.device(s)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a device: {s!r} (auto, cpu, cuda, cuda:1, ...)") from None
    return s


def add_config_arguments(p: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    """The TrainConfig options (shared by ``nets.train`` and ``nets.sweep``)."""
    g = p.add_argument_group("preset")
    g.add_argument("--paper", action="store_true",
                   help="the authors' CIFAR-10 setting (nets.presets.PAPER): ConvNet width 32 at its "
                        "default init, last layer at norm 10 frozen with its random bias, batch 128 keeping "
                        "the last partial batch, lambda 1e-3, eta 1, momentum 0, no augmentation, full-pass "
                        "train loss; flags given explicitly override it (e.g. --lr, --epochs, --data-dir)")
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=MODELS, default=_D["model"], help="architecture (default %(default)s)")
    g.add_argument("--mode", choices=MODES, default=_D["mode"],
                   help="si: BN without affine, last layer fixed at norm 10 (every trained weight SI); "
                        "practical: everything trained (default %(default)s)")
    g.add_argument("--width", type=_pos_int, default=_D["width"],
                   help="channels of the first stage (paper: 32 ConvNet, 64 ResNet-18; default %(default)s)")
    g.add_argument("--keep-last-bias", action="store_true",
                   help="si mode: freeze the ConvNet's last-layer bias at its random init (authors) instead of 0")
    g.add_argument("--norm", choices=NORMS, default=_D["norm"],
                   help="ConvNet normalisation: bn BatchNorm, ln LayerNorm, gn GroupNorm, wn weight norm "
                        "(default %(default)s)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=_D["dataset"], help="default %(default)s")
    g.add_argument("--data-dir", default=None,
                   help="folder holding cifar-10-batches-py/ or cifar-100-python/ (python version), or a "
                        "pack from 'python -m nets.data pack' (default: $SIBN_DATA_DIR); get the data "
                        "with 'python -m nets.data download cifar10 DIR'")
    g.add_argument("--image-size", type=_pos_int, default=None,
                   help="input size (default: 16 digits, 32 CIFAR, 8 synthetic)")
    g.add_argument("--train-subset", type=_nonneg_int, default=0, help="use the first N train images (0: all)")
    g.add_argument("--test-subset", type=_nonneg_int, default=0, help="use the first N test images (0: all)")
    g.add_argument("--augment", action="store_true", help="random crop (padding 4) + horizontal flip")
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=_D["optimizer"],
                   help="sgd (the paper's; WD as L2 in the step), adamw (decoupled WD: x <- (1 - lr*wd) x) "
                        "or adam (WD as coupled L2, normalised with the gradient); default %(default)s")
    if not sweep:
        g.add_argument("--lr", type=pos_float, default=_D["lr"], help="learning rate eta (default %(default)s)")
    g.add_argument("--wd", type=float, default=_D["wd"], help="weight decay lambda (default %(default)s)")
    g.add_argument("--wd-on", choices=WD_GROUPS, default=_D["wd_on"],
                   help="parameter groups that get WD (default %(default)s)")
    g.add_argument("--momentum", type=float, default=_D["momentum"], help="heavy-ball momentum (SGD; default 0)")
    g.add_argument("--beta1", type=float, default=_D["beta1"], help="Adam's first-moment decay (default %(default)s)")
    g.add_argument("--beta2", type=float, default=_D["beta2"], help="Adam's second-moment decay (default %(default)s)")
    g.add_argument("--batch-size", type=_pos_int, default=_D["batch_size"], help="default %(default)s")
    g.add_argument("--keep-last-batch", dest="drop_last", action="store_false",
                   help="keep each epoch's last partial batch (default: drop it)")
    g.add_argument("--wrs-norm", type=pos_float, default=None,
                   help="instead of WD on the SI group, rescale it to this total norm after each step")
    g.add_argument("--exp-lr", action="store_true",
                   help="instead of WD on the SI group, Li & Arora's equivalent exponential LR")
    g.add_argument("--fixed-elr", type=pos_float, default=None, metavar="ETA_TILDE",
                   help="train on the sphere at this fixed effective LR: no WD on the SI group, which is "
                        "projected back to norm sqrt(lr/ETA_TILDE) after each step")
    g.add_argument("--fixed-elr-per-layer", action="store_true",
                   help="with --fixed-elr: every SI tensor on its own sphere, each at effective LR ETA_TILDE")
    g.add_argument("--init-si-norm", type=pos_float, default=_D["init_si_norm"],
                   help="rescale the SI weights to this total norm at init (default %(default)s)")
    g.add_argument("--keep-init-norm", action="store_true", help="do not rescale the SI weights at init")
    g = p.add_argument_group("length and recording")
    g.add_argument("--iters", type=_nonneg_int, default=_D["iters"], help="SGD steps (default %(default)s)")
    g.add_argument("--epochs", type=_nonneg_int, default=0, help="epochs instead of --iters (if > 0)")
    g.add_argument("--record-every", type=_pos_int, default=_D["record_every"],
                   help="record step metrics every k iterations (default %(default)s)")
    g.add_argument("--eval-every", type=int, default=_D["eval_every"],
                   help="test evaluation every k iterations (0: every epoch, -1: never)")
    g.add_argument("--full-train-eval", action="store_true",
                   help="at each evaluation also the paper's train loss: a full pass over the train set at "
                        "fixed weights, train-mode BN (columns train_loss_full, train_acc_full of evals.csv)")
    g.add_argument("--checkpoint-every", type=_nonneg_int, default=_D["checkpoint_every"],
                   help="iterations between checkpoints (0: only at the end; default %(default)s)")
    g.add_argument("--sharpness-every", type=_nonneg_int, default=_D["sharpness_every"], metavar="K",
                   help="every K iterations measure eta*lambda_max, the top Hessian eigenvalue of the "
                        "train loss on the SI sphere times the LR, to check the destabilisation "
                        "condition > 2(1+mu) (0: never; each costs up to --sharpness-iters "
                        "double-backward passes over --sharpness-batches batches)")
    g.add_argument("--sharpness-from", type=_nonneg_int, default=_D["sharpness_from"], metavar="T",
                   help="first iteration at which the sharpness may be measured (default %(default)s: "
                        "from the start; the first phase has no destabilisation to forecast)")
    g.add_argument("--sharpness-batches", type=_pos_int, default=_D["sharpness_batches"],
                   help="fixed training batches the sharpness is measured on (default %(default)s)")
    g.add_argument("--sharpness-iters", type=_pos_int, default=_D["sharpness_iters"],
                   help="at most this many Lanczos steps per measurement (default %(default)s)")
    g.add_argument("--batch-sharpness-every", type=_nonneg_int, default=_D["batch_sharpness_every"], metavar="K",
                   help="every K iterations (from --sharpness-from on) measure the batch sharpness of the SI "
                        "weights on the step's own batch, g^T H g/|g|^2 on the sphere: one Hessian-vector "
                        "product (0: never; default %(default)s); written to batch_sharpness.csv")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=_D["seed"], help="default %(default)s")
    g.add_argument("--device", type=_device, default=_D["device"],
                   help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    g.add_argument("--precision", choices=PRECISIONS, default=_D["precision"],
                   help="compute precision of the forward pass and loss (default %(default)s); bf16 = autocast, "
                        "weights, optimizer, BN statistics and all measurements stay float32")
    g.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="keep NCHW activations (default: channels-last, faster convs)")
    g.add_argument("--threads", type=_nonneg_int, default=0, help="CPU threads (0: usable cores, max 8)")
    g.add_argument("--out", default=_D["out"], help="parent folder of run directories (default %(default)s)")
    g.add_argument("--quiet", action="store_true", help="no progress bar, only the final report")


def config_from_args(args: argparse.Namespace, **override) -> TrainConfig:
    """A validated TrainConfig from parsed arguments (``ValueError`` with one line if invalid)."""
    names = {f.name for f in fields(TrainConfig)}
    kw = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "keep_init_norm", False):
        kw["init_si_norm"] = None
    if kw.get("dataset", "").startswith("cifar"):
        from nets.data import resolve_data_dir

        kw["data_dir"] = resolve_data_dir(kw.get("data_dir"))    # recorded in config.json as used
    kw.update(override)
    return TrainConfig(**kw)
