r"""Measure scale invariance of functions and of parameter groups of torch models.

A function is scale-invariant (SI) when :math:`f(\alpha x) = f(x)` for all :math:`\alpha > 0`.
Differentiating gives the identities checked here (Lobacheva et al., 2021, Sec. 2; Arora et al.,
2019, Lemma 2.4):

1. value: :math:`f(\alpha x) = f(x)`;
2. orthogonality: :math:`\langle\nabla f(x), x\rangle = 0`;
3. gradient scaling: :math:`\nabla f(\alpha x) = \nabla f(x)/\alpha`;
4. Hessian scaling: :math:`\nabla^2 f(\alpha x) = \nabla^2 f(x)/\alpha^2`;
5. Euler's identity for the Hessian: :math:`\nabla^2 f(x)\,x = -\nabla f(x)`.

Each check returns the *measured relative residual*, not a bool. Torch callables are
differentiated with autograd (float64); numpy callables use an analytic ``grad`` when given and
central finite differences otherwise (residuals then carry an :math:`O(h^2)` error).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = [
    "InvarianceReport",
    "check_scale_invariance",
    "check_module_scale_invariance",
    "find_scale_invariant_params",
]

_TINY = 1e-300


@dataclass(frozen=True)
class InvarianceReport:
    """Relative residuals of the five SI identities at one point and one :math:`\\alpha`."""

    alpha: float
    value: float
    orthogonality: float
    grad_scaling: float
    hessian_scaling: float
    euler: float

    @property
    def max_residual(self) -> float:
        return max(self.value, self.orthogonality, self.grad_scaling, self.hessian_scaling, self.euler)

    def is_invariant(self, tol: float = 1e-6) -> bool:
        """True when every residual is below ``tol``."""
        return self.max_residual < tol

    def to_dict(self) -> dict:
        return {**asdict(self), "max_residual": self.max_residual}


def _rel(diff: float, scale: float) -> float:
    return float(diff) / max(float(scale), _TINY)


class _TorchBackend:
    """Values, gradients and Hessian-vector products of a torch callable via autograd."""

    def __init__(self, f: Callable):
        self.f = f

    def _t(self, x: np.ndarray) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.float64, requires_grad=True)

    def value(self, x: np.ndarray) -> float:
        with torch.no_grad():
            return float(self.f(torch.tensor(x, dtype=torch.float64)))

    def grad(self, x: np.ndarray) -> np.ndarray:
        xt = self._t(x)
        (g,) = torch.autograd.grad(self.f(xt), xt)
        return g.detach().numpy()

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        xt = self._t(x)
        (g,) = torch.autograd.grad(self.f(xt), xt, create_graph=True)
        if not g.requires_grad:  # f is linear in x: zero Hessian
            return np.zeros_like(x)
        (hv,) = torch.autograd.grad(g, xt, grad_outputs=torch.tensor(v, dtype=torch.float64),
                                    allow_unused=True)
        return np.zeros_like(x) if hv is None else hv.detach().numpy()


class _NumpyBackend:
    """Values of a numpy callable; analytic gradient if given, else central differences."""

    def __init__(self, f: Callable, grad: Callable | None):
        self.f, self._grad = f, grad

    def value(self, x: np.ndarray) -> float:
        return float(self.f(x))

    def grad(self, x: np.ndarray) -> np.ndarray:
        if self._grad is not None:
            g = np.asarray(self._grad(x), dtype=float)
            if g.shape != x.shape:
                raise ValueError(f"grad returned shape {g.shape}, expected {x.shape}")
            return g
        h = 1e-5 * max(np.linalg.norm(x), 1.0) / np.sqrt(x.size)
        g = np.empty_like(x)
        for i in range(x.size):
            e = np.zeros_like(x)
            e.flat[i] = h
            g.flat[i] = (self.f(x + e) - self.f(x - e)) / (2 * h)
        return g

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        h = 1e-4 * np.linalg.norm(x) / max(np.linalg.norm(v), _TINY)
        return (self.grad(x + h * v) - self.grad(x - h * v)) / (2 * h)


def _is_torch_callable(f: Callable, x: np.ndarray) -> bool:
    try:
        out = f(torch.tensor(x, dtype=torch.float64, requires_grad=True))
    except Exception:
        return False
    return isinstance(out, torch.Tensor) and out.requires_grad


def _validate_point(x, alpha) -> tuple[np.ndarray, float]:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.array(x, dtype=float)
    if x.ndim == 0 or x.size == 0:
        raise ValueError("x must be a non-empty array")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or inf")
    if not np.any(x):
        raise ValueError("x must be non-zero (scale invariance is about rays through 0)")
    a = float(alpha)
    if not np.isfinite(a) or a <= 0:
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    return x, a


def check_scale_invariance(f: Callable, x, alpha: float = 2.0, *, grad: Callable | None = None,
                           seed: int = 0) -> InvarianceReport:
    r"""Measure the five scale-invariance identities of ``f`` at ``x`` for one ``alpha``.

    Parameters
    ----------
    f : callable
        Scalar function of an array. If it accepts a float64 torch tensor and returns a tensor
        attached to the autograd graph, autograd is used; otherwise ``f`` is treated as a numpy
        function.
    x : array_like or torch.Tensor
        Point of evaluation (any shape, finite, non-zero).
    alpha : float
        Scale factor, > 0.
    grad : callable, optional
        Analytic gradient of a numpy ``f`` (finite differences otherwise).
    seed : int
        Seed of the random direction used for the Hessian-vector products.

    Returns
    -------
    InvarianceReport
        Relative residuals: value :math:`|f(\alpha x)-f(x)|/|f(x)|`, orthogonality
        :math:`|\langle g, x\rangle|/(\|g\|\|x\|)`, gradient scaling
        :math:`\|\alpha\nabla f(\alpha x) - \nabla f(x)\|/\|\nabla f(x)\|`, Hessian scaling
        :math:`\|\alpha^2 H(\alpha x)v - H(x)v\|/\|H(x)v\|` for a random ``v``, and Euler
        :math:`\|H(x)x + \nabla f(x)\|/\|\nabla f(x)\|`.
    """
    x, a = _validate_point(x, alpha)
    if _is_torch_callable(f, x):
        be = _TorchBackend(f)
    else:
        be = _NumpyBackend(f, grad)
    f0, fa = be.value(x), be.value(a * x)
    g0, ga = be.grad(x), be.grad(a * x)
    v = np.random.default_rng(seed).standard_normal(x.shape)
    hv0, hva = be.hvp(x, v), be.hvp(a * x, v)
    hx = be.hvp(x, x)
    gn = np.linalg.norm(g0)
    return InvarianceReport(
        alpha=a,
        value=_rel(abs(fa - f0), abs(f0)),
        orthogonality=_rel(abs(np.vdot(g0, x)), gn * np.linalg.norm(x)),
        grad_scaling=_rel(np.linalg.norm(a * ga - g0), gn),
        hessian_scaling=_rel(np.linalg.norm(a**2 * hva - hv0), np.linalg.norm(hv0)),
        euler=_rel(np.linalg.norm(hx + g0), gn),
    )


# --------------------------------------------------------------------------- torch models

def _default_readout(model: torch.nn.Module, inputs: torch.Tensor, seed: int) -> Callable:
    """A fixed random linear functional of the model's output: sensitive to any output change."""
    with torch.no_grad():
        out = model(inputs)
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    return lambda y: (y * w).sum()


