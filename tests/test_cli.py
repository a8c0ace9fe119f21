import csv
import io
import json
import os
import stat

import numpy as np
import pytest

from cli import CliParser, Progress, atomic_write, write_csv, write_json, write_npz


def test_writers_round_trip_and_leave_no_temporaries(tmp_path):
    write_json(tmp_path / "a.json", {"x": np.float32(1.5), "y": np.arange(3), "z": float("nan")})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1.5, "y": [0, 1, 2], "z": None}
    write_csv(tmp_path / "b.csv", {"t": np.arange(3), "v": [0.5, 1.5, 2.5]})
    rows = list(csv.reader((tmp_path / "b.csv").open()))
    assert rows == [["t", "v"], ["0", "0.5"], ["1", "1.5"], ["2", "2.5"]]
    write_npz(tmp_path / "c.npz", a=np.eye(2))
    np.testing.assert_array_equal(np.load(tmp_path / "c.npz")["a"], np.eye(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.csv", "c.npz"]
    umask = os.umask(0)
    os.umask(umask)
    # the usual permissions of a new file, not mkstemp's private 0600
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o666 & ~umask


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"ok": 1})

    def broken(fh):
        fh.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_csv_rejects_ragged_columns(tmp_path):
    with pytest.raises(ValueError, match="different lengths"):
        write_csv(tmp_path / "x.csv", {"a": [1, 2], "b": [1]})


def test_cli_parser_one_line_error(capsys):
    p = CliParser(prog="prog")
    p.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["--n", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prog: error:")


def test_progress_draws_only_when_enabled():
    buf = io.StringIO()
    with Progress(10, desc="run", enabled=True, stream=buf, min_interval=0) as bar:
        for _ in range(10):
            bar.update()
    assert "10/10" in buf.getvalue() and "100%" in buf.getvalue()
    quiet = io.StringIO()
    list(Progress(5, enabled=False, stream=quiet).iterate(range(5)))
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("value,expected", [("-1e-3", -1e-3), ("-2.5E+4", -2.5e4), ("-.5", -0.5), ("-3", -3.0),
                                            ("-inf", float("-inf"))])
def test_cli_parser_reads_negative_numbers_as_values(value, expected):
    p = CliParser(prog="prog")
    p.add_argument("--lam", type=float, nargs="+")
    p.add_argument("--x", type=float)
    assert p.parse_args(["--lam", "1", value]).lam == [1.0, expected]
    assert p.parse_args(["--x", value]).x == expected
    with pytest.raises(SystemExit):          # a real flag is still a flag
        p.parse_args(["--lam", "-x"])


def test_writable_dir_creates_or_fails_in_one_line(tmp_path, capsys):
    from cli import writable_dir
    assert writable_dir("prog", tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []        # the probe file is gone
    (tmp_path / "f").write_text("x")
    with pytest.raises(SystemExit) as exc:
        writable_dir("prog", tmp_path / "f" / "sub")
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prog: error: cannot write to the output folder")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_in_a_log_prints_plain_lines_and_a_live_bar_on_a_terminal():
    log = io.StringIO()
    with Progress(100, desc="train", stream=log, line_interval=0) as bar:
        for _ in range(100):
            bar.update(1, postfix="loss 0.5")
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and len(lines) >= 2 and len(set(lines)) == len(lines)   # one line per report
    assert lines[-1].startswith("train: 100%") and "100/100" in lines[-1] and "loss 0.5" in lines[-1]
    assert bar.n == 100
    quiet_log = io.StringIO()
    with Progress(100, desc="train", stream=quiet_log) as bar:     # default: a line every 30 s, and at the end
        for _ in range(100):
            bar.update(1)
    assert len(quiet_log.getvalue().splitlines()) <= 2
    tty = _Terminal()
    with Progress(10, desc="train", stream=tty, min_interval=0) as bar:
        for _ in range(10):
            bar.update(1)
    assert "\r" in tty.getvalue() and "10/10" in tty.getvalue()


def test_given_options_and_option_flags_name_what_the_user_typed():
    from cli import given_options

    p = CliParser(prog="prog")
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--keep-last", dest="drop_last", action="store_false")
    p.add_argument("--name", default="x")
    assert given_options(p, []) == []
    assert given_options(p, ["--n", "3", "--keep-last"]) == ["drop_last", "n"]     # given, even at the default
    assert p.option_flags() == {"help": "-h", "n": "--n", "drop_last": "--keep-last", "name": "--name"}
    assert p.parse_args([]).n == 3                                                 # the parser is unchanged


def test_stop_on_signals_asks_to_stop_then_aborts_on_a_second_ctrl_c():
    import signal

    from cli import stop_on_signals

    class Loop:
        stop_requested = False

    loop = Loop()
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(loop):
        signal.raise_signal(signal.SIGTERM)
        assert loop.stop_requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_ctrl_c_inside_deferred_imports_is_raised_after_them():
    """A Ctrl-C that lands while torch's C++ code runs must not be raised there (the process would
    abort with SIGABRT): it is held until the block ends."""
    import signal

    from cli import catch_interrupts, deferred_interrupts, take_interrupt

    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        catch_interrupts()
        reached_end = False
        with pytest.raises(KeyboardInterrupt):
            with deferred_interrupts():
                signal.raise_signal(signal.SIGINT)          # held, not raised here
                reached_end = True
        assert reached_end and not take_interrupt()         # raised once, the mark cleared
        with deferred_interrupts():                         # no Ctrl-C: nothing raised
            pass
    finally:
        signal.signal(signal.SIGINT, before)


def test_csv_stream_is_write_csv_row_by_row_and_keeps_the_file_digest(tmp_path):
    """A streamed table equals the one written at once, byte for byte, also when continued with
    append=True; its running digest is the file's SHA-256 and the manifest uses it as given."""
    from cli import CSVStream, file_sha256, verify_manifest, write_manifest

    cols = {"iteration": np.arange(7), "x": np.linspace(0.1, 7.3, 7) ** 3, "y": [np.nan, 1e-300, -2.5, 3, 4, 5, 6]}
    write_csv(tmp_path / "at_once.csv", cols)
    rows = list(zip(*[np.asarray(c).tolist() for c in cols.values()]))
    s = CSVStream(tmp_path / "t.csv", list(cols), flush_every=2)
    for r in rows[:4]:
        s.write(r)
    s.close()
    s = CSVStream(tmp_path / "t.csv", list(cols), append=True)
    for r in rows[4:]:
        s.write(r)
    s.close()
    assert (tmp_path / "t.csv").read_bytes() == (tmp_path / "at_once.csv").read_bytes()
    assert s.hexdigest() == file_sha256(tmp_path / "t.csv")
    write_manifest(tmp_path, ["t.csv"], {"t.csv": s.hexdigest()})
    assert verify_manifest(tmp_path) == []
    with pytest.raises(ValueError, match="3 columns"):
        CSVStream(tmp_path / "u.csv", ["a", "b", "c"]).write([1, 2])
    with pytest.raises(ValueError, match="flush_every"):
        CSVStream(tmp_path / "v.csv", ["a"], flush_every=0)
