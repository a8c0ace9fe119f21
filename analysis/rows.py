"""``RowTable``: a run's records as compact rows of floats, in memory or spilled to a file.

The store behind every growing series of the toolkit: :class:`nets.SIMonitor`'s tables of
records and the online detector's series (:class:`analysis.online.StreamingPeriodDetector`).

Rows of ``width`` floats are kept in one flat ``array('d')`` (8 bytes a value; a list of Python
floats takes ~4x that and a list object per row), appended in O(1) and read as a numpy array in one
copy. With ``spill`` (a file path) every ``chunk`` rows are appended to that file as raw float64 and
dropped from memory, so a table's memory stays flat however long the run: what is read back
(:meth:`RowTable.array`) is the file plus the rows not yet spilled.
"""
from __future__ import annotations

from array import array
from pathlib import Path

import numpy as np

__all__ = ["RowTable"]


class RowTable:
    """Behaves as a list of rows where the recorder's users need it: ``len``, ``t[i]`` and ``t[-1]``
    (a row as a list), slices, iteration, truth value; :meth:`array` for all rows at once."""

    def __init__(self, width: int, rows=(), *, spill: str | Path | None = None, chunk: int = 4096):
        self.width = int(width)
        self._data = array("d")
        self._spill = Path(spill) if spill is not None and self.width else None
        self._chunk, self._on_disk = max(int(chunk), 1), 0
        if self._spill is not None:
            self._spill.parent.mkdir(parents=True, exist_ok=True)
            self._spill.write_bytes(b"")                   # a new table starts a new file
        for row in rows:
            self.append(row)

    def append(self, row) -> None:
        if len(row) != self.width:
            raise ValueError(f"a row of {len(row)} values in a table of width {self.width}")
        self._data.extend(float(v) for v in row)
        if self._spill is not None and len(self._data) >= self._chunk * self.width:
            with open(self._spill, "ab") as fh:
                self._data.tofile(fh)
            self._on_disk += len(self._data) // self.width
            self._data = array("d")

    def __len__(self) -> int:
        return self._on_disk + (len(self._data) // self.width if self.width else 0)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} of a table of {n} rows")
        i %= n
        if i >= self._on_disk:
            j = i - self._on_disk
            return self._data[j * self.width:(j + 1) * self.width].tolist()
        with open(self._spill, "rb") as fh:                 # a spilled row
            fh.seek(i * self.width * 8)
            return np.fromfile(fh, dtype=np.float64, count=self.width).tolist()

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def in_memory(self) -> int:
        """Rows held in memory (with ``spill``: fewer than ``chunk``; the rest are in the file)."""
        return len(self) - self._on_disk

    def __bool__(self) -> bool:
        return len(self) > 0

    def array(self) -> np.ndarray:
        """The rows as an ``n x width`` float64 array (a copy: safe to keep while rows are added)."""
        if not self.width:
            return np.zeros((len(self), 0))
        memory = np.frombuffer(self._data, dtype=np.float64).reshape(-1, self.width)
        if not self._on_disk:
            return memory.copy()
        out = np.empty((len(self), self.width))
        with open(self._spill, "rb") as fh:                 # the file straight into its rows: one copy
            if fh.readinto(memoryview(out[:self._on_disk]).cast("B")) != self._on_disk * self.width * 8:
                raise OSError(f"{self._spill}: shorter than the {self._on_disk} rows written to it")
        out[self._on_disk:] = memory
        return out

    def tolist(self) -> list[list[float]]:
        return self.array().tolist()
