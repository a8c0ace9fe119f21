"""Results as plain files, written atomically.

A temporary file next to the target is written and renamed into place, so an interrupted job never
leaves a half-written result behind. NaN and infinity become JSON ``null``.
"""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["atomic_write", "write_json", "write_csv", "write_npz", "to_jsonable"]


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