def _prepared_copy(model: torch.nn.Module, inputs: torch.Tensor, bn_eps: float | None):
    """Float64 CPU deep copy in train mode; optionally with norm-layer eps shrunk."""
    m = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).train()
    if bn_eps is not None:
        for mod in m.modules():
            if isinstance(mod, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm,
                                torch.nn.LayerNorm)):
                mod.eps = bn_eps
    return m, inputs.detach().to(device="cpu", dtype=torch.float64)


def _group_function(model, names: Sequence[str], inputs, loss_fn):
    """f(vec): the model's scalar output with the parameters ``names`` set from ``vec``."""
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"unknown parameter names: {missing}")
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]

    def f(vec: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(vec, sizes)
        new = {**params, **{n: c.reshape(s) for n, c, s in zip(names, chunks, shapes)}}
        # fresh buffer copies each call, so BN running stats of the copy never drift
        out = torch.func.functional_call(model, {**new, **{k: b.clone() for k, b in buffers.items()}},
                                         (inputs,))
        return loss_fn(out)

    x0 = torch.cat([params[n].detach().reshape(-1) for n in names])
    return f, x0


def check_module_scale_invariance(model: torch.nn.Module, names: Sequence[str], inputs: torch.Tensor,
                                  *, loss_fn: Callable | None = None, alpha: float = 2.0,
                                  bn_eps: float | None = 1e-12, seed: int = 0) -> InvarianceReport:
    r"""The five SI identities for the parameter group ``names`` of ``model`` (jointly scaled).

    The group is flattened into one vector :math:`x` and
    :math:`f(x) = \text{loss\_fn}(\text{model}(\text{inputs}))` is checked with
    :func:`check_scale_invariance` in float64, train mode (batch statistics, as in training), on a
    copy of the model so its state is untouched. ``loss_fn`` defaults to a fixed random linear
    functional of the output. ``bn_eps`` replaces the normalisation layers' ``eps`` during the
    check (BN is exactly SI only for ``eps = 0``; ``None`` keeps the model's own).
    """
    if not names:
        raise ValueError("names must list at least one parameter")
    m, xin = _prepared_copy(model, inputs, bn_eps)
    loss_fn = loss_fn or _default_readout(m, xin, seed)
    f, x0 = _group_function(m, list(names), xin, loss_fn)
    return check_scale_invariance(f, x0, alpha, seed=seed)


def find_scale_invariant_params(model: torch.nn.Module, inputs: torch.Tensor, *,
                                loss_fn: Callable | None = None, alphas: Sequence[float] = (0.5, 3.0),
                                rtol: float = 1e-6, only_trainable: bool = True,
                                bn_eps: float | None = 1e-12, seed: int = 0) -> list[str]:
    r"""Names of parameters whose individual rescaling leaves the model's output unchanged.

    Detects scale invariance by *testing*, not by parameter names (the authors' code selected by
    name and missed the shortcut convolutions, see ``docs/paper_setup.md``): for each parameter ``p`` and
    each :math:`\alpha` in ``alphas``, the output with :math:`p \to \alpha p` (train-mode BN, float64,
    normalisation ``eps`` set to ``bn_eps``) must match the original to relative ``rtol``.
    A non-SI parameter changes the output by :math:`O(|\alpha - 1|)`, so the split is sharp.

    Parameters
    ----------
    model : torch.nn.Module
        Any model; it is deep-copied, never modified.
    inputs : torch.Tensor
        A batch of inputs (a handful of samples suffice; BN needs more than one).
    loss_fn : callable, optional
        Scalar readout of the output; defaults to a fixed random linear functional.
    alphas : sequence of float
        Scale factors to test, each > 0 and != 1.

    Returns
    -------
    list of str
        Parameter names in ``model.named_parameters()`` order.
    """
    if not alphas or any((not np.isfinite(a)) or a <= 0 or a == 1 for a in alphas):
        raise ValueError(f"alphas must be finite, > 0 and != 1, got {alphas!r}")
    m, xin = _prepared_copy(model, inputs, bn_eps)
    readout = loss_fn or _default_readout(m, xin, seed)
    found = []
    with torch.no_grad():
        base = readout(m(xin)).item()
        for name, p in m.named_parameters():
            if only_trainable and not model.get_parameter(name).requires_grad:
                continue
            if not p.abs().sum() > 0:
                continue  # a zero tensor is trivially unchanged by scaling: not evidence
            original = p.detach().clone()
            ok = True
            for a in alphas:
                p.mul_(a)
                val = readout(m(xin)).item()
                p.copy_(original)
                if not abs(val - base) <= rtol * max(abs(base), 1e-12):
                    ok = False
                    break
            if ok:
                found.append(name)
    return found
