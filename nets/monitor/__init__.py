"""The SI measurements in any PyTorch training loop: ``from nets.monitor import SIMonitor``.

Modules, from the bottom up:

=============  ==================================================================================
``calls``      run any model on an example batch: tensor / dict / several inputs, any output, no dropout
``si``         find a model's scale-invariant parameters by testing (individually and jointly SI)
``sharpness``  top Hessian eigenvalue of the loss on the SI sphere (Lanczos), fixed probe batches
``metrics``    the recorded quantities (norms, effective LR, angular update) and their ``Recorder``
``theory``     the one place that chooses the optimizer's effective-LR and equilibrium formulas
``track``      the theory's values at every record (hyper-parameters, equilibria), as records are made
``simonitor``  :class:`SIMonitor`: optimizer hooks that record every ``log_every`` steps
``state``      the state of a run from its records: periodic / at or approaching equilibrium / ...
``report``     the monitor's summary table and its files (metrics.csv streamed; npz, periods.json)
``sinks``      records as they are made: TensorBoard, Weights & Biases (optional extras)
``lightning``  ``SIMonitorCallback``: the monitor on a LightningModule (optional extra)
``demo``       ``python -m nets.monitor --demo``: a textbook ResNet-18 loop on CIFAR-10, monitored
=============  ==================================================================================
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before torch loads: see theory/__init__.py

from nets.monitor.calls import ExampleBatchError  # noqa: E402
from nets.monitor.metrics import TrainingDiverged  # noqa: E402
from nets.monitor.si import NoSIParameters, SIGroups, find_si_groups  # noqa: E402
from nets.monitor.simonitor import SIMonitor  # noqa: E402

__all__ = ["SIMonitor", "TrainingDiverged", "NoSIParameters", "ExampleBatchError", "SIGroups", "find_si_groups"]
