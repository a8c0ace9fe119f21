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

__all__ = ["PRESETS", "CIFAR_EXPERIMENTS", "preset_config", "preset_parser"]

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
#: quick: CPU-sized (about 20 min on 2 cores, see docs/measurements.md for the measured time);
#: full: the paper's width-32 ConvNet on all 50,000 images at lambda = 1e-3, GPU-sized.
CIFAR_EXPERIMENTS = MappingProxyType({
    "quick": MappingProxyType(dict(
        width=8, train_subset=2000, test_subset=1000, wd=1e-3, lrs=(1.0, 2.0, 3.0), twin=(1.0, 2e-3),
        fit_iters=1200, iters=1300, twin_iters=3000, record_every=5, eval_every=500, sharpness_every=150,
        sharpness_from=1000, sharpness_batches=1, sharpness_iters=12, init_si_norm=20.0)),
    "full": MappingProxyType(dict(
        width=32, train_subset=0, test_subset=0, wd=1e-3, lrs=(0.5, 1.0, 2.0), twin=(1.0, 2e-3),
        fit_iters=20_000, iters=40_000, scale_length=True, record_every=10, eval_every=2000,
        sharpness_every=250, sharpness_batches=2, sharpness_iters=20, init_si_norm=None, workers=1,
        threads=0)),
})


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
