"""Fast toy dynamics of scale-invariant weights with weight decay (Lobacheva et al., NeurIPS 2021).

No data, no GPU, seconds: ``python -m simulate.toy``.

Modules
-------
objectives      toy SI objectives (normalised quadratic, BN linear classifier, BN MLP), batched
noise           explicit tangent gradient noise and mini-batch streams, reproducible per seed
engine          generic vectorised runner built on the ``theory.dynamics`` step functions
fast_quadratic  O(d)-per-step eigenbasis path for the quadratic (fused float32 GD + WD)
sweep           one-call sweeps over (eta, lam, momentum, noise, seed) and their behaviour
regimes         training on the sphere at fixed effective LRs (the rule: ``analysis.regimes``)
rotational      random walks of Adam/AdamW/SGD variants made by ``torch.optim`` itself
compare         measured vs predicted equilibrium, effective LR, angular update and period
plots, toy      figure and command line

Period detection and the regime rule are in ``analysis``, command-line and file helpers in ``cli``.
"""
import importlib
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before torch loads: see theory/__init__.py

#: public name -> submodule; imported on first use (PEP 562), so that a command importing only
#: ``cli`` (every CLI's parser and error helpers) does not import torch and the engines.
#: ``simulate.sweep`` is the submodule; its one-call sweep is ``simulate.run_sweep``.
_EXPORTS = {"compare_with_theory": "compare", "format_table": "compare", "write_comparison": "compare",
            "Trajectory": "engine", "run": "engine", "run_fast": "fast_quadratic",
            "BNLinearClassifier": "objectives", "BNMLP": "objectives", "NormalizedQuadratic": "objectives",
            "Objective": "objectives", "make_objective": "objectives", "BEHAVIOURS": "sweep", "classify": "sweep",
            "make_grid": "sweep", "period_reports": "sweep", "run_sweep": "sweep"}


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__),
                        "sweep" if name == "run_sweep" else name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'simulate' has no attribute {name!r}")


__all__ = list(_EXPORTS)
