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


def _show(value) -> str:
    """Short description of a possibly large input for error messages."""
    arr = np.asarray(value) if not hasattr(value, "detach") else value.detach().cpu().numpy()
    if arr.size <= 4:
        return repr(arr.tolist() if arr.ndim else arr.item())
    return f"array of shape {arr.shape}"


def _first_bad(arr: np.ndarray, bad: np.ndarray) -> str:
    if arr.size <= 1:
        return repr(arr.item())
    idx = tuple(int(i) for i in np.argwhere(np.broadcast_to(bad, arr.shape))[0])
    return f"{float(arr[idx])!r} at index {idx} of an array of shape {arr.shape}"


def as_float_array(name: str, value) -> np.ndarray:
    """``value`` as a float64 numpy array, with a clear error for NaN/inf or non-numbers."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {_show(value)}") from exc
    bad = ~np.isfinite(arr)
    if np.any(bad):
        raise ValueError(f"{name} must be finite, got {_first_bad(arr, bad)}")
    return arr


def check_positive(name: str, value, *, allow_zero: bool = False) -> np.ndarray:
    arr = as_float_array(name, value)
    bad = arr < 0 if allow_zero else arr <= 0
    if np.any(bad):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {_first_bad(arr, bad)}")
    return arr


def check_momentum(momentum) -> np.ndarray:
    arr = as_float_array("momentum", momentum)
    bad = (arr < 0) | (arr >= 1)
    if np.any(bad):
        raise ValueError(f"momentum must lie in [0, 1), got {_first_bad(arr, bad)}")
    return arr


def check_decay(eta, lam) -> tuple[np.ndarray, np.ndarray]:
    """Validate (eta, lam) for a WD step: eta > 0, lam >= 0 and eta*lam < 1."""
    eta_a = check_positive("eta", eta)
    lam_a = check_positive("lam", lam, allow_zero=True)
    prod = eta_a * lam_a
    bad = prod >= 1
    if np.any(bad):
        raise ValueError("eta*lam must be < 1 (WD factor 1 - eta*lam > 0), got eta*lam = "
                         f"{_first_bad(np.asarray(prod), bad)}")
    return eta_a, lam_a


def scalar_or_array(x: np.ndarray):
    """Return a python float for 0-d results, the array otherwise."""
    return float(x) if np.ndim(x) == 0 else x
