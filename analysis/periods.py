r"""Detect the periodic destabilisations of SI training in a recorded norm trajectory.

Model of a periodic run (Lobacheva et al., 2021, Sec. 4; :mod:`theory.stability`): inside a
period the loss is small and the weight norm :math:`\rho` decays roughly geometrically,
:math:`\log\rho_{t+1} - \log\rho_t \approx \ln(1-\eta\lambda) < 0`; when the effective LR
:math:`\eta/\rho^2` crosses the stability bound the loss spikes and :math:`\rho` *jumps up* within
a few iterations. A new period starts at the onset of each jump.

Detector (:func:`detect_periods`)
---------------------------------
1. Work in :math:`y = \log\rho`, increments :math:`\Delta_t = y_{t+1} - y_t`. The typical drift
   :math:`m` is the median of :math:`\Delta` (the decay, since jumps are rare) and the noise
   scale :math:`\sigma` is the normalised median absolute deviation of :math:`\Delta` (robust
   to the jumps as long as they occupy a small fraction of the samples), floored at
   ``sigma_floor``.
2. One-sided CUSUM (Page, 1954) of the increments above the baseline :math:`b = \max(m, 0)`,
   :math:`S_t = \max(0, S_{t-1} + \Delta_t - b - k)`, :math:`k` = ``allowance`` :math:`\cdot\sigma`.
   Only actual growth of :math:`\rho` accumulates: a decay that merely slows down (as it does
   just before a jump, or while gradients are not yet negligible) does not, and a steady
   growth (:math:`m > 0`) is discounted. An alarm is raised when
   :math:`S_t \ge H = \max(\text{threshold}\cdot\sigma,\ \text{min\_rise})`. The onset of the jump
   is the minimum of :math:`y` since :math:`S` last left zero; the jump ends when :math:`S` has
   not reached a new maximum for ``settle`` samples, and :math:`S` restarts from zero there. A
   jump must also raise :math:`y` itself by ``min_rise``, and its onset must be preceded by at
   least ``settle`` samples (a rise at the very start of the series, such as the initial growth
   of the norm under large early gradients, has no observed decay before it and is not a
   destabilisation). Finally the jump must move the level: the median of :math:`y` over the
   ``settle`` samples from its top must exceed the median over the ``settle`` samples up to
   its onset by ``min_rise`` and by :math:`H/2` (isolated outliers, up or down, do not).
3. Onsets closer than ``min_separation`` iterations are merged (the first is kept). By default
   ``min_separation`` is a quarter of the typical raw spacing -- the median of the spacings at
   least half as long as the longest -- which merges the double alarms of a turbulent jump
   without touching genuine periods.
4. With ``loss`` given, a jump is kept only if the loss in ``[onset - w, peak + w]``
   (``w`` = rise length, at least 2 samples) reaches ``loss_factor`` times the median loss of the
   preceding stretch (since the previous onset) -- the loss spike of a destabilisation.

Assumptions: a positive, finite norm series sampled uniformly (every ``step`` iterations); jumps
faster than the decay (a jump spans far fewer samples than a period) and at least ``min_rise``
in :math:`\log\rho`; between jumps, fluctuations of :math:`\log\rho` are small compared with the
jump. Stationary noise (i.i.d. or mean-reverting, as at the SGD equilibrium) and smooth
monotone decay give no events: under such noise a CUSUM with :math:`H = 10\sigma`,
:math:`k = \sigma/2` raises a false alarm about once per :math:`10^5` samples, and a period needs
three consistent alarms. Heavy-tailed *kicks* that are followed by a slow relaxation (for
example an AR(1) process with rare large shocks) do look like jumps and are reported; their
spacings are irregular (``std_length`` comparable to ``mean_length``), which is how to tell them
from periods.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PeriodReport", "detect_periods", "tail_start"]

_MAD_TO_SIGMA = 1.4826


@dataclass
class PeriodReport:
    """Result of :func:`detect_periods`.

    Attributes
    ----------
    events : ndarray of int
        Sample indices of the destabilisation onsets (start of each norm jump), increasing.
    lengths : ndarray of float
        ``np.diff(events) * step``: lengths of the complete periods, in iterations.
    mean_length, std_length : float
        Mean and standard deviation of ``lengths`` (NaN with fewer than 2 events).
    phase : ndarray of float
        Per sample, the position within its period in [0, 1); NaN before the first event and
        from the last event on (incomplete periods).
    norm_ratio : float
        Median over complete periods of ``max(norm) / min(norm)`` on ``[events[j], events[j+1]]``
        (the :math:`\\rho_{\\max}/\\rho_{\\min}` of :func:`theory.stability.predicted_period_length`);
        NaN without a complete period.
    step : int
        Sampling interval of the series, in iterations.
    peaks : ndarray of int
        Sample index of the top of each jump (same length as ``events``).
    """

    events: np.ndarray
    lengths: np.ndarray
    mean_length: float
    std_length: float
    phase: np.ndarray
    norm_ratio: float
    step: int
    peaks: np.ndarray | None = None

    @property
    def n_periods(self) -> int:
        """Number of complete periods, ``max(len(events) - 1, 0)``."""
        return max(len(self.events) - 1, 0)

    @property
    def is_periodic(self) -> bool:
        """At least two complete periods were found."""
        return self.n_periods >= 2

    @property
    def event_iterations(self) -> np.ndarray:
        """Event times in iterations (``events * step``)."""
        return self.events * self.step

    def to_dict(self) -> dict:
        """JSON-friendly summary (lists; NaN stays NaN, :func:`cli.write_json` -> null)."""
        return {"events": self.events.tolist(), "event_iterations": self.event_iterations.tolist(),
                "lengths": self.lengths.tolist(), "mean_length": self.mean_length,
                "std_length": self.std_length, "n_periods": self.n_periods,
                "is_periodic": self.is_periodic, "norm_ratio": self.norm_ratio, "step": self.step}


def _robust_drift_and_scale(dy: np.ndarray, sigma_floor: float) -> tuple[float, float]:
    """Median drift of the increments and their robust noise scale (see module doc, step 1)."""
    m = float(np.median(dy))
    sigma = _MAD_TO_SIGMA * float(np.median(np.abs(dy - m)))
    return m, max(sigma, sigma_floor)


def _scan(e, H, settle):
    """CUSUM :math:`S_t = \\max(0, S_{t-1} + e_t)` from :math:`S_{-1} = 0` over ``e``: return
    ``(start, best, end)`` of the first alarm -- first increment of the excursion, increment of the
    largest :math:`S`, increment where the jump is over -- or ``None`` (no alarm, or its end lies
    beyond ``e``)."""
    C = np.cumsum(e)
    S = C - np.minimum.accumulate(np.minimum(C, 0.0))
    hits = np.flatnonzero(S >= H)
    if hits.size == 0:
        return None
    a = int(hits[0])
    zeros = np.flatnonzero(S[:a] == 0.0)
    start = int(zeros[-1]) + 1 if zeros.size else 0
    Sa = S[a:]
    i = np.arange(Sa.size)
    is_new = np.r_[True, Sa[1:] > np.maximum.accumulate(Sa)[:-1]]
    last_new = np.maximum.accumulate(np.where(is_new, i, 0))
    stop = np.flatnonzero(((i - last_new >= settle) | (Sa == 0.0)) & (i > 0))
    if stop.size == 0:
        return (start, a + int(last_new[-1]), None)
    end = int(stop[0])
    return start, a + int(last_new[end]), a + end


def _cusum_jumps(y, m, k, H, settle, min_rise):
    """Onset and peak sample indices of upward jumps of ``y`` (see module doc, step 2)."""
    e = np.diff(y) - max(m, 0.0) - k
    onsets, peaks = [], []
    pos, window = 0, 4096
    while pos < e.size:
        hi = min(pos + window, e.size)
        found = _scan(e[pos:hi], H, settle)
        if found is None or (found[2] is None and hi < e.size):
            if hi == e.size:
                break
            window *= 2                 # no alarm, or its end, inside the window: look further
            continue
        start, best, end = (pos + v if v is not None else e.size - 1 for v in found)
        onset = start + int(np.argmin(y[start:best + 2]))
        peak = onset + int(np.argmax(y[onset:best + 2]))
        rise = y[peak] - y[onset]
        # a jump moves the level; an isolated outlier (up at the top or down at the trough) does not
        level_step = np.median(y[peak:peak + settle]) - np.median(y[max(onset - settle + 1, 0):onset + 1])
        if rise >= min_rise and onset >= settle and level_step >= max(min_rise, 0.5 * H):
            onsets.append(onset)
            peaks.append(peak)
        pos = end + 1
    return np.asarray(onsets, dtype=int), np.asarray(peaks, dtype=int)


def _auto_separation(onsets: np.ndarray) -> float:
    """A quarter of the typical period: the median of the spacings that are at least half the
    largest one (so that the short spacings of double alarms do not set the scale)."""
    if onsets.size < 3:
        return 0.0
    sp = np.diff(onsets).astype(np.float64)
    return 0.25 * float(np.median(sp[sp >= 0.5 * sp.max()]))


def _merge_close(onsets, peaks, min_sep_samples):
    if onsets.size < 2 or min_sep_samples <= 1:
        return onsets, peaks
    keep_o, keep_p = [onsets[0]], [peaks[0]]
    for o, p in zip(onsets[1:], peaks[1:]):
        if o - keep_o[-1] < min_sep_samples:
            keep_p[-1] = max(keep_p[-1], p)
        else:
            keep_o.append(o)
            keep_p.append(p)
    return np.asarray(keep_o, dtype=int), np.asarray(keep_p, dtype=int)


def _confirm_with_loss(onsets, peaks, loss, loss_factor):
    keep = []
    for i, (o, p) in enumerate(zip(onsets, peaks)):
        w = max(2, p - o)
        window = loss[max(o - w, 0):p + w + 1]
        prev = loss[(onsets[i - 1] if i else max(o - 10 * w, 0)):o]
        if prev.size == 0:
            keep.append(True)   # nothing to compare with at the very start: keep the jump
            continue
        base = np.nanmedian(prev)
        keep.append(bool(np.nanmax(window) >= loss_factor * base))
    keep = np.asarray(keep, dtype=bool)
    return onsets[keep], peaks[keep]


def _phase(n: int, events: np.ndarray) -> np.ndarray:
    phase = np.full(n, np.nan)
    for a, b in zip(events[:-1], events[1:]):
        phase[a:b] = np.arange(b - a) / (b - a)
    return phase


def detect_periods(norm, *, loss=None, step: int = 1, min_separation: float | None = None,
                   threshold: float = 10.0, allowance: float = 0.5, min_rise: float = 0.05,
                   settle: int = 5, loss_factor: float = 1.5, sigma_floor: float = 1e-9) -> PeriodReport:
    r"""Find destabilisation events (norm-jump onsets) and the periods between them.

    Parameters
    ----------
    norm : array_like, shape (n,)
        Norm of the SI weights (positive, finite), sampled every ``step`` iterations.
    loss : array_like, shape (n,), optional
        Training loss at the same samples; confirms each jump by a loss spike.
    step : int
        Sampling interval in iterations (lengths are reported in iterations).
    min_separation : float, optional
        Minimum distance between events, in iterations (default: a quarter of the typical
        spacing of the raw events, see step 3).
    threshold : float
        CUSUM alarm level in units of the robust noise scale of :math:`\Delta\log\rho`.
    allowance : float
        CUSUM slack :math:`k/\sigma` per sample.
    min_rise : float
        Smallest jump, in :math:`\log\rho` (0.05 is a 5 % norm increase).
    settle : int
        Samples without a new CUSUM maximum that end a jump.
    loss_factor : float
        Required ratio of the loss peak to the preceding median loss.
    sigma_floor : float
        Lower bound of the noise scale (noiseless series).

    Returns
    -------
    PeriodReport
    """
    y_in = np.asarray(norm, dtype=np.float64)
    if y_in.ndim != 1:
        raise ValueError(f"norm must be 1-D, got shape {y_in.shape}")
    if not np.all(np.isfinite(y_in)) or np.any(y_in <= 0):
        raise ValueError("norm must be finite and positive (classify diverged runs first)")
    if int(step) != step or step < 1:
        raise ValueError(f"step must be a positive integer, got {step!r}")
    if loss is not None:
        loss = np.asarray(loss, dtype=np.float64)
        if loss.shape != y_in.shape:
            raise ValueError(f"loss has shape {loss.shape}, norm has {y_in.shape}")
    step, n = int(step), y_in.size
    empty = np.zeros(0, dtype=int)
    if n < 4:
        return PeriodReport(empty, np.zeros(0), np.nan, np.nan, np.full(n, np.nan), np.nan, step, empty)
    y = np.log(y_in)
    m, sigma = _robust_drift_and_scale(np.diff(y), sigma_floor)
    H = max(threshold * sigma, min_rise)
    onsets, peaks = _cusum_jumps(y, m, allowance * sigma, H, max(int(settle), 1), min_rise)
    if min_separation is None:
        sep = _auto_separation(onsets)
    else:
        sep = float(min_separation) / step
    onsets, peaks = _merge_close(onsets, peaks, int(np.ceil(sep)))
    if loss is not None and onsets.size:
        onsets, peaks = _confirm_with_loss(onsets, peaks, loss, loss_factor)
    lengths = np.diff(onsets).astype(np.float64) * step
    ratios = [y_in[a:b + 1].max() / y_in[a:b + 1].min() for a, b in zip(onsets[:-1], onsets[1:])]
    return PeriodReport(
        events=onsets, lengths=lengths,
        mean_length=float(lengths.mean()) if lengths.size else np.nan,
        std_length=float(lengths.std()) if lengths.size else np.nan,
        phase=_phase(n, onsets), norm_ratio=float(np.median(ratios)) if ratios else np.nan,
        step=step, peaks=peaks)


def tail_start(n: int, tail: float) -> int:
    """Index of the first of the last ``tail`` fraction of ``n`` records (at least 2 records)."""
    if not 0 < tail <= 1:
        raise ValueError(f"tail must be in (0, 1], got {tail!r}")
    return n - min(max(int(round(tail * n)), 2), n)
