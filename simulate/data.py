"""Synthetic classification data for the toy objectives (no downloads, seconds to make).

:func:`make_blobs` draws Gaussian clusters and keeps only points that the nearest-centre rule
classifies correctly, so with one cluster per class the data are *linearly separable* (the
nearest-centre rule is a linear classifier) and with several clusters per class they are
separable by a piecewise-linear rule (a small MLP can fit them, a linear model cannot).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset", "make_blobs"]


@dataclass(frozen=True)
class Dataset:
    """Features ``X`` of shape ``(n, p)`` (float64) and integer labels ``y`` of shape ``(n,)``."""

    X: np.ndarray
    y: np.ndarray
    n_classes: int

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def one_hot(self) -> np.ndarray:
        """Labels as a ``(n, n_classes)`` float64 one-hot matrix."""
        return np.eye(self.n_classes)[self.y]


def make_blobs(n_samples: int = 256, n_features: int = 8, n_classes: int = 3, *,
               clusters_per_class: int = 1, separation: float = 3.0, seed: int = 0) -> Dataset:
    r"""Gaussian clusters :math:`c_j + \mathcal N(0, I_p)` with centres :math:`c_j \sim
    \mathcal N(0, s^2 I_p)`, ``s = separation``; points closer to another class's centre are
    dropped (so the returned ``n`` may be slightly below ``n_samples``).

    Parameters
    ----------
    n_samples, n_features, n_classes : int
        Requested size, input dimension ``p`` and number of classes.
    clusters_per_class : int
        1 gives linearly separable data; more gives data that need a non-linear model.
    separation : float
        Scale of the cluster centres in units of the within-cluster standard deviation.
    seed : int
        Seed of ``np.random.default_rng``.
    """
    if n_classes < 2 or n_features < 1 or clusters_per_class < 1 or n_samples < 2 * n_classes:
        raise ValueError("make_blobs needs n_classes >= 2, n_features >= 1, clusters_per_class >= 1 "
                         "and n_samples >= 2 * n_classes")
    rng = np.random.default_rng(seed)
    n_clusters = n_classes * clusters_per_class
    centres = separation * rng.standard_normal((n_clusters, n_features))
    cluster_class = np.arange(n_clusters) % n_classes
    which = rng.integers(0, n_clusters, size=n_samples)
    X = centres[which] + rng.standard_normal((n_samples, n_features))
    nearest = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    keep = cluster_class[nearest] == cluster_class[which]
    X, y = X[keep], cluster_class[which][keep]
    if np.unique(y).size < n_classes:
        raise ValueError("make_blobs: a class ended up empty; increase n_samples or separation")
    return Dataset(X=X, y=y.astype(np.int64), n_classes=n_classes)
