r"""Random streams of a vectorised run: explicit gradient noise and mini-batch sampling.

Reproducibility contract
------------------------
* A configuration's initial point depends only on its own seed
  (:meth:`simulate.objectives.Objective.init`).
* Noise and mini-batches come from one generator per run, seeded by the *set* of seeds in the
  run (``np.random.SeedSequence``); draws are made once per distinct seed and shared by every
  configuration with that seed. Hence configurations that differ only in
  :math:`(\eta, \lambda)` see identical noise, which keeps the exact
  :math:`(\eta,\lambda)\to(c\eta,\lambda/c)` equivalence (Lobacheva et al., 2021, Sec. 2) true
  on noisy runs, and a run is reproducible for the same set of seeds.

Explicit noise model
--------------------
:func:`tangent_noise` adds to the gradient

.. math:: n = \frac{\sigma}{\rho}\,P_x\,\xi, \qquad \xi \sim \mathcal N(0, I_d/(d-1)),
          \qquad P_x = I - \frac{x x^\top}{\rho^2},

so :math:`\mathbb E\|n\|^2 = \sigma^2/\rho^2`: ``sigma`` is the RMS *effective* (unit-sphere)
gradient-noise norm. Because :math:`n \perp x` and :math:`n \propto 1/\rho`, the noisy gradient
is still the gradient of an SI function in distribution and the norm recurrence of
:func:`theory.dynamics.next_sq_norm` stays exact. Isotropy makes the model rotation-equivariant
(the eigenbasis fast path of :mod:`simulate.fast_quadratic` may draw it in any basis).
"""
from __future__ import annotations

import numpy as np

__all__ = ["SeedStreams", "tangent_noise"]


class SeedStreams:
    """Per-step random draws for a batch of configurations with (possibly repeated) seeds.

    Parameters
    ----------
    seeds : array_like of int, shape (B,)
        Non-negative seeds of the configurations.
    stream : int
        Distinguishes independent streams of the same seeds (noise, data order).
    """

    def __init__(self, seeds, stream: int = 0):
        seeds = np.atleast_1d(np.asarray(seeds, dtype=np.int64))
        if np.any(seeds < 0):
            raise ValueError("seeds must be non-negative integers")
        self.unique, self.index = np.unique(seeds, return_inverse=True)
        entropy = [int(s) for s in self.unique] + [int(stream), 0x51B2]
        self.rng = np.random.default_rng(np.random.SeedSequence(entropy))
        self._perm = None
        self._pos = 0

    def normal(self, d: int, dtype=np.float64) -> np.ndarray:
        """Standard normal ``(B, d)``; rows of equal seeds are equal."""
        return self.rng.standard_normal((self.unique.size, d), dtype=dtype)[self.index]

    def minibatch(self, n: int, m: int) -> np.ndarray:
        """Indices ``(B, m)`` of the next mini-batch: each distinct seed walks through its own
        random permutation of ``range(n)`` (epochs without replacement, last partial batch
        dropped)."""
        if self._perm is None or self._pos + m > n:
            base = np.tile(np.arange(n), (self.unique.size, 1))
            self._perm, self._pos = self.rng.permuted(base, axis=1), 0
        out = self._perm[:, self._pos:self._pos + m]
        self._pos += m
        return out[self.index]


def tangent_noise(x: np.ndarray, sigma, xi: np.ndarray) -> np.ndarray:
    r"""Noise :math:`(\sigma/\rho) P_x \xi/\sqrt{d-1}` for rows of ``x`` (see module doc).

    Parameters
    ----------
    x : ndarray, shape (B, d)
        Current weights.
    sigma : float or ndarray, shape (B,) or (B, 1)
        Effective noise scale (>= 0).
    xi : ndarray, shape (B, d)
        Standard normal draws (:meth:`SeedStreams.normal`).
    """
    d = x.shape[-1]
    s = np.einsum("bd,bd->b", x, x)[:, None]
    proj = xi - (np.einsum("bd,bd->b", x, xi)[:, None] / s) * x
    scale = np.reshape(np.asarray(sigma, dtype=x.dtype), (-1, 1)) / np.sqrt(s * (d - 1))
    return (scale * proj).astype(x.dtype, copy=False)
