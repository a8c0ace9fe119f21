"""Command-line parsing, option validators and one-line errors shared by every command.

Every command validates an option in one place (the ``type=`` validators here, or the config's own
``validate``) and reports bad input as one line, ``prog: error: ...``, with exit status 2.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

__all__ = ["CliParser", "NEGATIVE_NUMBER", "cli_fail", "os_error_line", "writable_dir", "pos_float",
           "int_at_least", "given_options"]


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

    def option_flags(self) -> dict:
        """``{destination: its first option string}`` of every optional argument (for messages that
        name the flag a user typed, e.g. ``--keep-last-batch`` for ``drop_last``)."""
        return {a.dest: a.option_strings[0] for a in self._actions if a.option_strings}


def cli_fail(prog: str, message: str, code: int = 2):
    """Print a one-line error for ``prog`` and exit with ``code`` (no traceback)."""
    sys.stderr.write(f"{prog}: error: {message}\n")
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
    from cli.files import ensure_writable

    path = Path(path)
    try:
        ensure_writable(path)
    except OSError as exc:
        cli_fail(prog, f"cannot write to the output folder {path} ({exc.strerror or exc})")
    return path


def pos_float(s: str) -> float:
    """argparse ``type``: a finite number > 0."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {s!r}")
    return v


def int_at_least(lo: int):
    """argparse ``type`` factory: an integer >= ``lo``."""
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {s!r}")
        return v
    parse.__name__ = f"integer >= {lo}"
    return parse


def given_options(parser: argparse.ArgumentParser, argv) -> list[str]:
    """Destinations of the options given explicitly on ``argv`` (not left at their defaults).

    The destinations are those of an empty command line; ``argv`` is then parsed into a namespace
    holding a sentinel for each: argparse fills in defaults only where the namespace has nothing,
    so the destinations that still hold the sentinel were not given. (argparse's public API only;
    the parser must accept an empty command line.)
    """
    unset = object()
    probe = argparse.Namespace(**{dest: unset for dest in vars(parser.parse_known_args([])[0])})
    parsed = parser.parse_args(argv, namespace=probe)
    return sorted(k for k, v in vars(parsed).items() if v is not unset)
