r"""Toy scale-invariant (SI) objectives with a common vectorised interface.

Every objective works on a *batch of configurations*: ``x`` has shape ``(B, d)`` (one row per
configuration, numpy, float32 or float64) and :meth:`Objective.loss_and_grad` returns the
losses ``(B,)`` and gradients ``(B, d)`` in the dtype of ``x``. Every loss is exactly SI,
:math:`f(\alpha x) = f(x)` for :math:`\alpha > 0` (batch norm without :math:`\epsilon`), so
:math:`\langle\nabla f(x), x\rangle = 0` and the norm recurrence of
:func:`theory.dynamics.next_sq_norm` is exact (Lobacheva et al., 2021, Sec. 2).

* :class:`NormalizedQuadratic` -- :math:`f(x) = \tfrac12 u^\top A u`, :math:`u = x/\|x\|`,
  analytic gradient; minimum :math:`a_{\min}/2` at the bottom eigenvector, sphere sharpness
  there :math:`a_{\max} - a_{\min}`.
* :class:`BNLinearClassifier` -- linear layer, batch norm over the batch (per class output),
  fixed logit scale, cross-entropy; analytic gradient (BN backward).
* :class:`BNMLP` -- two Linear -> BN -> ReLU blocks and a fixed (non-trained) head, as in the
  paper's fully scale-invariant networks; gradient by autograd.

Data objectives accept ``batch``, an integer array ``(B, m)`` of sample indices (one mini-batch
per configuration), for SGD noise from the data; ``batch=None`` is the full batch (GD).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from simulate.data import Dataset, make_blobs
from theory.stability import sphere_sharpness as _sphere_sharpness

__all__ = ["Objective", "NormalizedQuadratic", "BNLinearClassifier", "BNMLP", "make_objective",
           "OBJECTIVES"]


@contextmanager
def single_thread_torch():
    """Run torch on one thread: the toy tensors are tiny, and on a shared 2-core machine torch's
    thread pool makes each autograd call ~100x slower (measured 96 ms vs 0.6 ms per step)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class Objective:
    """Base class: SI loss on rows of ``x`` of shape ``(B, dim)``.

    Subclasses implement :meth:`torch_loss` (float64 autograd reference) and may override
    :meth:`loss_and_grad` with an analytic numpy gradient.
    """

    name = "objective"
    dim: int = 0
    batch_size: int | None = None
    n_samples: int | None = None

    def torch_loss(self, x: torch.Tensor, batch=None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def loss_and_grad(self, x: np.ndarray, batch=None) -> tuple[np.ndarray, np.ndarray]:
        """Losses ``(B,)`` and gradients ``(B, d)``; default by autograd of :meth:`torch_loss`."""
        xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(True)
        bt = None if batch is None else torch.from_numpy(np.asarray(batch))
        with single_thread_torch():
            loss = self.torch_loss(xt, bt)
            (grad,) = torch.autograd.grad(loss.sum(), xt)
        return loss.detach().numpy(), grad.numpy()

    def loss(self, x: np.ndarray, batch=None) -> np.ndarray:
        """Losses only, ``(B,)``."""
        return self.loss_and_grad(x, batch)[0]

    def init(self, seeds, norm: float = 1.0) -> np.ndarray:
        r"""Initial weights ``(B, d)``: row ``i`` is a standard normal vector drawn with
        ``np.random.default_rng(seeds[i])`` and rescaled to Euclidean norm ``norm``."""
        seeds = np.atleast_1d(np.asarray(seeds, dtype=np.int64))
        x = np.stack([np.random.default_rng(int(s)).standard_normal(self.dim) for s in seeds])
        return x * (norm / np.linalg.norm(x, axis=1, keepdims=True))

    def hessian(self, x) -> np.ndarray:
        """Euclidean Hessian ``(d, d)`` of the full-batch loss at one point ``x`` (autograd)."""
        x1 = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(1, -1))
        with single_thread_torch():
            return torch.autograd.functional.hessian(lambda v: self.torch_loss(v)[0], x1)[0, :, 0].numpy()

    def sphere_sharpness(self, x=None) -> float:
        r"""Top eigenvalue of the Riemannian Hessian on the unit sphere at ``x``
        (:func:`theory.stability.sphere_sharpness`); destabilisation when
        :math:`\eta h/\rho^2 > 2(1+\mu)`."""
        if x is None:
            raise ValueError(f"{self.name}: the sharpness at the minimum is not known in closed "
                             "form; pass a point x")
        return _sphere_sharpness(self.hessian(x), np.asarray(x, dtype=np.float64).reshape(-1))

    def describe(self) -> dict:
        """Parameters of the objective as a JSON-friendly dict."""
        return {"name": self.name, "dim": self.dim, "batch_size": self.batch_size}


