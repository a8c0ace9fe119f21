"""Regenerate the key figures of Lobacheva et al. (NeurIPS 2021) from this toolkit.

``python -m paper_figures <name> [--quick] [--out DIR]``; names in :data:`FIGURES`, plus ``all`` and
``report`` (every figure and a Markdown page with a predicted-vs-measured table).
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before torch loads: see theory/__init__.py
from paper_figures import (
               fig_cifar,
               fig_equivalences,
               fig_frequency,
               fig_norms,
               fig_period_detail,
               fig_periodic,
               fig_phase,
               fig_precision,
               fig_regimes,
)

#: name -> (module, one-line description); each module has ``make(out, quick) -> FigureResult``
FIGURES = {
    "periodic": (fig_periodic, "Fig. 1: loss, SI norm and effective LR of a ConvNet for several LRs"),
    "period_detail": (fig_period_detail, "one period in detail, phases marked (toy and net)"),
    "frequency": (fig_frequency, "period frequency vs eta*lambda, measured and predicted"),
    "phase": (fig_phase, "equilibrium vs instability regimes over (eta, lambda) and (eta*lambda, noise)"),
    "equivalences": (fig_equivalences, "exponential LR and WRS vs WD, scaling equivalence, overlaid"),
}

#: experiments on real data, run only when named (not part of 'all' / 'report'); their ``make``
#: also takes ``data_dir`` (None: $SIBN_DATA_DIR)
EXPERIMENTS = {
    "cifar": (fig_cifar, "real CIFAR-10: the eta*lambda study -- anatomy of periods, leave-one-out prediction, "
                         "frequency, forecast by batch sharpness (needs the data)"),
    "precision": (fig_precision, "real CIFAR-10: FP32 vs bf16 autocast, 3 seeds each at two eta*lambda (needs the data)"),
}


#: beyond the paper, not part of ``all``/``report`` (their own, longer runs)
EXTENSIONS = {
    "regimes": (fig_regimes, "fixed effective LR on the sphere: convergence / chaotic equilibrium / divergence "
                             "(toys + 11 ConvNet runs; CIFAR-10 from $SIBN_DATA_DIR)"),
    "norms": (fig_norms, "periodic behaviour of the ConvNet with BatchNorm, LayerNorm, GroupNorm, weight norm "
                         "(4 runs)"),
}

__all__ = ["FIGURES", "EXPERIMENTS", "EXTENSIONS"]
