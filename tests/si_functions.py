"""Scale-invariant (and deliberately non-invariant) test functions, independent of the package.

Each factory returns an object with ``dim``, ``value(x)`` and ``grad(x)`` on float64 numpy vectors
(and ``torch_f`` for autograd-based checks). Gradients come from analytic formulas or autograd,
never from the code under test.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass
class ProbeFunction:
    name: str
    dim: int
    torch_f: Callable[[torch.Tensor], torch.Tensor]
    scale_invariant: bool

    def value(self, x: np.ndarray) -> float:
        with torch.no_grad():
            return float(self.torch_f(torch.as_tensor(x, dtype=torch.float64)))

    def grad(self, x: np.ndarray) -> np.ndarray:
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)   # tiny tensors: a thread pool only adds overhead
        try:
            (g,) = torch.autograd.grad(self.torch_f(xt), xt)
        finally:
            torch.set_num_threads(threads)
        return g.numpy()

    def __repr__(self):  # readable hypothesis/pytest ids
        return self.name


def spd_matrix(d: int, rng: np.random.Generator, lo: float = 0.1, hi: float = 10.0) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * np.linspace(lo, hi, d)) @ q.T


def normalised_quadratic(d: int, seed: int = 0) -> ProbeFunction:
    """f(x) = 1/2 u^T A u with u = x/|x|."""
    A = torch.tensor(spd_matrix(d, np.random.default_rng(seed)))
    def f(x):
        u = x / torch.linalg.vector_norm(x)
        return 0.5 * u @ A @ u
    return ProbeFunction(f"quadratic{d}", d, f, True)


def quadratic_grad_numpy(A: np.ndarray):
    """Analytic gradient of 1/2 x^T A x / x^T x: (A u - (u^T A u) u) / |x|."""
    def grad(x):
        r = np.linalg.norm(x)
        u = x / r
        Au = A @ u
        return (Au - (u @ Au) * u) / r
    return grad


def _batchnorm(z: torch.Tensor) -> torch.Tensor:
    """Batch normalisation with batch statistics and eps = 0 (exactly scale-invariant)."""
    z = z - z.mean(0)
    return z / torch.sqrt((z**2).mean(0))


def bn_linear(n_in: int = 5, n_out: int = 3, batch: int = 16, seed: int = 0,
              normalise: bool = True) -> ProbeFunction:
    """Loss of BN(X W^T) against fixed targets, W flattened; normalise=False removes BN."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(batch, n_in, generator=g, dtype=torch.float64)
    T = torch.randn(batch, n_out, generator=g, dtype=torch.float64)
    def f(w):
        z = X @ w.reshape(n_out, n_in).T
        z = _batchnorm(z) if normalise else z
        return ((torch.tanh(z) - T) ** 2).mean()
    name = "bn_linear" if normalise else "plain_linear"
    return ProbeFunction(name, n_in * n_out, f, normalise)


def bn_mlp(n_in: int = 4, hidden: int = 6, batch: int = 12, seed: int = 0) -> ProbeFunction:
    """Two BN layers; x = both hidden weight matrices (the whole group is SI, scaled jointly)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(batch, n_in, generator=g, dtype=torch.float64)
    V = torch.randn(hidden, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (batch,), generator=g)
    n1 = hidden * n_in
    def f(w):
        h = torch.relu(_batchnorm(X @ w[:n1].reshape(hidden, n_in).T))
        h = torch.relu(_batchnorm(h @ w[n1:].reshape(hidden, hidden).T))
        return torch.nn.functional.cross_entropy(h @ V, y)
    return ProbeFunction("bn_mlp", n1 + hidden * hidden, f, True)


SI_FUNCTIONS = [normalised_quadratic(6, seed=1), bn_linear(), bn_mlp()]