class NormalizedQuadratic(Objective):
    r"""Normalised quadratic :math:`f(x) = \tfrac12 u^\top A u`, :math:`u = x/\|x\|`.

    :math:`A = Q\,\mathrm{diag}(a)\,Q^\top` with a chosen spectrum ``a`` (ascending) and a random
    orthogonal ``Q`` (or ``Q = I`` with ``rotate=False``). The gradient is

    .. math:: \nabla f(x) = \frac{A u - (u^\top A u)\,u}{\rho}, \qquad \rho = \|x\|,

    computed with :math:`A - a_{\min} I` (same gradient, no cancellation near the minimum).
    The minimum value is :math:`a_{\min}/2`; there the Riemannian Hessian has eigenvalues
    :math:`a_i - a_{\min}`, so the sphere sharpness is :math:`h = a_{\max} - a_{\min}` and GD
    destabilises when :math:`\rho^2 < \eta h / 2` (Lobacheva et al., 2021, Sec. 4).

    Parameters
    ----------
    dim : int
        Dimension ``d``.
    eigenvalues : array_like, optional
        The spectrum; overrides ``spectrum``, ``a_min``, ``a_max``.
    spectrum : {'linear', 'geometric'}
        Evenly or geometrically spaced eigenvalues from ``a_min`` to ``a_max``.
    rotate : bool
        Random eigenbasis (``True``) or the standard basis.
    seed : int
        Seed of the rotation.
    """

    name = "quadratic"

    def __init__(self, dim: int = 100, *, eigenvalues=None, spectrum: str = "linear",
                 a_min: float = 0.0, a_max: float = 1.0, rotate: bool = True, seed: int = 0):
        if eigenvalues is None:
            if dim < 2:
                raise ValueError("dim must be >= 2")
            if spectrum == "linear":
                eigenvalues = np.linspace(a_min, a_max, dim)
            elif spectrum == "geometric":
                if a_min <= 0:
                    raise ValueError("a geometric spectrum needs a_min > 0")
                eigenvalues = np.geomspace(a_min, a_max, dim)
            else:
                raise ValueError(f"spectrum must be 'linear' or 'geometric', got {spectrum!r}")
        a = np.sort(np.asarray(eigenvalues, dtype=np.float64).reshape(-1))
        if a.size < 2 or not np.all(np.isfinite(a)) or a[0] < 0:
            raise ValueError("eigenvalues must be >= 2 finite non-negative numbers")
        self.dim = int(a.size)
        self.eigenvalues = a
        self.shifted = a - a[0]
        self.rotation = None
        if rotate:
            q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((self.dim, self.dim)))
            self.rotation = q * np.sign(np.diag(r))
        self._shifted_matrix = {}
        self.seed, self.spectrum = seed, spectrum

    @property
    def min_loss(self) -> float:
        return float(self.eigenvalues[0] / 2)

    def _apply_shifted(self, x: np.ndarray) -> np.ndarray:
        """:math:`(A - a_{\\min}I)x` for rows of ``x``."""
        if self.rotation is None:
            return x * self.shifted.astype(x.dtype)
        m = self._shifted_matrix.get(x.dtype)
        if m is None:
            m = ((self.rotation * self.shifted) @ self.rotation.T).astype(x.dtype)
            self._shifted_matrix[x.dtype] = m
        return x @ m

    def loss_and_grad(self, x, batch=None):
        x = np.asarray(x)
        s = np.einsum("bd,bd->b", x, x)
        ax = self._apply_shifted(x)
        q = np.einsum("bd,bd->b", x, ax)
        loss = q / (2 * s) + self.min_loss
        grad = (ax - (q / s)[:, None] * x) / s[:, None]
        return loss.astype(x.dtype), grad

    def torch_loss(self, x, batch=None):
        u = x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        z = u if self.rotation is None else u @ torch.as_tensor(self.rotation, dtype=x.dtype)
        return 0.5 * (z * z * torch.as_tensor(self.eigenvalues, dtype=x.dtype)).sum(-1)

    def sphere_sharpness(self, x=None) -> float:
        """:math:`a_{\\max} - a_{\\min}` at the minimum (``x=None``), else the Hessian value."""
        if x is None:
            return float(self.eigenvalues[-1] - self.eigenvalues[0])
        return super().sphere_sharpness(x)

    def to_eigenbasis(self, x: np.ndarray) -> np.ndarray:
        """Coordinates :math:`z = Q^\\top x` (rows)."""
        return np.asarray(x) if self.rotation is None else np.asarray(x) @ self.rotation

    def from_eigenbasis(self, z: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_eigenbasis`."""
        return np.asarray(z) if self.rotation is None else np.asarray(z) @ self.rotation.T

    def diagonal(self) -> "NormalizedQuadratic":
        """The same objective in its eigenbasis (``Q = I``): O(d) gradients."""
        return NormalizedQuadratic(eigenvalues=self.eigenvalues, rotate=False)

    def describe(self) -> dict:
        a = self.eigenvalues
        return {**super().describe(), "a_min": float(a[0]), "a_max": float(a[-1]),
                "spectrum": self.spectrum, "rotate": self.rotation is not None, "seed": self.seed,
                "sphere_sharpness_at_min": self.sphere_sharpness()}


class _DataObjective(Objective):
    """Shared data handling: full batch or per-configuration index mini-batches."""

    def __init__(self, data: Dataset, batch_size: int | None):
        if batch_size is not None and not 2 <= batch_size <= data.n_samples:
            raise ValueError(f"batch_size must be in [2, {data.n_samples}] (the data set has {data.n_samples} "
                             f"samples; None: full batch), got {batch_size}")
        self.data, self.batch_size, self.n_samples = data, batch_size, data.n_samples
        self._y1h = data.one_hot()

    def _inputs(self, batch, xp=np):
        """Features ``(n, p)`` or ``(B, m, p)`` and one-hot labels for ``batch``."""
        X, Y = self.data.X, self._y1h
        if xp is torch:
            X, Y = torch.as_tensor(X), torch.as_tensor(Y)
        if batch is None:
            return X, Y
        return X[batch], Y[batch]

    def describe(self) -> dict:
        d = self.data
        return {**super().describe(), "n_samples": d.n_samples, "n_features": d.n_features,
                "n_classes": d.n_classes}


def _bn(z, xp=np):
    """Batch norm over axis 1 without affine parameters or epsilon (exactly SI)."""
    c = z - z.mean(1, keepdims=True) if xp is np else z - z.mean(1, keepdim=True)
    var = (c * c).mean(1, keepdims=True) if xp is np else (c * c).mean(1, keepdim=True)
    sd = xp.sqrt(var)
    return c / sd, sd


def _cross_entropy_torch(logits, y1h):
    return (torch.logsumexp(logits, -1) - (logits * y1h).sum(-1)).mean(-1)


class BNLinearClassifier(_DataObjective):
    r"""Linear classifier with batch norm: logits :math:`= \gamma\,\mathrm{BN}(X W^\top)`.

    ``x`` holds :math:`W` (``n_classes x n_features``) row-major. BN normalises each class
    output over the batch (no affine, no :math:`\epsilon`), so the loss is SI in each row of
    :math:`W` and hence in :math:`W`; the fixed scale :math:`\gamma` (``logit_scale``) plays
    the role of the paper's fixed last layer. Cross-entropy on :func:`make_blobs` data (linearly
    separable) has a positive minimum because BN bounds the logits.
    """

    name = "classifier"

    def __init__(self, n_classes: int = 3, n_features: int = 8, n_samples: int = 256, *,
                 batch_size: int | None = None, logit_scale: float = 4.0, separation: float = 3.0,
                 seed: int = 0, data: Dataset | None = None):
        data = data or make_blobs(n_samples, n_features, n_classes, separation=separation, seed=seed)
        super().__init__(data, batch_size)
        self.k, self.p, self.gamma = data.n_classes, data.n_features, float(logit_scale)
        self.dim = self.k * self.p

    def loss_and_grad(self, x, batch=None):
        x = np.asarray(x)
        X, Y = self._inputs(batch)
        X, Y = X.astype(x.dtype), Y.astype(x.dtype)
        W = x.reshape(x.shape[0], self.k, self.p)
        zh, sd = _bn(X @ W.transpose(0, 2, 1))              # (B, m, k)
        logits = self.gamma * zh
        lmax = logits.max(-1, keepdims=True)
        ex = np.exp(logits - lmax)
        tot = ex.sum(-1, keepdims=True)
        loss = (np.log(tot) + lmax - (logits * Y).sum(-1, keepdims=True))[..., 0].mean(1)
        m = zh.shape[1]
        dzh = self.gamma * (ex / tot - Y) / m                 # d loss / d zhat
        dz = (dzh - dzh.mean(1, keepdims=True) - zh * (dzh * zh).mean(1, keepdims=True)) / sd
        dW = dz.transpose(0, 2, 1) @ X                        # (B, k, p)
        return loss, dW.reshape(x.shape)

    def torch_loss(self, x, batch=None):
        X, Y = self._inputs(batch, torch)
        W = x.reshape(x.shape[0], self.k, self.p)
        zh, _ = _bn(X.to(x.dtype) @ W.transpose(1, 2), torch)
        return _cross_entropy_torch(self.gamma * zh, Y.to(x.dtype))

    def describe(self) -> dict:
        return {**super().describe(), "logit_scale": self.gamma}


class BNMLP(_DataObjective):
    r"""Small fully scale-invariant MLP: (Linear -> BN -> ReLU) x 2 -> fixed head.

    ``x`` concatenates :math:`W_1` (``hidden x n_features``) and :math:`W_2`
    (``hidden x hidden``); both are SI (BN without affine/epsilon after each). The head
    (``n_classes x hidden``) is random with Frobenius norm ``head_norm`` and is not trained,
    like the paper's fully SI setting where the last layer is fixed (Lobacheva et al., 2021,
    Sec. 5). Gradients by autograd (float64 or float32, as ``x``).
    """

    name = "mlp"

    def __init__(self, hidden: int = 16, n_features: int = 8, n_classes: int = 3,
                 n_samples: int = 256, *, batch_size: int | None = None, head_norm: float = 5.0,
                 clusters_per_class: int = 2, separation: float = 3.0, seed: int = 0,
                 data: Dataset | None = None):
        data = data or make_blobs(n_samples, n_features, n_classes, separation=separation,
                                  clusters_per_class=clusters_per_class, seed=seed)
        super().__init__(data, batch_size)
        self.h, self.p, self.k = int(hidden), data.n_features, data.n_classes
        self.dim = self.h * self.p + self.h * self.h
        head = np.random.default_rng(seed + 1).standard_normal((self.k, self.h))
        self.head = head * (head_norm / np.linalg.norm(head))
        self.head_norm = float(head_norm)

    def torch_loss(self, x, batch=None):
        X, Y = self._inputs(batch, torch)
        n1 = self.h * self.p
        w1 = x[:, :n1].reshape(-1, self.h, self.p)
        w2 = x[:, n1:].reshape(-1, self.h, self.h)
        h1 = torch.relu(_bn(X.to(x.dtype) @ w1.transpose(1, 2), torch)[0])
        h2 = torch.relu(_bn(h1 @ w2.transpose(1, 2), torch)[0])
        return _cross_entropy_torch(h2 @ torch.as_tensor(self.head, dtype=x.dtype).T, Y.to(x.dtype))

    def describe(self) -> dict:
        return {**super().describe(), "hidden": self.h, "head_norm": self.head_norm}


OBJECTIVES = {"quadratic": NormalizedQuadratic, "classifier": BNLinearClassifier, "mlp": BNMLP}


def make_objective(name: str, **kwargs) -> Objective:
    """Build an objective by name (``'quadratic'``, ``'classifier'``, ``'mlp'``)."""
    try:
        cls = OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose from {sorted(OBJECTIVES)}") from None
    return cls(**kwargs)
