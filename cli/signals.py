"""Ctrl-C and SIGTERM: commands stop cleanly, keep what they made, and exit with status 130.

* :func:`catch_interrupts` -- first thing a command does: a Ctrl-C that CPython swallows still
  leaves a mark (:func:`take_interrupt`).
* :func:`stop_on_signals` -- while a loop runs, SIGINT/SIGTERM ask it to stop after the current
  step (a second Ctrl-C aborts at once).
* :func:`exit_process` -- the ``__main__`` block of every command.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager

__all__ = ["catch_interrupts", "deferred_interrupts", "take_interrupt", "exit_process", "stop_on_signals"]


_INTERRUPTED = False
_DEFERRED = False


def catch_interrupts() -> None:
    """Make Ctrl-C leave a mark as well as raise ``KeyboardInterrupt`` (first thing a command does).

    CPython ignores an exception raised inside a weakref callback or ``__del__`` (it prints
    "Exception ignored in ..."): a Ctrl-C landing there is lost and the command runs on --
    measured once in CI, in importlib's module-lock callback while ``python -m nets.train`` was
    importing torch on a loaded machine: the run trained on until killed. The handler installed
    here (only over Python's default one, in the main thread) also sets a flag, which
    :func:`take_interrupt` reads; :mod:`nets.training.run` stops a run at its first step when it is set.
    """
    def handler(signum, frame):
        global _INTERRUPTED
        _INTERRUPTED = True
        if not _DEFERRED:
            raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, handler)


@contextmanager
def deferred_interrupts():
    """Hold a Ctrl-C caught by :func:`catch_interrupts` until the block ends, then raise it.

    For imports of compiled extensions (torch): a ``KeyboardInterrupt`` raised while C++ code is
    calling back into Python cannot unwind through it, and the process aborts (SIGABRT, exit -6;
    measured in CI: a Ctrl-C 0.5 s into ``python -m nets.train`` landed in ``torch.distributed``'s
    initialisation). Inside the block the handler only marks the Ctrl-C.
    """
    global _DEFERRED, _INTERRUPTED
    previous, _DEFERRED = _DEFERRED, True
    try:
        yield
    finally:
        _DEFERRED = previous
    if not previous and _INTERRUPTED:
        _INTERRUPTED = False
        raise KeyboardInterrupt


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


@contextmanager
def stop_on_signals(target):
    """While the block runs, SIGINT/SIGTERM set ``target.stop_requested = True`` (the loop stops after
    its current step); a second Ctrl-C raises ``KeyboardInterrupt``. Outside the main thread (where
    signal handlers cannot be installed) it does nothing. A Ctrl-C swallowed before the block
    (:func:`take_interrupt`) counts as the first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if target.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        target.stop_requested = True

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    if take_interrupt():
        target.stop_requested = True
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
