"""Results as plain files, written atomically.

A temporary file next to the target is written and renamed into place, so an interrupted job never
leaves a half-written result behind. NaN and infinity become JSON ``null``. A folder of results can
carry a manifest of SHA-256 digests (``SHA256SUMS``, the format of ``sha256sum``) that finds a file
changed or damaged since it was written.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["ensure_writable", "atomic_write", "write_json", "write_csv", "write_npz", "to_jsonable", "file_sha256", "write_manifest",
           "verify_manifest", "MANIFEST_NAME", "remove_temporaries", "CSVStream"]


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


def ensure_writable(folder: str | Path) -> Path:
    """Create ``folder`` (with its parents) and check that a file can be written in it, before any
    work; raises the ``OSError`` that says why not."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass
    return folder


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


class _HashedText:
    """A text file that also feeds what is written to a hash."""

    def __init__(self, fh, sha):
        self.fh, self.sha = fh, sha

    def write(self, text: str) -> None:
        self.fh.write(text)
        self.sha.update(text.encode())


class CSVStream:
    """A CSV table written a row at a time, for records that must survive a crash.

    Rows are formatted as :func:`write_csv` formats them (so a table streamed row by row and one
    written at once are the same bytes) and flushed to the operating system at least every
    ``flush_every`` rows or ``flush_seconds`` seconds (checked as rows are written: a row that
    comes more than ``flush_seconds`` after the last flush is flushed with it): a killed process
    (even SIGKILL) loses at most that much. ``append=True`` continues an existing table (no header is written). The
    SHA-256 of the file is kept up to date as rows are written (:meth:`hexdigest`), so a manifest
    of a long table costs nothing at the end (:func:`write_manifest`'s ``digests``).
    """

    def __init__(self, path: str | Path, header, *, flush_every: int = 100, flush_seconds: float = 30.0,
                 append: bool = False):
        if int(flush_every) != flush_every or flush_every < 1 or not flush_seconds > 0:
            raise ValueError(f"flush_every must be an integer >= 1 and flush_seconds > 0, got {flush_every!r}, "
                             f"{flush_seconds!r}")
        self.path, self.width = Path(path), len(header)
        self.flush_every, self.flush_seconds = int(flush_every), float(flush_seconds)
        self._sha = hashlib.sha256()
        if append:
            with open(self.path, "rb") as fh:            # what is there already
                for block in iter(lambda: fh.read(1 << 20), b""):
                    self._sha.update(block)
        self._fh = open(self.path, "a" if append else "w", encoding="utf-8", newline="")
        self._csv = csv.writer(_HashedText(self._fh, self._sha))
        if not append:
            self._csv.writerow(list(header))
            self._fh.flush()
        self._unflushed, self._last = 0, time.monotonic()

    def write(self, row) -> None:
        if len(row) != self.width:
            raise ValueError(f"a row of {len(row)} values in a table of {self.width} columns")
        self._csv.writerow(row)
        self._unflushed += 1
        if self._unflushed >= self.flush_every or time.monotonic() - self._last >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        self._fh.flush()
        self._unflushed, self._last = 0, time.monotonic()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def hexdigest(self) -> str:
        """Hex SHA-256 of the file as written so far (the same as :func:`file_sha256` of it)."""
        return self._sha.hexdigest()


def write_npz(path: str | Path, *, compressed: bool = True, **arrays: Any) -> Path:
    """Write arrays to an ``.npz`` file atomically (zlib-compressed unless ``compressed=False``:
    several times faster to write, for files written at the end of a run that should not wait)."""
    save = np.savez_compressed if compressed else np.savez
    return atomic_write(Path(path), lambda fh: save(fh, **arrays))


#: the manifest of a results folder, in the format of ``sha256sum`` (``sha256sum -c SHA256SUMS`` checks it)
MANIFEST_NAME = "SHA256SUMS"


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: str | Path, names, digests: Mapping[str, str] | None = None) -> Path:
    """Write ``folder/SHA256SUMS``: the SHA-256 of each file ``names`` (relative to ``folder``) that
    exists; ``digests`` gives those already known (e.g. :meth:`CSVStream.hexdigest`), not re-read."""
    folder = Path(folder)
    known = dict(digests or {})
    lines = [f"{known.get(n) or file_sha256(folder / n)}  {n}\n" for n in sorted(set(map(str, names)))
             if (folder / n).is_file()]
    return atomic_write(folder / MANIFEST_NAME, lambda fh: fh.write("".join(lines).encode()))


def verify_manifest(folder: str | Path) -> list[str]:
    """Files of ``folder/SHA256SUMS`` that are missing or no longer match it (``[]``: all intact, or
    no manifest)."""
    folder = Path(folder)
    try:
        text = (folder / MANIFEST_NAME).read_text()
    except OSError:
        return []
    bad = []
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if not (folder / name).is_file() or file_sha256(folder / name) != digest:
            bad.append(name)
    return bad


def remove_temporaries(folder: str | Path) -> list[str]:
    """Delete what an interrupted :func:`atomic_write` left in ``folder`` (``.<name>.*.tmp``); returns
    their names. Call it only while no other process writes there (e.g. under a lock)."""
    gone = []
    for p in Path(folder).glob(".*.tmp"):
        p.unlink(missing_ok=True)
        gone.append(p.name)
    return gone
