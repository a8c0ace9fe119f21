"""RowTable: compact rows in memory, or spilled to a file in chunks -- the same table either way."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.rows import RowTable
from nets.monitor.metrics import Recorder


@given(st.integers(0, 40), st.integers(1, 7), st.integers(1, 5))
@settings(max_examples=40, deadline=None)
def test_a_spilled_table_reads_like_an_in_memory_one(tmp_path_factory, n, chunk, width):
    rows = np.random.default_rng(n).normal(size=(n, width)).tolist()
    plain = RowTable(width, rows)
    spilled = RowTable(width, rows, spill=tmp_path_factory.mktemp("s") / "t.f64", chunk=chunk)
    assert len(spilled) == len(plain) == n and bool(spilled) == (n > 0)
    np.testing.assert_array_equal(spilled.array(), plain.array())
    assert spilled.tolist() == plain.tolist() == rows
    if n:
        assert spilled[0] == rows[0] and spilled[-1] == rows[-1] and spilled[n // 2] == rows[n // 2]
        assert spilled[1:3] == rows[1:3] and list(spilled) == rows
        with pytest.raises(IndexError):
            spilled[n]


def test_spilling_keeps_memory_to_one_chunk(tmp_path):
    t = RowTable(3, spill=tmp_path / "t.f64", chunk=10)
    for i in range(95):
        t.append([i, i + 0.5, -i])
    assert (tmp_path / "t.f64").stat().st_size == 90 * 3 * 8          # 9 chunks on disk, 5 rows in memory
    assert t.array()[:, 0].tolist() == list(range(95))
    with pytest.raises(ValueError, match="a row of 2 values"):
        t.append([1, 2])


def test_recorder_state_round_trips_through_a_spilling_recorder(tmp_path):
    rec = Recorder(2, spill_dir=tmp_path / "a")
    for i in range(12):
        rec.steps.append([float(i)] * rec.steps.width)
        rec.layer_norms.append([i, 2 * i])
    state = rec.state_dict()
    again = Recorder(2, spill_dir=tmp_path / "b")
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.steps.array(), rec.steps.array())
    np.testing.assert_array_equal(again.layer_norms.array(), rec.layer_norms.array())
    assert (tmp_path / "b" / "steps.f64").exists()
