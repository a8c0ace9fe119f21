"""Named settings of a run, as data, and the one function that applies them.

A preset is a mapping of :class:`nets.config.TrainConfig` fields. Every command that offers a
preset (``--paper`` of ``nets.train``, ``nets.sweep``, ``nets.regimes``; ``nets.paper_check``)
applies it with :func:`preset_config` or, for a parser, :func:`preset_parser`: preset first,
then the flags given explicitly. The CIFAR-10 period experiments of ``paper_figures cifar``
(:data:`CIFAR_EXPERIMENTS`) are data here too.
"""
from __future__ import annotations

import sys
from types import MappingProxyType

__all__ = ["PRESETS", "CIFAR_EXPERIMENTS", "PRECISION_EXPERIMENTS", "GPU_STUDY", "preset_config", "preset_parser"]

#: The authors' CIFAR-10 setting (Lobacheva et al., NeurIPS 2021, Sec. 3 and App.;
#: ``docs/paper_setup.md``): the fully scale-invariant ConvNet of width 32 at its default init
#: (no rescaling of the SI norm), last layer at Frobenius norm 10 and frozen with its random
#: bias, plain SGD (momentum 0) with batch 128 keeping each epoch's last partial batch (391 steps
#: per 50,000 images), lambda = 1e-3, no augmentation, the authors' input normalisation
#: (:data:`nets.data.CIFAR_MEAN`, ``CIFAR_STD``), and the paper's train loss (a full pass over
#: the training set at each evaluation). eta = 1 is one of the paper's learning rates (1, 0.03,
#: 0.01, 0.001).
PAPER = MappingProxyType(dict(
    model="convnet", mode="si", width=32, last_layer_norm=10.0, keep_last_bias=True, dataset="cifar10",
    image_size=32, augment=False, drop_last=False, batch_size=128, lr=1.0, wd=1e-3, wd_on="all", momentum=0.0,
    init_si_norm=None, full_train_eval=True))

#: every named preset of a run: ``--<name>`` on the command line
PRESETS = MappingProxyType({"paper": PAPER})

#: The CIFAR-10 period experiments (:class:`paper_figures.fig_cifar.CifarExperiment` fields).
#: quick: the CPU-sized eta*lambda study (2.5e-4 ... 3e-3 and an equal-product twin at 1e-3; at
#: most 30 min on 2 cores, see docs/measurements.md for the measured time): every run starts at
#: the same effective LR (init norm 20 sqrt(eta)), the run lengths were measured to hold >= 4
#: complete periods after the first phase (about 1,900-2,800 iterations at the smallest eta);
#: full: the paper's width-32 ConvNet on all 50,000 images at lambda = 1e-3, GPU-sized.
CIFAR_EXPERIMENTS = MappingProxyType({
    "quick": MappingProxyType(dict(
        width=8, train_subset=2000, test_subset=1000, wd=1e-3, lrs=(0.25, 0.5, 1.0, 2.0, 3.0), twin=(0.5, 2e-3),
        fit_iters=1200, iters=1300, run_iters=(7000, 6500, 2600, 2500, 2500), twin_iters=3000, record_every=5,
        eval_every=500, sharpness_every=250, sharpness_from=1000, sharpness_batches=1, sharpness_iters=10,
        batch_sharpness_every=10, init_si_norm=20.0, init_scale_with_lr=True)),
    "full": MappingProxyType(dict(
        width=32, train_subset=0, test_subset=0, wd=1e-3, lrs=(0.5, 1.0, 2.0), twin=(1.0, 2e-3),
        fit_iters=20_000, iters=40_000, scale_length=True, record_every=10, eval_every=2000,
        sharpness_every=250, sharpness_batches=2, sharpness_iters=20, init_si_norm=None, workers=1,
        threads=0)),
})


#: FP32 vs bf16 (:class:`paper_figures.fig_precision.PrecisionExperiment` fields): the study's
#: ConvNet at eta*lambda 5e-4 and 2e-3, 3 seeds in each precision, >= 3 complete periods per run.
PRECISION_EXPERIMENTS = MappingProxyType({
    "quick": MappingProxyType(dict(
        width=8, train_subset=2000, test_subset=1000, wd=1e-3, lrs=(0.5, 2.0), run_iters=(5500, 2500),
        seeds=(0, 1, 2), fit_iters=1200, init_si_norm=20.0)),
    "full": MappingProxyType(dict(
        width=32, train_subset=15000, test_subset=1000, wd=1e-3, lrs=(0.5, 2.0), run_iters=(60000, 30000),
        seeds=(0, 1, 2), fit_iters=20000, init_si_norm=20.0, workers=1, threads=0)),
})


#: The eta*lambda study in one call on a lent GPU (``python -m nets.paper_check``): the paper's
#: width-32 ConvNet on the largest CIFAR-10 pack a device call carries (15,000 + 1,000 images,
#: ``python -m nets.data pack``), all runs at once for ``seconds``. The smallest eta*lambda is the
#: estimate of ``python -m nets.paper_check --plan docs/figures/cifar/cifar.json`` (nets.training.plan:
#: the CPU study's period fits, counted FLOPs, an assumed 10 % of the H100's TF32 peak): 2.5e-5, the
#: floor of one decade below the CPU study (3 periods would fit in about 30,000 of the ~108,000
#: iterations the budget allows); the others double from it; the twin is the equal-product partner of
#: the second (the tests check this preset against the estimate). bf16 autocast: 2x the steps at
#: width 32, and no detectable change of the dynamics (docs/measurements.md, "Mixed precision").
GPU_STUDY = MappingProxyType(dict(
    width=32, train_images=15000, wd=1e-3, lrs=(0.025, 0.05, 0.1, 0.2), twin=(0.025, 2e-3), seconds=480,
    batch_sharpness_every=10, sharpness_every=250, precision="bf16"))


def preset_config(name: str, **overrides):
    """The :class:`nets.config.TrainConfig` of preset ``name`` with ``overrides`` on top (validated).

    Raises ``ValueError`` (one line) for an unknown name."""
    from nets.config import TrainConfig

    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return TrainConfig(**{**PRESETS[name], **overrides})


def preset_parser(**kwargs):
    """A :class:`cli.CliParser` on which ``--<preset>`` makes that preset the defaults before
    parsing, so that flags given explicitly still override it. Every command offering presets
    builds its parser here (the ``--<preset>`` flags themselves: ``nets.train.add_config_arguments``)."""
    from cli import CliParser

    class PresetParser(CliParser):
        def parse_known_args(self, args=None, namespace=None):
            args = sys.argv[1:] if args is None else list(args)
            for name in PRESETS:
                flag = f"--{name}"
                if any(len(a) > 3 and flag.startswith(a) for a in args):   # argparse accepts a prefix
                    self.set_defaults(**PRESETS[name])
            return super().parse_known_args(args, namespace)

    return PresetParser(**kwargs)
