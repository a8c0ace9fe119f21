"""Fetch the python version of CIFAR-10/100 once: ``python -m nets.data download cifar10 DIR``.

The official archive (``https://www.cs.toronto.edu/~kriz/<archive>``, linked from
:data:`nets.data.CIFAR_URL`) is streamed to a hidden temporary file in ``DIR`` with a progress
bar, its MD5 compared with the published one, and it is extracted into a hidden temporary folder
that is checked (every expected file present) and only then renamed to ``DIR/<folder>/``. Any
failure -- no network, a truncated transfer, a wrong checksum, a bad archive, Ctrl-C -- removes
the temporary file and folder, so ``DIR`` never holds a half-made data set. Runs never download:
this is the one command that does.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from cli import Progress
from nets.data import CIFAR_SETS, DataError, cifar_files

__all__ = ["download_cifar", "archive_url", "DOWNLOAD_ROOT"]

DOWNLOAD_ROOT = "https://www.cs.toronto.edu/~kriz/"
_CHUNK = 1 << 20


def archive_url(name: str) -> str:
    """The official URL of the python-version archive of ``name``."""
    return DOWNLOAD_ROOT + CIFAR_SETS[name]["archive"]


def _fetch(url: str, dest: Path, progress: bool | None, timeout: float) -> str:
    """Stream ``url`` into ``dest``; return the MD5 hex digest. Raises DataError when the
    transfer fails or ends before the announced length."""
    md5, got = hashlib.md5(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as fh:
            total = int(resp.headers.get("Content-Length") or 0)
            bar = Progress((total + _CHUNK - 1) // _CHUNK, desc=f"{Path(url).name} (MiB)", enabled=progress)
            with bar:
                while chunk := resp.read(_CHUNK):
                    fh.write(chunk)
                    md5.update(chunk)
                    got += len(chunk)
                    bar.update(-(-got // _CHUNK) - bar.n)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"cannot download {url}: {reason}") from None
    if total and got != total:
        raise DataError(f"download of {url} truncated: {got} of {total} bytes; try again")
    return md5.hexdigest()


def _extract(archive: Path, into: Path, folder: str, name: str) -> Path:
    """Extract ``archive`` into ``into`` and return ``into/folder`` once every file is there."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            if sys.version_info >= (3, 12):
                tar.extractall(into, filter="data")
            else:   # pragma: no cover - Python 3.11: refuse absolute paths and '..' ourselves
                for m in tar.getmembers():
                    if m.name.startswith("/") or ".." in Path(m.name).parts or not (m.isfile() or m.isdir()):
                        raise tarfile.TarError(f"unsafe member {m.name!r}")
                tar.extractall(into)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot extract {archive.name}: {exc}") from None
    missing = [f for f in cifar_files(name) if not (into / folder / f).is_file()]
    if missing:
        raise DataError(f"{archive.name} lacks {folder}/{', '.join(missing)}: not the {name} python version")
    return into / folder


def download_cifar(name: str, root, *, url: str | None = None, md5: str | None = None,
                   progress: bool | None = None, timeout: float = 60.0) -> Path:
    """Download, check and extract CIFAR ``name`` into ``root/<folder>/``; return that folder.

    Parameters
    ----------
    name : {"cifar10", "cifar100"}
    root : path
        Parent folder (created if needed); afterwards usable as ``--data-dir``.
    url, md5 : str, optional
        Archive URL and its expected MD5 (default: the official ones; for mirrors and tests).
    progress : bool or None
        Progress bar on stderr (None: only on a terminal).

    A complete ``root/<folder>/`` already there is returned as is (nothing fetched). Raises
    :class:`DataError` with a one-line message on any failure, leaving ``root`` as it was.
    """
    if name not in CIFAR_SETS:
        raise DataError(f"unknown data set {name!r}; choose from {', '.join(CIFAR_SETS)}")
    spec = CIFAR_SETS[name]
    root = Path(root)
    target = root / spec["folder"]
    if target.exists():
        missing = [f for f in cifar_files(name) if not (target / f).is_file()]
        if not missing:
            return target
        raise DataError(f"{target} exists but lacks {', '.join(missing)}; remove it and download again")
    url, md5 = url or archive_url(name), (md5 or spec["md5"]).lower()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {root}: {exc.strerror}") from None
    tmp_dir = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec['folder']}.", suffix=".tmp"))
    try:
        archive = tmp_dir / spec["archive"]
        got = _fetch(url, archive, progress, timeout)
        if got != md5:
            raise DataError(f"MD5 of {url} is {got}, expected {md5}: corrupt or wrong file; try again")
        extracted = _extract(archive, tmp_dir / "x", spec["folder"], name)
        os.replace(extracted, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target
