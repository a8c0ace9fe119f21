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
``python -m nets.data --help`` (download / pack CIFAR), ``python -m nets.paper_check --help``.

Modules: config (TrainConfig, the paper's preset), data (digits / CIFAR pickles and packs /
synthetic; download, pack), augment (device-side batches), models (ConvNet, pre-activation
ResNet-18), si (SI groups by testing), metrics, sharpness, forecast (next destabilisation from the
critical norm), monitor (SIMonitor: the measurements, in any loop; monitor_theory, monitor_regime,
monitor_report), trainer (our loop, measured by SIMonitor), checkpoint, run (run_training / resume_training), report
(periods vs theory), plots, train (CLI), sweep (LR sweep + CLI), paper_check (the paper's setting
at several LRs within a time budget: the one-call GPU check), regimes (fixed-ELR regime sweep),
batched and batched_run (K runs trained as one grouped network, ``python -m nets.sweep --batched``).
"""
import importlib
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before torch loads: see theory/__init__.py

#: public name -> submodule; imported on first use (PEP 562), so that ``python -m nets.train`` starts
#: without importing torch and a Ctrl-C in its first seconds reaches the command's own handler
_EXPORTS = {"TrainConfig": "config", "DataError": "data", "ImageData": "data", "load_data": "data",
            "ConvNet": "models", "PreActResNet18": "models", "build_model": "models",
            "analyse_periods": "report", "RunResult": "run", "resume_training": "run",
            "run_training": "run", "SIGroups": "si", "find_si_groups": "si", "Trainer": "trainer",
            # nets.sweep is also a ``python -m`` entry point: imported lazily so that running it
            # does not find it already imported (runpy's double-import warning)
            "run_sweep": "sweep", "sweep_configs": "sweep", "SIMonitor": "monitor"}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'nets' has no attribute {name!r}")


__all__ = list(_EXPORTS)
