"""One process per run directory: a lock file holding the owner's host and process id.

Two processes writing one run directory (two ``--resume`` of the same run, a sweep started twice)
would interleave checkpoints and result files. :func:`run_dir_lock` creates ``RUN_DIR/.lock``
atomically (``O_CREAT | O_EXCL``) with ``<host> <pid>``; a second process is refused with
:class:`RunDirLocked` (one line naming the holder). A lock left by a process that no longer
exists on this host (killed with SIGKILL, the machine rebooted) is stale and taken over. Whoever
takes the lock first removes the temporary files a killed write left (:func:`cli.remove_temporaries`).
"""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path

from cli.files import remove_temporaries

__all__ = ["LOCK_NAME", "RunDirLocked", "run_dir_lock"]

LOCK_NAME = ".lock"


class RunDirLocked(ValueError):
    """Another live process holds the run directory (a ``ValueError``: every command reports it
    as a bad request, in one line with exit status 2)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # exists, owned by someone else
        return True
    return True


def _holder(lock: Path) -> tuple[str, int] | None:
    try:
        host, pid = lock.read_text().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None                  # unreadable or half-written: treated as stale


def _try_create(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{socket.gethostname()} {os.getpid()}\n")
    return True


@contextmanager
def run_dir_lock(run_dir: str | Path):
    """Hold ``run_dir``'s lock for the block (re-entrant within one process)."""
    lock = Path(run_dir) / LOCK_NAME
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = (socket.gethostname(), os.getpid())
    if _holder(lock) == me:          # already ours (a sweep inside a locked run, a nested call)
        yield
        return
    while not _try_create(lock):
        holder = _holder(lock)
        if holder is not None and holder[0] != me[0]:
            raise RunDirLocked(f"{run_dir} is in use by process {holder[1]} on {holder[0]}; if that run has "
                               f"ended, delete {lock}")
        if holder is not None and _alive(holder[1]):
            raise RunDirLocked(f"{run_dir} is in use by process {holder[1]} (lock file {lock}); wait for it to "
                               "end or stop it first")
        if _holder(lock) == holder:                      # stale (its process is gone) and still the same
            lock.unlink(missing_ok=True)
    remove_temporaries(lock.parent)                      # left by a killed write; no one else writes now
    try:
        yield
    finally:
        if _holder(lock) == me:
            lock.unlink(missing_ok=True)
