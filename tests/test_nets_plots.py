"""Long runs are drawn through their envelope: bounded points, every spike kept, short series untouched."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nets.plots import MAX_POINTS, envelope


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 30000), spike=st.floats(0, 1), seed=st.integers(0, 100))
def test_envelope_keeps_extremes_and_order(n, spike, seed):
    rng = np.random.default_rng(seed)
    x, y = np.arange(n) * 10, rng.standard_normal(n)
    i = int(spike * (n - 1))
    y[i] = 1e6
    xs, ys = envelope(x, y)
    assert len(xs) <= max(n if n <= MAX_POINTS else MAX_POINTS, 1)
    assert np.all(np.diff(xs) > 0) and set(xs) <= set(x)
    assert ys.max() == 1e6 and ys.min() == y.min()            # the spike and the lowest point survive
    if n <= MAX_POINTS:
        np.testing.assert_array_equal(ys, y)
