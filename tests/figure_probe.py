"""What a saved matplotlib figure shows, for tests that check plots by content, not by file size.

:func:`probe_savefig` patches ``Figure.savefig`` so that every figure saved while it is active is
summarised (per axes: title, labels, the finite points of each line -- and its y values when short -- and of
each scatter, legend texts)
before it is written. The PNG itself is still written as usual.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def _finite_points(xy) -> int:
    xy = np.asarray(xy, dtype=float).reshape(-1, 2) if np.size(xy) else np.zeros((0, 2))
    return int(np.all(np.isfinite(xy), axis=1).sum())


def _line(ln) -> dict:
    """Label, number of samples, finite points and (for short lines) the y values of a line."""
    x, y = (np.asarray(v, dtype=float).reshape(-1) for v in ln.get_data())
    n = min(x.size, y.size)
    out = {"label": ln.get_label(), "n": int(x.size), "points": _finite_points(np.column_stack([x[:n], y[:n]]))}
    if y.size <= 100:
        out["y"] = y.tolist()
    return out


def summarise(fig: Figure) -> dict:
    """Per-axes summary of ``fig`` (colour bars included as axes without lines)."""
    axes = []
    for ax in fig.axes:
        lines = [_line(ln) for ln in ax.get_lines()]
        scatters = [_finite_points(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets")]
        legend = ax.get_legend()
        axes.append({"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                     "lines": lines, "scatter_points": scatters,
                     "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
                     "texts": [t.get_text() for t in ax.texts]})
    return {"suptitle": fig._suptitle.get_text() if fig._suptitle else "", "axes": axes}


@contextmanager
def probe_savefig():
    """Yield a dict ``{file name: summary}`` filled by every ``savefig`` inside the block."""
    import pytest

    seen: dict = {}
    original = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        seen[Path(str(fname)).name] = summarise(self)
        return original(self, fname, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", savefig)
        yield seen
