"""Real scale-invariant networks trained with BN + WD, checked against ``theory``.

Lobacheva et al., "On the Periodic Behavior of Neural Network Training with Batch Normalization
and Weight Decay" (NeurIPS 2021): with BN and WD, training of scale-invariant weights is
periodic, and the period frequency follows the theory as eta and lambda change.

Python API::

    from nets import TrainConfig, run_training, run_sweep, sweep_configs
    res = run_training(TrainConfig(iters=2000))      # writes runs/nets-digits-convnet-<time>/
    res.steps["si_norm"], res.evals["test_acc"], res.periods.mean_length, res.period_summary

Command line: ``python -m nets.train --help``, ``python -m nets.sweep --help``.

Modules: config (TrainConfig), data (digits / CIFAR pickles / synthetic), augment (device-side
batches), models (ConvNet, pre-activation ResNet-18), si (SI groups by testing), metrics,
trainer (the loop), checkpoint, run (run_training / resume_training), report (periods vs
theory), plots, train (CLI), sweep (LR sweep + CLI), batched and batched_run (K runs trained
as one grouped network, ``python -m nets.sweep --batched``).
"""
from .config import TrainConfig
from .data import DataError, ImageData, load_data
from .models import ConvNet, PreActResNet18, build_model
from .report import analyse_periods
from .run import RunResult, resume_training, run_training
from .si import SIGroups, find_si_groups
from .trainer import Trainer


def __getattr__(name):
    # nets.sweep is also a ``python -m`` entry point: import it lazily so that running it does not
    # find it already imported (runpy's double-import warning)
    if name in ("run_sweep", "sweep_configs"):
        from . import sweep
        return getattr(sweep, name)
    raise AttributeError(f"module 'nets' has no attribute {name!r}")

__all__ = ["TrainConfig", "DataError", "ImageData", "load_data", "ConvNet", "PreActResNet18",
           "build_model", "analyse_periods", "RunResult", "resume_training", "run_training",
           "SIGroups", "find_si_groups", "run_sweep", "sweep_configs", "Trainer"]
