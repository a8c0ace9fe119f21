r"""Runs behind the regime map: toy sweeps on the sphere and the network's fixed-ELR sweep.

Toys (:func:`toy_maps`; :func:`simulate.regimes.sphere_sweep`, vectorised over the ELR grid):

* the figures' normalised quadratic (:func:`paper_figures.toy_runs.toy_objective`, :math:`d = 100`,
  spectrum in [0, 1], sphere sharpness at the minimum :math:`h = 1`) under projected **GD**: the
  convergence boundary is predicted exactly, :math:`\tilde\eta_c = 2/h` (:mod:`theory.stability`);
* a fully SI BN MLP (:class:`simulate.objectives.BNMLP`, 2 SI matrices, mini-batch **SGD**, batch 32
  of 256 samples), with the total norm fixed and per layer (each matrix on its own sphere). Its fixed
  head has norm 10 (:data:`MLP_HEAD_NORM`), large enough for the MLP to fit its data almost exactly:
  with the default 5 the logits stay too small, the minimum's mini-batch gradients never vanish and
  SGD settles at a noise floor for every ELR (no convergence regime to find).

Network (:func:`net_base`, :data:`NET_ELRS`; :func:`nets.training.regime_sweep.run_regime_sweep`): the fully SI
ConvNet. ``quick`` is CPU-sized: width 8 on 1,024 CIFAR-10 training images (``$SIBN_DATA_DIR``;
scikit-learn's digits without it), 400 iterations per ELR, one CPU thread (a fixed order of float
operations, so a rerun on the same machine reproduces the runs; and on a busy 2-core machine
faster than two threads). Full mode is GPU-sized: width 32 (the
paper's) on all 50,000 images for 10 epochs per ELR (the paper trains 1,000).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from analysis.regimes import regime_boundaries
from paper_figures.toy_runs import toy_objective
from simulate.objectives import BNMLP
from simulate.regimes import chance_loss, classify_trajectory, sphere_sweep
from theory.sphere import sphere_angular_update
from theory.stability import critical_effective_lr

__all__ = ["NET_ELRS", "PER_LAYER_ELRS", "PAPER_CONVNET", "toy_maps", "net_base", "net_sweeps"]

NET_ELRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
PER_LAYER_ELRS = (1e-3, 1e-2, 1e-1)
MLP_HEAD_NORM = 10.0
#: the regimes reported for the paper's ConvNet (width 32, CIFAR-10, 1,000 epochs; Kodryan et al., 2022)
PAPER_CONVNET = {"convergence_upper": 5e-4, "chaotic": (1e-3, 5e-3), "divergence_lower": 5e-2}


def _map(traj, reference: float) -> dict:
    stats = classify_trajectory(traj, reference)
    elrs = traj.config["eta"]
    labels = [s.regime for s in stats]
    half = traj.angle.shape[0] // 2
    grad = traj.eff_grad_norm[half:]
    ok = np.isfinite(grad)
    predicted = np.full(grad.shape, np.nan)
    predicted[ok] = sphere_angular_update(np.broadcast_to(elrs, grad.shape)[ok], grad[ok])
    return {"elr": elrs, "labels": labels, "level": np.array([s.level for s in stats]),
            "loss_trend": np.array([s.loss_trend for s in stats]),
            "grad_trend": np.array([s.grad_trend for s in stats]),
            "angle": np.nanmean(traj.angle[half:], axis=0), "angle_predicted": np.nanmean(predicted, axis=0),
            "eff_grad_norm": np.nanmean(grad, axis=0),
            "boundaries": regime_boundaries(elrs, labels)}


def toy_maps(quick: bool, steps: int | None = None) -> dict:
    """Regime maps of the toys: ``quadratic`` (GD, with ``critical_elr`` = 2/h) and ``mlp`` /
    ``mlp_per_layer`` (SGD), ``steps`` iterations each (default 2,000 quick, 4,000 full). Each map:
    ELRs, labels, level, trends, and over the second half of the run the mean angle per step, its
    prediction (the mean of :func:`theory.sphere.sphere_angular_update` = arctan(ELR x G_t), exact
    for the total norm) and the mean effective gradient norm; boundaries."""
    quad = toy_objective()
    steps = steps or (2000 if quick else 4000)
    q = sphere_sweep(quad, np.geomspace(0.1, 100, 13 if quick else 19), steps=steps, record_every=5)
    out = {"quadratic": {**_map(q, chance_loss(quad)),
                         "critical_elr": float(critical_effective_lr(quad.sphere_sharpness()))}}
    mlp = BNMLP(hidden=16, n_samples=256, batch_size=32, head_norm=MLP_HEAD_NORM)
    blocks = (mlp.h * mlp.p, mlp.h * mlp.h)
    elrs = np.geomspace(3e-3, 3.0, 16)
    for key, b in (("mlp", None), ("mlp_per_layer", blocks)):
        traj = sphere_sweep(mlp, elrs, steps=steps, blocks=b, record_every=5)
        out[key] = _map(traj, chance_loss(mlp))
    return out


def net_base(quick: bool):
    """The :class:`nets.config.TrainConfig` shared by the network's fixed-ELR runs (module docstring)."""
    from nets.config import TrainConfig

    data_dir = os.environ.get("SIBN_DATA_DIR")
    data = dict(dataset="cifar10", data_dir=data_dir) if data_dir else dict(dataset="digits")
    if quick:
        iters = 400
        return TrainConfig(model="convnet", mode="si", width=8, **data, train_subset=1024 if data_dir else 0,
                           iters=iters, record_every=5, eval_every=-1, checkpoint_every=0,
                           sharpness_every=iters - 1, sharpness_batches=2, quiet=True, seed=0, threads=1)
    iters = 3900                                   # 10 epochs of the 50,000 CIFAR-10 images at batch 128
    return TrainConfig(model="convnet", mode="si", width=32, **data, iters=iters, record_every=10,
                       eval_every=390, checkpoint_every=1000, sharpness_every=iters - 1, sharpness_batches=4,
                       quiet=True, seed=0)


def net_sweeps(out: Path, quick: bool, base=None, elrs=(NET_ELRS, PER_LAYER_ELRS)) -> dict:
    """Run (or reuse) the network's sweeps in ``out/net_regimes/{total,per_layer}`` over the ELRs
    ``elrs = (total, per_layer)``; returns ``{variant: (rows, boundaries, completed)}``
    (:func:`nets.training.regime_sweep.run_regime_sweep`). An interrupted run raises ``KeyboardInterrupt`` after
    its checkpoint is written; calling again continues the sweep."""
    from nets.training.regime_sweep import regime_configs, run_regime_sweep

    base = base or net_base(quick)
    res = {}
    for variant, grid, per_layer in (("total", elrs[0], False), ("per_layer", elrs[1], True)):
        rows, bounds, done = run_regime_sweep(regime_configs(base, grid, per_layer=per_layer),
                                              out / "net_regimes" / variant)
        res[variant] = (rows, bounds.get(variant, {}), done)
        if not done:        # interrupted (Ctrl-C / SIGTERM): the next call resumes from the checkpoint
            raise KeyboardInterrupt
    return res
