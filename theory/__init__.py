"""Theory of SGD + weight decay on scale-invariant weights (Lobacheva et al., NeurIPS 2021).

Submodules
----------
invariance   checks of the scale-invariance identities; detector of SI parameters of a model
dynamics     SGD/WRS steps, exact norm recurrence, effective LR and gradient norm, angular update
equilibrium  equilibrium norm / effective LR / angular update, with and without momentum; decay
             time towards it
stability    destabilisation condition, critical norm, predicted period length
sphere       projected SGD on the sphere at a fixed effective LR (total or per layer)
equivalences (eta, lam) <-> eta*lam scaling, Li & Arora's exponential LR, weight rescaling
symbolic     sympy derivations of the closed forms
"""
import os

# OpenMP threads sleep at once instead of spinning (must precede the first import of torch):
# 11 % slower on an idle 2-core machine, 5x faster with another busy process (nets/README.md,
# "CPU threads on a busy machine"). Set OMP_WAIT_POLICY yourself to override. Every package
# (simulate, nets, paper_figures) and tests/conftest.py set the same default, as any may be the first
# import: a shared helper would have to live in a package whose import loads torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from .dynamics import (angular_update, effective_grad_norm, effective_lr, next_sq_norm,
                       norm_trajectory, sgd_step, wrs_step)
from .equilibrium import (approach_steps, equilibrium_angular_update, equilibrium_effective_lr,
                          equilibrium_norm, relaxation_time)
from .equivalences import (TexpSchedule, rescaled_hyperparameters, texp_alpha, texp_schedule,
                           wrs_lr_from_wd)
from .invariance import (InvarianceReport, check_module_scale_invariance, check_scale_invariance,
                         find_scale_invariant_params)
from .sphere import block_norms, project_to_sphere, sphere_angular_update, sphere_step
from .stability import (critical_effective_lr, critical_norm, is_unstable, norm_decay_factor,
                        predicted_period_frequency, predicted_period_length, riemannian_hessian,
                        projected_stability_threshold, sphere_sharpness, stability_margin,
                        stability_threshold)

__all__ = [name for name in dir() if not name.startswith("_") and name not in {
    "dynamics", "equilibrium", "equivalences", "invariance", "sphere", "stability"}]
