"""What the machine can give a command, checked before its work starts: memory and CPU cores.

A request that cannot fit (an array of terabytes) is refused in one line naming the number and
the limit, instead of a ``MemoryError`` after minutes of allocation or a hang; a request that
fits but is unwise (more threads than cores) gets a one-line warning.
"""
from __future__ import annotations

import os
import sys
import warnings

__all__ = ["available_memory", "usable_cores", "format_bytes", "check_memory", "plain_warnings"]

#: share of the available memory one request may take
MEMORY_SHARE = 0.8


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable`` of ``/proc/meminfo``; where
    that is missing, the physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        return os.cpu_count() or 1


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``; binary units up to EiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"


def check_memory(nbytes: float, what: str, hint: str) -> None:
    """Raise ``MemoryError`` with one line when ``nbytes`` exceeds :data:`MEMORY_SHARE` of the
    available memory: ``"<what> needs ~X; this machine has Y available: <hint>"``."""
    limit = MEMORY_SHARE * available_memory()
    if nbytes > limit:
        raise MemoryError(f"{what} needs ~{format_bytes(nbytes)}; this machine has "
                          f"{format_bytes(available_memory())} available: {hint}")


def plain_warnings(prog: str) -> None:
    """Show warnings as one line, ``prog: warning: message`` (not Python's file:line form)."""
    def show(message, category, filename, lineno, file=None, line=None):
        (file or sys.stderr).write(f"{prog}: warning: {message}\n")

    warnings.showwarning = show
