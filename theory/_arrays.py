"""Array helpers that accept numpy arrays, python scalars and torch tensors alike."""
from __future__ import annotations

from typing import Any

import numpy as np

try:  # torch is a hard dependency of the toolkit, but keep theory importable without it
    import torch
except ImportError:  # pragma: no cover
    torch = None


def is_torch(x: Any) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def vector_norm(x, axis: int = -1, keepdims: bool = False):
    """Euclidean norm along ``axis`` for numpy arrays or torch tensors."""
    if is_torch(x):
        return torch.linalg.vector_norm(x, dim=axis, keepdim=keepdims)
    return np.linalg.norm(np.asarray(x), axis=axis, keepdims=keepdims)


def as_float_array(name: str, value) -> np.ndarray:
    """``value`` as a float64 numpy array, with a clear error for NaN/inf or non-numbers."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def check_positive(name: str, value, *, allow_zero: bool = False) -> np.ndarray:
    arr = as_float_array(name, value)
    bad = arr < 0 if allow_zero else arr <= 0
    if np.any(bad):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return arr


def check_momentum(momentum) -> np.ndarray:
    arr = as_float_array("momentum", momentum)
    if np.any((arr < 0) | (arr >= 1)):
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
    return arr


def check_decay(eta, lam) -> tuple[np.ndarray, np.ndarray]:
    """Validate (eta, lam) for a WD step: eta > 0, lam >= 0 and eta*lam < 1."""
    eta_a = check_positive("eta", eta)
    lam_a = check_positive("lam", lam, allow_zero=True)
    if np.any(eta_a * lam_a >= 1):
        raise ValueError(f"eta*lam must be < 1 (WD factor 1 - eta*lam > 0), got eta={eta!r}, lam={lam!r}")
    return eta_a, lam_a


def scalar_or_array(x: np.ndarray):
    """Return a python float for 0-d results, the array otherwise."""
    return float(x) if np.ndim(x) == 0 else x
