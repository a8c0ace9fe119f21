"""Run the toolkit's commands as a user would: a fresh interpreter, the checkout on PYTHONPATH."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "synthetic", "--width", "2", "--batch-size", "32", "--threads", "1", "--quiet"]
RUN_FILES = {"config.json", "metrics.csv", "evals.csv", "metrics.npz", "periods.json", "plot.png", "layers.csv",
             "equilibrium.png", "checkpoint.pt"}


def run_cli(module, *args, check=None, **kw):
    """``python -m module args`` in the repository root; ``check``: the exit status it must have."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    p = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=180, **kw)
    if check is not None:
        assert p.returncode == check, p.stderr
    return p


def only_run_dir(out: Path) -> Path:
    """The one run directory in ``out``."""
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]
