"""Small I/O helpers shared by every command-line job of the toolkit.

* :class:`Progress` -- a dependency-free progress bar on stderr (silent when
  stderr is not a terminal unless forced, so logs and CI stay clean).
* :func:`write_json`, :func:`write_csv`, :func:`write_npz`, :func:`atomic_write` -- results as plain
  files, written atomically (a temporary file renamed into place), so an
  interrupted job never leaves a half-written result behind.
* :class:`CliParser` -- an :class:`argparse.ArgumentParser` whose errors are one
  line plus a hint, with exit status 2, and that reads negative numbers in any float
  notation (``--lam -1e-3``) as values, so that they reach the option's validator.
* :func:`cli_fail` -- the same one-line error for problems found after parsing
  (missing data directory, impossible option combination).
* :func:`writable_dir` -- create an output folder and check that files can be written there,
  before any work starts (one-line error, exit 2, otherwise).
* :func:`os_error_line` -- a one-line description of an :class:`OSError` naming the path.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

__all__ = [
    "exit_process",
    "catch_interrupts",
    "take_interrupt",
    "Progress",
    "write_json",
    "write_csv",
    "write_npz",
    "atomic_write",
    "to_jsonable",
    "CliParser",
    "cli_fail",
    "writable_dir",
    "os_error_line",
]


class Progress:
    """A minimal progress bar: ``[#####.....] 512/1000  51% 3.2s<3.1s``.

    Parameters
    ----------
    total : int
        Number of units of work.
    desc : str
        Label printed before the bar.
    enabled : bool or None
        ``None`` (default) shows the bar only when stderr is a terminal.
    min_interval : float
        Minimum seconds between redraws.

    Use as a context manager and call :meth:`update`, or wrap an iterable
    with :meth:`iterate`.
    """

    def __init__(self, total: int, desc: str = "", enabled: bool | None = None,
                 min_interval: float = 0.1, stream=None):
        self.total = max(int(total), 0)
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.min_interval = min_interval
        self.n = 0
        self._t0 = time.perf_counter()
        self._last = -math.inf

    def update(self, n: int = 1, postfix: str = "") -> None:
        self.n = min(self.n + n, self.total) if self.total else self.n + n
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.min_interval or self.n >= self.total):
            self._last = now
            self._draw(now, postfix)

    def _draw(self, now: float, postfix: str) -> None:
        elapsed = now - self._t0
        frac = self.n / self.total if self.total else 0.0
        width = 24
        filled = int(round(width * frac))
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        line = (f"\r{self.desc} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.n}/{self.total} {100 * frac:3.0f}% {elapsed:.1f}s<{eta:.1f}s {postfix}")
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def iterate(self, iterable: Iterable) -> Iterator:
        with self:
            for item in iterable:
                yield item
                self.update(1)


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths and dataclass-like objects to JSON types."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN/inf; null is the honest "not available"
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    return obj


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(binary_file)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; give results the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (numpy types converted, NaN -> null)."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n"
    return atomic_write(Path(path), lambda fh: fh.write(text.encode()))


def write_csv(path: str | Path, columns: Mapping[str, Any]) -> Path:
    """Write equal-length 1-D columns as a CSV table with a header row."""
    names = list(columns)
    arrays = [np.asarray(columns[k]).reshape(-1) for k in names]
    lengths = {a.shape[0] for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"write_csv: columns have different lengths {sorted(lengths)}")

    def write(fh):
        import io
        text = io.TextIOWrapper(fh, newline="", encoding="utf-8")
        w = csv.writer(text)
        w.writerow(names)
        w.writerows(zip(*[a.tolist() for a in arrays]))
        text.flush()
        text.detach()

    return atomic_write(Path(path), write)


def write_npz(path: str | Path, **arrays: Any) -> Path:
    """Write arrays to a compressed ``.npz`` file atomically."""
    return atomic_write(Path(path), lambda fh: np.savez_compressed(fh, **arrays))


#: a negative number in any notation Python's ``float`` reads: -1, -.5, -1e-3, -2.5E+4, -inf, -nan
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*(e[+-]?\d+)?|\.\d+(e[+-]?\d+)?|inf(inity)?|nan)$", re.IGNORECASE)


class CliParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (``prog: error: ...``) and exit 2.

    A negative number (``-1e-3``, ``-inf``; :data:`NEGATIVE_NUMBER`) is read as a value, not as
    an unknown flag, so ``--lam -1e-3`` reaches the option's validator, which says what is
    wrong with it. (argparse's own rule knows only ``-1`` and ``-0.5``.)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def cli_fail(prog: str, message: str, code: int = 2):
    """Print a one-line error for ``prog`` and exit with ``code`` (no traceback)."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(code)


_INTERRUPTED = False


def catch_interrupts() -> None:
    """Make Ctrl-C leave a mark as well as raise ``KeyboardInterrupt`` (first thing a command does).

    CPython ignores an exception raised inside a weakref callback or ``__del__`` (it prints
    "Exception ignored in ..."): a Ctrl-C landing there is lost and the command runs on --
    measured once in CI, in importlib's module-lock callback while ``python -m nets.train`` was
    importing torch on a loaded machine: the run trained on until killed. The handler installed
    here (only over Python's default one, in the main thread) also sets a flag, which
    :func:`take_interrupt` reads; :mod:`nets.run` stops a run at its first step when it is set.
    """
    import signal
    import threading

    def handler(signum, frame):
        global _INTERRUPTED
        _INTERRUPTED = True
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, handler)


def take_interrupt() -> bool:
    """True once if a Ctrl-C was caught by :func:`catch_interrupts` since the last call."""
    global _INTERRUPTED
    seen, _INTERRUPTED = _INTERRUPTED, False
    return seen


def exit_process(code: int | None):
    """End a command-line process with status ``code`` (the ``__main__`` block of every command).

    A Ctrl-C that the command handled (status 130) ends the process with :func:`os._exit` after
    flushing stdout and stderr: a ``KeyboardInterrupt`` that landed inside an import during
    start-up can leave CPython's unhandled-interrupt state set, and the interpreter then turns the
    status into a SIGINT kill (-2) although the command printed its one line (measured: 2 of 6
    Ctrl-Cs in the first seconds of ``python -m nets.train``). Other statuses exit normally.
    """
    if code == 130:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(130)
    raise SystemExit(code)


def os_error_line(exc: OSError) -> str:
    """``"<reason>: <path>"`` for an :class:`OSError` (the path it names, when it names one)."""
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason


def writable_dir(prog: str, path: str | Path) -> Path:
    """Create the folder ``path`` (with its parents) and check that a file can be written in it.

    Called by every command-line job before its work starts, so that an unwritable output
    location (a read-only folder, a path under a file) is a one-line error with exit status 2,
    not a traceback after the work. Returns ``Path(path)``.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        cli_fail(prog, f"cannot write to the output folder {path} ({exc.strerror or exc})")
    return path
