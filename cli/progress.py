"""Progress of long work on stderr, through tqdm: a live bar on a terminal, plain lines in a log.

Under ``nohup``, a batch scheduler or a pipe, a redrawn bar is one endless line of carriage
returns; there :class:`Progress` prints one plain line every ``line_interval`` seconds (and at the
end), so a log shows that the job is alive and how far it got.
"""
from __future__ import annotations

import io
import sys
from typing import Iterable, Iterator

from tqdm import tqdm

__all__ = ["Progress", "LINE_INTERVAL"]

#: seconds between plain progress lines when stderr is not a terminal
LINE_INTERVAL = 30.0


class _Lines(io.TextIOBase):
    """A text stream that turns tqdm's redraws (``\\r...``) into one full line each."""

    def __init__(self, stream):
        self.stream = stream
        self.last = ""

    def write(self, s: str) -> int:
        text = s.replace("\r", "").strip()
        if text and text != self.last:       # tqdm redraws the final state on close
            self.last = text
            self.stream.write(text + "\n")
            self.stream.flush()
        return len(s)

    def flush(self) -> None:
        self.stream.flush()


class Progress:
    """Progress of ``total`` units of work (a thin layer over :class:`tqdm.tqdm`).

    Parameters
    ----------
    total : int
        Number of units of work.
    desc : str
        Label printed before the bar.
    enabled : bool or None
        False: print nothing. None (default) or True: a live bar when ``stream`` is a terminal,
        else a plain line every ``line_interval`` seconds and one at the end.
    min_interval : float
        Minimum seconds between redraws of the live bar.
    stream : text stream
        Where to write (default ``sys.stderr``).
    line_interval : float
        Seconds between plain lines when ``stream`` is not a terminal.

    Use as a context manager and call :meth:`update`, or wrap an iterable with :meth:`iterate`.
    ``n`` is the work done so far.
    """

    def __init__(self, total: int, desc: str = "", enabled: bool | None = None, min_interval: float = 0.1,
                 stream=None, line_interval: float = LINE_INTERVAL):
        stream = stream if stream is not None else sys.stderr
        self.total = max(int(total), 0)
        self.enabled = enabled is not False
        tty = bool(getattr(stream, "isatty", lambda: False)())
        self._bar = tqdm(total=self.total, desc=desc or None, disable=not self.enabled,
                         file=stream if tty else _Lines(stream), mininterval=min_interval if tty else line_interval,
                         maxinterval=float("inf") if not tty else 10.0, miniters=1, dynamic_ncols=tty,
                         ascii=not tty, leave=True)
        self._n = 0

    @property
    def n(self) -> int:
        return self._n

    def update(self, n: int = 1, postfix: str = "") -> None:
        """Add ``n`` units of work done; ``postfix`` is shown after the bar (e.g. the current loss)."""
        n = min(n, self.total - self._n) if self.total else n
        self._n += n
        if self.enabled:
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def iterate(self, iterable: Iterable) -> Iterator:
        with self:
            for item in iterable:
                yield item
                self.update(1)
