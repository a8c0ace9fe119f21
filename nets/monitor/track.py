r"""The theory's values at every record, computed as the record is made.

For each record :class:`EquilibriumTrack` keeps what the optimizer did to each parameter group
holding SI tensors (its LR and WD, and the equilibrium angular update :math:`\Delta\theta^*` of
:func:`nets.monitor.theory.equilibrium`) and the equilibrium series of the SI group as a whole:

* ``eq_angular_update`` -- :math:`\Delta\theta^*` of the group (Lobacheva et al., NeurIPS 2021;
  Wan et al., 2021; Kosson et al., 2024 for AdamW), which needs no gradient;
* ``eq_si_norm``, ``eq_eff_lr`` -- :math:`\rho^*` and :math:`\tilde\eta^*`
  (:class:`nets.monitor.theory.EquilibriumLaw`, made once per change of the hyper-parameters and
  scaled to each record's gradient) for the RMS of the effective gradient norm
  :math:`\rho\|\nabla f\|` over the last ``width`` records (10: the gradient is noisy, the
  equilibrium it sets is not).

The group's values are NaN at records where its parameter groups had different hyper-parameters
(no single equilibrium). Kept in :class:`analysis.rows.RowTable` s (spilled to a file beside the
monitor's other tables when it has an ``out`` folder), so :meth:`nets.SIMonitor.close` reads them
instead of recomputing them and the monitor's memory does not grow with the run.
"""
from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import numpy as np

from analysis.rows import RowTable
from nets.monitor.theory import Hyper, equilibrium, equilibrium_law

__all__ = ["EquilibriumTrack", "SERIES_COLUMNS", "same_rule"]

#: the equilibrium series of the SI group, one value per record (columns of metrics.csv)
SERIES_COLUMNS = ("eq_si_norm", "eq_eff_lr", "eq_angular_update")
_PER_GROUP = ("lr", "wd", "eq_angle")


def same_rule(hypers: list[Hyper]) -> bool:
    """Whether parameter groups with these Hyper give their SI tensors one update rule (one equilibrium)."""
    return len({(h.kind, h.lr, h.wd, h.momentum, h.nesterov, h.decoupled) for h in hypers}) == 1


class EquilibriumTrack:
    """Per-record hyper-parameters and equilibrium values (module docstring).

    Parameters
    ----------
    n_groups : int
        Parameter groups holding SI tensors.
    first : int
        The group whose theory is the SI group's (the group of the first SI tensor).
    numel : int
        Elements of all SI tensors (AdamW's equilibrium norm needs it).
    spill_dir : path, optional
        Keep the rows in ``spill_dir/hyper.f64`` and ``spill_dir/equilibrium.f64``.
    width : int
        Records in the trailing RMS of the effective gradient norm.
    """

    def __init__(self, n_groups: int, numel: int, first: int = 0, spill_dir=None, width: int = 10):
        self.n_groups, self.numel, self.first, self.spill_dir = int(n_groups), int(numel), int(first), spill_dir
        self._g2 = deque(maxlen=int(width))
        self._last: tuple | None = None      # the previous record's Hyper, their angles and the first's law
        self.hypers: list[Hyper] | None = None                         # those of the latest record
        self.hyper = self._table("hyper", 3 * self.n_groups)
        self.series = self._table("equilibrium", len(SERIES_COLUMNS))

    def _table(self, name: str, width: int, rows=()) -> RowTable:
        spill = None if self.spill_dir is None else Path(self.spill_dir) / f"{name}.f64"
        return RowTable(width, rows, spill=spill)

    def __len__(self) -> int:
        return len(self.series)

    def add(self, hypers: list[Hyper], eff_grad_norm: float) -> tuple[float, float, float]:
        """Record the Hyper of each group at one record and the SI group's effective gradient norm;
        returns ``(eq_si_norm, eq_eff_lr, eq_angular_update)`` (the ``first`` group's theory)."""
        if len(hypers) != self.n_groups:
            raise ValueError(f"{len(hypers)} Hyper for {self.n_groups} parameter groups")
        if self._last is None or self._last[0] != hypers:              # the formulas once per change
            self._last = (list(hypers), [equilibrium(h, math.nan, 1)[0]["angular_update"] for h in hypers],
                          equilibrium_law(hypers[self.first], self.numel))
        self.hypers, angles, law = self._last
        self.hyper.append([v for h, a in zip(hypers, angles) for v in (h.lr, h.wd, a)])
        self._g2.append(eff_grad_norm ** 2 if math.isfinite(eff_grad_norm) else 0.0)
        norm = eff = angle = math.nan
        if same_rule(hypers):
            angle = angles[self.first]
            norm, eff = law.at(math.sqrt(sum(self._g2) / len(self._g2)))
        row = (norm, eff, angle)
        self.series.append(row)
        return row

    def arrays(self) -> dict:
        """``lr``, ``wd``, ``eq_angle`` (each ``n_records x n_groups``) and the
        :data:`SERIES_COLUMNS` (each of length ``n_records``)."""
        h = self.hyper.array().reshape(-1, self.n_groups, 3)
        s = self.series.array()
        return {**{k: h[:, :, i] for i, k in enumerate(_PER_GROUP)},
                **{k: s[:, i] for i, k in enumerate(SERIES_COLUMNS)}}

    def state_dict(self) -> dict:
        return {"hyper": self.hyper.tolist(), "series": self.series.tolist(), "g2": list(self._g2),
                "hypers": None if self.hypers is None else [h.to_dict() for h in self.hypers]}

    def load_state_dict(self, state: dict) -> None:
        self.hyper = self._table("hyper", 3 * self.n_groups, state["hyper"])
        self.series = self._table("equilibrium", len(SERIES_COLUMNS), state["series"])
        self._g2.clear()
        self._g2.extend(state["g2"])
        self.hypers = None if state["hypers"] is None else [Hyper(**d) for d in state["hypers"]]
        self._last = None

    def replay(self, hyper_log: list, eff_grad_norms: np.ndarray) -> None:
        """Rebuild the track of a checkpoint from before it existed: ``hyper_log`` holds
        ``(first record, [Hyper of each group])`` at each change, ``eff_grad_norms`` every record's."""
        starts = [int(i) for i, _ in hyper_log] + [len(eff_grad_norms)]
        for (_, hs), end, begin in zip(hyper_log, starts[1:], [0] + starts[1:-1]):
            for g in eff_grad_norms[begin:end]:
                self.add(list(hs), float(g))
