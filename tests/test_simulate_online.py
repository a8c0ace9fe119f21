"""analysis.online: the streaming detector reports exactly what the offline detector finds on the
same series, at every prefix, and announces each event once."""
import numpy as np
import pytest

from analysis.online import StreamingPeriodDetector
from analysis.periods import detect_periods


def _periodic_series(n=600, period=80, seed=0):
    """Norm decaying by 1 %/sample with a 3x jump every ``period`` samples (+ noise), loss spikes."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    phase = (t - 20) % period
    log_norm = np.where(t < 20, -0.01 * t, np.log(3.0) - 0.01 * phase * np.log(3.0) / (0.01 * period))
    norm = np.exp(log_norm + 0.002 * rng.standard_normal(n))
    loss = 0.05 + 0.01 * rng.random(n)
    loss[(t >= 20) & (phase < 3)] = 2.0
    return norm, loss


def _same(a, b):
    np.testing.assert_array_equal(a.events, b.events)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    assert a.norm_ratio == b.norm_ratio or (np.isnan(a.norm_ratio) and np.isnan(b.norm_ratio))


def test_every_prefix_equals_the_offline_detector_and_events_are_announced_once():
    norm, loss = _periodic_series()
    det = StreamingPeriodDetector(step=10, every=1)
    announced = []
    for i in range(norm.size):
        new, revoked = det.append(norm[i], loss[i])
        announced += new
        for e in revoked:
            announced.remove(e)
        _same(det.report, detect_periods(norm[:i + 1], loss=loss[:i + 1], step=10))
        assert announced == det.reported == det.events
    offline = detect_periods(norm, loss=loss, step=10)
    assert len(offline.events) >= 6                     # the series is periodic
    assert det.events == list(offline.event_iterations)
    np.testing.assert_array_equal(det.norm, norm)


def test_sparse_reruns_and_the_final_update_agree_with_offline():
    norm, loss = _periodic_series(seed=1)
    det = StreamingPeriodDetector(step=1, every=50)
    for i, (v, l) in enumerate(zip(norm, loss)):
        det.append(v, l)
        assert det.stale == (i + 1) % 50                 # a detector run every 50 samples
    det.update()
    _same(det.report, detect_periods(norm, loss=loss, step=1))
    auto = StreamingPeriodDetector(step=1, every="auto", budget=0.5)
    for v, l in zip(norm, loss):
        auto.append(v, l)
    auto.update()
    _same(auto.report, detect_periods(norm, loss=loss, step=1))


def test_missing_losses_and_a_dead_tail():
    norm, loss = _periodic_series(n=300)
    det = StreamingPeriodDetector(every=0)
    for v in norm:
        det.append(v)                                   # no loss: the norm alone, as offline
    det.update()
    _same(det.report, detect_periods(norm))
    det.append(0.0, 1.0)                                # an underflowed norm: not analysed
    det.append(float("nan"), 1.0)
    det.update()
    _same(det.report, detect_periods(norm))
    assert det.n == norm.size + 2


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="step"):
        StreamingPeriodDetector(step=0)
    with pytest.raises(ValueError, match="every"):
        StreamingPeriodDetector(every=-1)
    with pytest.raises(ValueError, match="budget"):
        StreamingPeriodDetector(budget=0)


def test_a_store_spilled_to_a_file_gives_the_same_reports(tmp_path):
    """The detector's series kept in a file (SIMonitor's flat memory) reports what it does in memory."""
    from analysis.rows import RowTable
    norm, loss = _periodic_series(400)
    plain = StreamingPeriodDetector(step=10, every=25)
    spilled = StreamingPeriodDetector(step=10, every=25, store=RowTable(2, spill=tmp_path / "d.f64", chunk=16))
    for v, l in zip(norm, loss):
        assert plain.append(v, l) == spilled.append(v, l)
    _same(plain.report, spilled.report)
    assert spilled.norm.tolist() == norm.tolist() and (tmp_path / "d.f64").stat().st_size > 0
    with pytest.raises(ValueError, match="empty RowTable of width 2"):
        StreamingPeriodDetector(store=RowTable(3))
