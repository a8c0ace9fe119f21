"""Real scale-invariant networks trained with BN + WD, checked against ``theory``.

Lobacheva et al., "On the Periodic Behavior of Neural Network Training with Batch Normalization
and Weight Decay" (NeurIPS 2021): with BN and WD, training of scale-invariant weights is
periodic, and the period frequency follows the theory as eta and lambda change.

Python API::

    from nets import SIMonitor                       # the measurements in your own training loop
    mon = SIMonitor(model, optimizer, example_batch=x[:8], out="runs/mine")   # mon.step(loss) ...
    from nets import TrainConfig, run_training, run_sweep, sweep_configs
    res = run_training(TrainConfig(iters=2000))      # writes runs/nets-digits-convnet-<time>/
    res.steps["si_norm"], res.evals["test_acc"], res.periods.mean_length, res.period_summary

Command line: ``python -m nets.train --help``, ``python -m nets.sweep --help``,
``python -m nets.regimes --help``, ``python -m nets.paper_check --help`` (the one-call GPU check),
``python -m nets.data --help`` (download / pack CIFAR), ``python -m nets.monitor --help`` (demo).

Layout (arrows point one way: commands -> training -> monitor -> data, models, config):

==================  ===============================================================================
``config``          :class:`TrainConfig`: every setting of a run, validated in one place
``presets``         named settings (the paper's CIFAR-10 setup, ...) as data, applied by one function
``models``          the SI ConvNet and pre-activation ResNet-18 (BN / LN / GN / weight norm)
``data/``           digits, CIFAR-10/100 (pickles or packs), synthetic; download, pack, augmentation
``monitor/``        :class:`SIMonitor` and what it measures: SI detection, metrics, sharpness, state
``training/``       our trainer, run directories, checkpoints, batched runs
``plots``           figures of a run, a sweep, a regime map, the monitor's equilibrium panels
``train``, ``sweep``, ``regimes``, ``paper_check``   the commands (parse, call the library, print)
==================  ===============================================================================

Period detection and the theory-vs-measurement tables are in :mod:`analysis`; formulas in :mod:`theory`.
"""
import importlib
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before torch loads: see theory/__init__.py

#: public name -> submodule; imported on first use (PEP 562), so that ``python -m nets.train`` starts
#: without importing torch and a Ctrl-C in its first seconds reaches the command's own handler
_EXPORTS = {"TrainConfig": "config", "DataError": "data", "ImageData": "data", "load_data": "data",
            "ConvNet": "models", "PreActResNet18": "models", "build_model": "models",
            "RunResult": "training.run", "resume_training": "training.run", "run_training": "training.run",
            "SIGroups": "monitor", "find_si_groups": "monitor", "Trainer": "training.trainer",
            "run_sweep": "training.sweep", "sweep_configs": "training.sweep", "SIMonitor": "monitor"}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'nets' has no attribute {name!r}")


__all__ = list(_EXPORTS)
