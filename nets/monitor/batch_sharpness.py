r"""Batch sharpness of the SI weights on the sphere, measured on the training step's own batch.

For SGD the curvature that sits at the stability threshold is not the full-batch top eigenvalue
but the *batch sharpness* (Andreyev & Beneventano, 2024, "Edge of Stochastic Stability",
arXiv 2412.20553, Sec. 3):

.. math:: S = \mathbb E_B\Big[\frac{g_B^\top H_B\, g_B}{\|g_B\|^2}\Big],

gradient :math:`g_B` and Hessian :math:`H_B` of the loss on the *same* mini-batch :math:`B` at the
training batch size, BN in train mode. On the sphere of the SI weights :math:`x` (norm
:math:`\rho`, :math:`u = x/\rho`, :math:`P = I-uu^\top`) we use the projected gradient
:math:`v = Pg_B` and the Riemannian Hessian :math:`PH_BP` (the term
:math:`-\langle\nabla f, u\rangle P` vanishes for SI :math:`f`), so per batch

.. math:: s_B = \frac{v^\top H_B v}{\|v\|^2}\ \text{(at } x\text{)}, \qquad
          h_B = \rho^2 s_B\ \text{(on the unit sphere)}, \qquad \tilde\eta\, h_B = \eta\, s_B,

to be compared with :func:`theory.stability.projected_stability_threshold`
:math:`2(1+\mu-\eta\lambda)`. One measurement costs one Hessian-vector product (a double backward
through the step's own graph); the step's gradient is the same one, so the step itself is
unchanged. The expectation over batches is a time average over measurements
(:mod:`analysis.anatomy`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["BatchSharpnessRecord", "BATCH_SHARPNESS_COLUMNS", "batch_sharpness_backward"]


class BatchSharpnessRecord(NamedTuple):
    """One batch-sharpness measurement (a row of ``batch_sharpness.csv``)."""

    iteration: int
    lr: float
    si_norm: float
    batch_sharpness: float          # s_B = v^T H_B v / |v|^2 at x (v the projected batch gradient)
    sphere_batch_sharpness: float   # h_B = rho^2 s_B, on the unit sphere
    eff_batch_sharpness: float      # eta s_B = eta_eff h_B, vs 2(1 + mu - eta*lambda)


BATCH_SHARPNESS_COLUMNS = BatchSharpnessRecord._fields


def batch_sharpness_backward(loss: torch.Tensor, params: list[torch.Tensor], si_params: list[torch.Tensor],
                             *, iteration: int, lr: float) -> BatchSharpnessRecord:
    """``loss.backward()`` that also measures the batch sharpness of ``si_params``.

    Leaves ``p.grad`` of every tensor of ``params`` (the trainable ones; ``si_params`` among them)
    equal to the gradient of ``loss`` (accumulated, as ``backward`` does), and returns the
    measurement of the module docstring at the current weights with learning rate ``lr``.
    """
    index = {id(p): i for i, p in enumerate(params)}
    missing = [i for i, p in enumerate(si_params) if id(p) not in index]
    if missing or not si_params:
        raise ValueError("the SI parameters must be among the trainable parameters (and not empty)")
    grads = torch.autograd.grad(loss, params, create_graph=True)
    for p, g in zip(params, grads):
        p.grad = g.detach().clone() if p.grad is None else p.grad + g.detach()
    g_si = [grads[index[id(p)]] for p in si_params]
    with torch.no_grad():
        x = torch.cat([p.detach().reshape(-1) for p in si_params])
        rho = torch.linalg.vector_norm(x)
        u = x / rho
        g = torch.cat([q.detach().reshape(-1) for q in g_si])
        v = g - u * torch.dot(u, g)                          # the tangent (projected) gradient
        vv = torch.dot(v, v)
    parts = [c.view_as(p) for c, p in zip(torch.split(v, [p.numel() for p in si_params]), si_params)]
    hv = torch.autograd.grad(g_si, si_params, grad_outputs=parts)
    with torch.no_grad():
        hv = torch.cat([h.reshape(-1) for h in hv])
        s = float(torch.dot(v, hv - u * torch.dot(u, hv)) / vv) if float(vv) > 0 else float("nan")
    r = float(rho)
    return BatchSharpnessRecord(int(iteration), float(lr), r, s, s * r * r, float(lr) * s)
