r"""Sharpness of a real network on the sphere of its SI weights: the destabilisation condition.

Lobacheva et al. (NeurIPS 2021, Sec. 4) explain each destabilisation by the effective LR
outgrowing the curvature: GD on the SI weights :math:`x` (total norm :math:`\rho`) is unstable
when

.. math:: \tilde\eta\, h > 2(1+\mu), \qquad \tilde\eta = \eta/\rho^2, \qquad
          h = \rho^2\,\lambda_{\max}\!\big(P\,\nabla^2 L(x)\,P\big),

with :math:`P = I - uu^\top` (:math:`u = x/\rho`) the projector onto the tangent space of the
sphere and :math:`h` the sharpness on the *unit* sphere (assumption 1 of
:mod:`theory.stability`; :func:`theory.stability.sphere_sharpness` for an explicit Hessian,
which is what this module is tested against). Since :math:`\tilde\eta h = \eta\lambda_{\max}`,
the product needs no norm at all; both are recorded.

:math:`L` is the training loss as SGD sees it -- cross-entropy in train-mode BN on batches of
the training batch size -- averaged over a fixed set of batches, so a run's measurements are
comparable over time. :math:`\nabla^2 L` is the Hessian block of the SI group (other
parameters held fixed). Hessian-vector products come from double backward through one
retained graph; the top eigenvalue from Lanczos with full re-orthogonalisation, vectors kept on
the model's device (only the small tridiagonal matrix goes to the host). A measurement leaves
the model, its BN running statistics and every RNG as they were.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import eigh_tridiagonal
from torch import nn

__all__ = ["LanczosResult", "lanczos_top_eigenvalue", "SharpnessProbe", "fixed_batches",
           "SHARPNESS_COLUMNS", "SharpnessRecord", "buffers_kept"]



class SharpnessRecord(NamedTuple):
    """One sharpness measurement (a row of ``sharpness.csv``)."""

    iteration: int
    lr: float
    si_norm: float
    top_eigenvalue: float        # h of the Hessian in the SI weights (Lanczos)
    sphere_sharpness: float      # rho^2 h: the same on the unit sphere
    eff_lr_sharpness: float      # eta h = eta_eff * rho^2 h, vs the threshold 2(1 + mu)
    lanczos_residual: float
    lanczos_iterations: int


SHARPNESS_COLUMNS = SharpnessRecord._fields


@contextmanager
def buffers_kept(model: nn.Module):
    """Run the body in train mode and then put back the model's buffers (BN running statistics)
    and its train/eval mode: forward passes for a measurement leave the run unchanged."""
    saved, was_training = [(b, b.detach().clone()) for b in model.buffers()], model.training
    model.train()
    try:
        yield model
    finally:
        with torch.no_grad():
            for buf, old in saved:
                buf.copy_(old)
        model.train(was_training)


@dataclass
class LanczosResult:
    """Largest eigenvalue estimate ``value`` (the top Ritz value), the residual bound
    ``residual`` = :math:`|\\beta_{k}\\, s_{k}|` (an eigenvalue of the operator lies within it of
    ``value``), and the number of operator applications ``iterations``."""

    value: float
    residual: float
    iterations: int


def lanczos_top_eigenvalue(matvec, v0: torch.Tensor, *, max_iter: int = 30,
                           rtol: float = 1e-3) -> LanczosResult:
    """Largest (algebraic) eigenvalue of a symmetric operator by Lanczos iteration.

    Parameters
    ----------
    matvec : callable
        ``v -> A v`` for 1-D tensors like ``v0``; ``A`` symmetric.
    v0 : tensor, shape (n,)
        Start vector (random; its device and dtype are used throughout).
    max_iter : int
        At most this many applications of ``A`` (and Lanczos vectors kept).
    rtol : float
        Stop when the residual bound is below ``rtol * |value|``.

    Notes
    -----
    Full re-orthogonalisation against all previous Lanczos vectors (twice, "twice is enough"),
    so no spurious copies of converged eigenvalues appear (Golub & Van Loan, Sec. 10.3).
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    norm0 = torch.linalg.vector_norm(v0)
    if not torch.isfinite(norm0) or norm0 == 0:
        raise ValueError("start vector must be finite and non-zero")
    n = v0.numel()
    basis = torch.empty((min(max_iter, n), n), dtype=v0.dtype, device=v0.device)
    basis[0] = v0 / norm0
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(basis.shape[0]):
        w = matvec(basis[j])
        alphas.append(float(torch.dot(w, basis[j])))
        q = basis[:j + 1]
        for _ in range(2):
            w = w - q.T @ (q @ w)
        beta = float(torch.linalg.vector_norm(w))
        evals, evecs = eigh_tridiagonal(np.asarray(alphas), np.asarray(betas, dtype=float))
        value, residual = float(evals[-1]), abs(beta * float(evecs[-1, -1]))
        invariant = beta <= 1e-12 * max(abs(value), 1e-30)    # the Krylov space is exhausted
        if residual <= rtol * abs(value) or invariant or j + 1 == basis.shape[0]:
            break
        betas.append(beta)
        basis[j + 1] = w / beta
    return LanczosResult(value, residual, j + 1)


