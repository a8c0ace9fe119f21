"""Configuration of one training run of a real scale-invariant network.

:class:`TrainConfig` holds every knob of :func:`nets.run_training`; it is written verbatim to
``config.json`` and stored in every checkpoint, so a run can be reproduced and resumed from
its directory alone.

The defaults are the CPU demonstration of the periodic behaviour (Lobacheva et al., NeurIPS
2021, Sec. 3) on scikit-learn's digits: a fully scale-invariant ConvNet of width 16 on the
digits upsampled to 16x16, batch 128, plain SGD with eta = 1. Two choices differ from the
paper's CIFAR setup (lambda = 1e-3, the default-init SI norm) to fit at least two full periods
into five minutes on two CPU cores: period length T ~ ln(rho_max/rho_min)/(eta*lam)
(:mod:`theory.stability`). The width-16 ConvNet's default init has rho_0 = sqrt(sum of c_out/3)
= 8.9 (PyTorch's conv init, Var w = 1/(3 fan_in)); the first SGD step at eta = 1 throws it to ~41
(the gradient term eta^2 ||grad||^2 of the norm recurrence; measured), and with lam = 1e-3 the
descent from there to the first destabilisation takes too much of a 5-minute budget. The defaults
use lam = 3e-3 (eta*lam 3x larger: every time scale 3x shorter, by the (eta, lam) -> eta*lam
equivalence) and start the SI weights at total norm 20 (direction unchanged): the first step then
reaches only ~27.5 (measured), which shortens the first descent, not a full period anyway. The
paper's setup itself is the preset ``paper`` (:mod:`nets.presets`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

__all__ = ["TrainConfig", "MODELS", "MODES", "NORMS", "DATASETS", "WD_GROUPS", "OPTIMIZERS"]

MODELS = ("convnet", "resnet18")
NORMS = ("bn", "ln", "gn", "wn")      # nets.models.NORMS (kept here: config imports no torch)
MODES = ("si", "practical")
DATASETS = ("digits", "cifar10", "cifar100", "synthetic")
WD_GROUPS = ("all", "si", "other", "none")
OPTIMIZERS = ("sgd", "adamw", "adam")
#: compute precision of the training forward pass and loss (autocast); weights, optimizer state,
#: BN statistics, checkpoints and every measurement stay float32 (nets.training.precision)
PRECISIONS = ("fp32", "bf16")

@dataclass
class TrainConfig:
    """Every setting of a run (see ``python -m nets.train --help`` for the same in words).

    Model: ``model`` in {convnet, resnet18}; ``mode`` "si" (BN without affine parameters, last
    layer fixed at Frobenius norm ``last_layer_norm`` and frozen: every trainable weight is SI)
    or "practical" (BN affine, everything trained); ``width`` = channels of the first stage
    (paper: 32 for the ConvNet, 64 for ResNet-18); ``keep_last_bias``: in "si" mode freeze the
    ConvNet's last-layer bias at its random init (the authors' code) instead of zeroing it;
    ``norm`` the ConvNet's normalisation in {bn, ln, gn, wn} (:mod:`nets.models`).

    Data: ``dataset`` in {digits, cifar10, cifar100, synthetic}; ``data_dir`` for CIFAR (a folder
    or a pack, :mod:`nets.data`; None: ``$SIBN_DATA_DIR``); ``image_size`` (None: 16 for digits,
    32 for CIFAR, 8 for synthetic); ``train_subset`` / ``test_subset`` keep the first N training /
    test images (0: all); ``augment`` = random crop with ``aug_pad`` padding + horizontal flip;
    ``drop_last`` drops an epoch's last partial batch (False: keep it, as the authors' loader does:
    391 steps per 50,000-image epoch at batch 128).

    Optimisation: ``optimizer`` "sgd" (the paper's: constant ``lr`` eta, ``wd`` lambda as L2 inside the
    step, heavy-ball ``momentum``), "adamw" (``torch.optim.AdamW``: decoupled WD,
    x <- (1 - lr*wd) x, betas ``beta1``, ``beta2``) or "adam" (``torch.optim.Adam``: WD as coupled L2,
    normalised with the gradient); ``wd`` applies to the groups ``wd_on`` in {all, si, other, none};
    ``wrs_norm`` replaces WD on the SI
    group by rescaling it to that total norm after each step (Liu et al., 2021); ``exp_lr``
    replaces WD on the SI group by Li & Arora's equivalent exponential LR schedule;
    ``init_si_norm`` rescales the SI group at init to that total norm (None: keep);
    ``fixed_elr`` trains on the sphere at that fixed effective LR (no WD on the SI group: the SI
    weights are projected back after each step to the radius r = sqrt(lr/fixed_elr), so
    lr/r^2 = fixed_elr; :mod:`theory.sphere`, Kodryan et al., 2022), with
    ``fixed_elr_per_layer`` every SI tensor on its own sphere of radius r (each at ELR fixed_elr).

    Speed: ``channels_last`` stores conv activations NHWC (oneDNN/cuDNN fast path; about 1.3x
    per step on this CPU); it changes the order of float operations, not the model.

    Length and recording: ``iters`` or ``epochs`` (epochs wins when > 0); step metrics every
    ``record_every`` iterations; test evaluation every ``eval_every`` iterations (0: once per
    epoch; -1: never), on batches of ``eval_batch_size``; with ``full_train_eval`` each evaluation
    also measures the paper's train loss, a full pass over the training set at fixed weights in
    train-mode BN (:func:`nets.monitor.metrics.full_pass_train_loss`); a checkpoint every ``checkpoint_every`` iterations (0: only at the end or
    on interruption); the sharpness of the SI group (:mod:`nets.monitor.sharpness`) every
    ``sharpness_every`` iterations (0: never) from iteration ``sharpness_from`` on (the first
    phase, before any destabilisation, has nothing to forecast), on the first ``sharpness_batches``
    training batches, with at most ``sharpness_iters`` Lanczos steps; the batch sharpness on the
    step's own batch (:mod:`nets.monitor.batch_sharpness`, one Hessian-vector product) every
    ``batch_sharpness_every`` iterations (0: never), also from ``sharpness_from`` on.
    """

    model: str = "convnet"
    mode: str = "si"
    width: int = 16
    norm: str = "bn"
    last_layer_norm: float = 10.0
    keep_last_bias: bool = False
    dataset: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    train_subset: int = 0
    test_subset: int = 0
    data_seed: int = 0
    augment: bool = False
    aug_pad: int = 4
    optimizer: str = "sgd"
    drop_last: bool = True
    lr: float = 1.0
    wd: float = 3e-3
    wd_on: str = "all"
    momentum: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    batch_size: int = 128
    iters: int = 4000
    epochs: int = 0
    record_every: int = 10
    eval_every: int = 0
    eval_batch_size: int = 1000
    full_train_eval: bool = False
    checkpoint_every: int = 1000
    sharpness_every: int = 0
    sharpness_from: int = 0
    sharpness_batches: int = 4
    sharpness_iters: int = 30
    batch_sharpness_every: int = 0
    wrs_norm: float | None = None
    exp_lr: bool = False
    fixed_elr: float | None = None
    fixed_elr_per_layer: bool = False
    init_si_norm: float | None = 20.0
    channels_last: bool = True
    precision: str = "fp32"
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    out: str = "runs"
    quiet: bool = False

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------- checks
    def validate(self) -> "TrainConfig":
        """Raise ``ValueError`` with a one-line message on an impossible setting."""
        _choice("model", self.model, MODELS)
        _choice("mode", self.mode, MODES)
        _choice("norm", self.norm, NORMS)
        if self.norm != "bn" and self.model != "convnet":
            raise ValueError(f"norm {self.norm!r} is available for the convnet only")
        _choice("dataset", self.dataset, DATASETS)
        _choice("wd_on", self.wd_on, WD_GROUPS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("precision", self.precision, PRECISIONS)
        for name in ("width", "batch_size", "record_every", "eval_batch_size", "sharpness_batches",
                     "sharpness_iters"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("iters", "epochs", "train_subset", "test_subset", "checkpoint_every", "aug_pad", "threads",
                     "sharpness_every", "sharpness_from", "batch_sharpness_every"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.iters == 0 and self.epochs == 0:
            raise ValueError("give a positive number of iterations or epochs")
        if self.eval_every < -1:
            raise ValueError(f"eval_every must be >= -1, got {self.eval_every!r}")
        if self.image_size is not None and self.image_size < 4:
            raise ValueError(f"image_size must be >= 4, got {self.image_size!r}")
        _positive_finite("lr", self.lr)
        _positive_finite("last_layer_norm", self.last_layer_norm)
        if not (math.isfinite(self.wd) and self.wd >= 0):
            raise ValueError(f"wd must be a finite number >= 0, got {self.wd!r}")
        if self.lr * self.wd >= 1:
            raise ValueError(f"lr*wd must be < 1 (WD factor 1 - lr*wd > 0), got {self.lr * self.wd!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)!r}")
        if self.optimizer != "sgd" and (self.momentum or self.exp_lr):
            raise ValueError(f"momentum and exp_lr are SGD options; {self.optimizer} uses beta1, beta2")
        for name in ("wrs_norm", "init_si_norm", "fixed_elr"):
            if getattr(self, name) is not None:
                _positive_finite(name, getattr(self, name))
        if sum([self.wrs_norm is not None, self.exp_lr, self.fixed_elr is not None]) > 1:
            raise ValueError("choose at most one of wrs_norm, exp_lr and fixed_elr")
        if self.fixed_elr_per_layer and self.fixed_elr is None:
            raise ValueError("fixed_elr_per_layer needs fixed_elr")
        if self.exp_lr and (self.wd == 0 or self.wd_on in ("other", "none")):
            raise ValueError("exp_lr replaces weight decay on the SI group: it needs wd > 0 on it")
        return self

    # ----------------------------------------------------------------- derived
    @property
    def si_radius(self) -> float | None:
        """Norm the SI group is projected back to after every step (WRS: ``wrs_norm``; fixed ELR:
        sqrt(lr/fixed_elr), per tensor with ``fixed_elr_per_layer``); None: no projection."""
        if self.fixed_elr is not None:
            return math.sqrt(self.lr / self.fixed_elr)
        return self.wrs_norm

    @property
    def wd_si(self) -> float:
        """WD coefficient the optimizer applies to the SI group (0 under WRS / exp-LR / fixed ELR)."""
        if self.si_radius is not None or self.exp_lr or self.wd_on in ("other", "none"):
            return 0.0
        return float(self.wd)

    @property
    def wd_other(self) -> float:
        """WD coefficient on the non-SI trainable parameters."""
        return float(self.wd) if self.wd_on in ("all", "other") else 0.0

    @property
    def lam_si_equivalent(self) -> float:
        """The WD on the SI group whose dynamics the run follows (exp-LR is equivalent to it)."""
        if self.exp_lr:
            return float(self.wd)
        return self.wd_si

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a dict (e.g. ``config.json``), ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _choice(name: str, value, options) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}; got {value!r}")


def _positive_finite(name: str, value) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
