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


def publish_on_fake_cifar(tmp_path: Path, figure: str) -> tuple[dict, list[str]]:
    """``python -m paper_figures FIGURE --quick`` (in this process, so a test can shrink the preset)
    on a fake CIFAR-10 folder, published to ``tmp_path/pub``: checks that it succeeds, that the
    published JSON names no machine's absolute path and that the figure was drawn; returns the
    JSON's ``summary`` and the arguments (to run it again)."""
    import json

    from nets.data import write_fake_cifar
    from paper_figures.__main__ import main

    write_fake_cifar(tmp_path / "data", "cifar10", n_train=120, n_test=40)
    args = [figure, "--quick", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "data"),
            "--publish", str(tmp_path / "pub")]
    assert main(args) == 0
    text = (tmp_path / "pub" / f"{figure}.json").read_text()
    assert str(tmp_path) not in text and "/work/" not in text          # no machine's absolute path
    assert (tmp_path / "pub" / f"{figure}.png").stat().st_size > 1000
    return json.loads(text)["summary"], args