class SharpnessProbe:
    """Measures :math:`\\lambda_{\\max}(P\\nabla^2 L P)` of a model's SI group on fixed batches.

    Parameters
    ----------
    model : nn.Module
        The network (its train/eval mode is restored after each measurement).
    params : list of tensors
        The SI group :math:`x` (e.g. :attr:`nets.monitor.metrics.SIWatch.params`).
    batches : list of (x, y) tensor pairs
        Fixed, already normalised training batches; :math:`L` is their mean cross-entropy in
        train-mode BN.
    max_iter, rtol : Lanczos settings (:func:`lanczos_top_eigenvalue`).
    loss_fn : callable, optional
        ``loss_fn(model(x), y)``, the training loss (default: cross-entropy).
    seed : int
        The Lanczos start vector of the measurement at iteration ``t`` is drawn from a generator
        seeded with ``seed + t``: reproducible, and independent of the training RNGs.
    """

    def __init__(self, model: nn.Module, params: list[torch.Tensor], batches, *, max_iter: int = 30,
                 rtol: float = 1e-2, seed: int = 0, loss_fn=None):
        if not params:
            raise ValueError("no SI parameters to measure the sharpness of")
        if not batches:
            raise ValueError("no batches to measure the sharpness on")
        self.model, self.params, self.batches = model, list(params), list(batches)
        self.max_iter, self.rtol, self.seed = int(max_iter), float(rtol), int(seed)
        self.loss_fn = loss_fn or F.cross_entropy

    def top_eigenvalue(self, iteration: int = 0) -> tuple[LanczosResult, float]:
        """``(LanczosResult, rho)`` at the current weights; the result is the top eigenvalue of
        the tangent-projected Hessian of :math:`L` in the SI weights, :math:`\\rho = \\|x\\|`."""
        with buffers_kept(self.model):
            loss = sum(self.loss_fn(self.model(xb), yb) for xb, yb in self.batches) / len(self.batches)
            grads = torch.autograd.grad(loss, self.params, create_graph=True)
            with torch.no_grad():
                x = torch.cat([p.detach().reshape(-1) for p in self.params])
                rho = torch.linalg.vector_norm(x)
                u = x / rho
            sizes = [p.numel() for p in self.params]
            shapes = [p.shape for p in self.params]

            def project(v):
                return v - u * torch.dot(u, v)

            def matvec(v):
                pv = project(v)
                parts = [c.view(s) for c, s in zip(torch.split(pv, sizes), shapes)]
                hv = torch.autograd.grad(grads, self.params, grad_outputs=parts, retain_graph=True)
                return project(torch.cat([h.reshape(-1) for h in hv]))

            gen = torch.Generator(device=x.device)
            gen.manual_seed(self.seed + int(iteration))
            v0 = project(torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype))
            result = lanczos_top_eigenvalue(matvec, v0, max_iter=self.max_iter, rtol=self.rtol)
            return result, float(rho)

    def measure(self, iteration: int, lr: float) -> SharpnessRecord:
        """One :class:`SharpnessRecord` at the current weights, for LR ``lr``."""
        res, rho = self.top_eigenvalue(iteration)
        return SharpnessRecord(int(iteration), float(lr), rho, res.value, res.value * rho ** 2, lr * res.value,
                               res.residual, res.iterations)


def fixed_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, n_batches: int, scale, shift):
    """The first ``n_batches`` full batches of ``(x, y)`` (at least one), normalised."""
    n = max(1, min(int(n_batches), x.shape[0] // batch_size))
    return [(torch.addcmul(shift, x[i * batch_size:(i + 1) * batch_size], scale),
             y[i * batch_size:(i + 1) * batch_size]) for i in range(n)]
