"""Fast toy dynamics of scale-invariant weights with weight decay (Lobacheva et al., NeurIPS 2021).

No data, no GPU, seconds: ``python -m simulate.toy``.

Modules
-------
objectives      toy SI objectives (normalised quadratic, BN linear classifier, BN MLP), batched
noise           explicit tangent gradient noise and mini-batch streams, reproducible per seed
engine          generic vectorised runner built on the ``theory.dynamics`` step functions
fast_quadratic  O(d)-per-step eigenbasis path for the quadratic (fused float32 GD + WD)
sweep           one-call sweeps over (eta, lam, momentum, noise, seed) and regime classification
periods         destabilisation / period detector shared with ``nets/``
compare         measured vs predicted equilibrium, effective LR, angular update and period
plots, toy      figure and command line
io              shared I/O helpers (progress bar, atomic JSON/CSV/NPZ, CLI errors)
"""
from .compare import compare_with_theory, format_table, write_comparison
from .engine import Trajectory, run
from .fast_quadratic import run_fast
from .objectives import BNLinearClassifier, BNMLP, NormalizedQuadratic, Objective, make_objective
from .periods import PeriodReport, detect_periods
from .sweep import REGIMES, classify, make_grid, period_reports, sweep

run_sweep = sweep

__all__ = [
    "Objective", "NormalizedQuadratic", "BNLinearClassifier", "BNMLP", "make_objective",
    "Trajectory", "run", "run_fast", "sweep", "run_sweep", "make_grid", "classify",
    "period_reports", "REGIMES", "PeriodReport", "detect_periods", "compare_with_theory",
    "format_table", "write_comparison",
]
