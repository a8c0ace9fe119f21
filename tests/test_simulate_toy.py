"""``python -m simulate.toy``: outputs, defaults, errors, Ctrl-C."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import simulate.toy as toy
from simulate.io import Progress

ROOT = Path(__file__).resolve().parents[1]


def _run_cli(*args, cwd=ROOT, timeout=120):
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "simulate.toy", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_default_run_shows_periods_and_writes_everything(tmp_path):
    """No arguments except the output folder (the default folder is runs/toy-...)."""
    proc = _run_cli("--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert {"toy.png", "curves.csv", "curves.npz", "comparison.csv", "comparison.json", "summary.json"} <= names
    assert (out / "toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_configs"] == 3 and summary["steps_done"] == 3000 and not summary["interrupted"]
    assert all(p["is_periodic"] for p in summary["periods"])
    rows = json.loads((out / "comparison.json").read_text())
    assert all(r["regime"] == "periodic" and r["period_predicted"] > 0 for r in rows)
    assert "periods of" in proc.stdout and "theory" in proc.stdout
    with open(out / "curves.csv") as fh:
        header = next(csv.reader(fh))
        n_rows = sum(1 for _ in fh)
    assert {"iteration", "norm", "loss", "eff_lr", "phase", "eta", "lam", "seed"} <= set(header)
    assert n_rows == 3 * 3000


def test_help_lists_options():
    proc = _run_cli("--help")
    assert proc.returncode == 0
    for opt in ("--objective", "--eta", "--lam", "--momentum", "--steps", "--seeds", "--out", "--quiet",
                "--noise", "--optimizer"):
        assert opt in proc.stdout


@pytest.mark.parametrize("args", [
    ["--eta", "-1"], ["--bogus"], ["--optimizer", "wrs", "--lam", "1e-3"], ["--steps", "0"],
    ["--momentum", "1.5"], ["--objective", "resnet"], ["--eta", "10", "--lam", "0.2"],
    ["--batch-size", "8"], ["--steps", "ten"],
])
def test_bad_options_one_line_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        toy.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_sweep_grid_quiet_and_default_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = toy.main(["--lam", "2e-3", "4e-3", "--eta", "0.5", "1", "--seeds", "1", "--steps", "800",
                     "--dim", "20", "--quiet", "--no-plot"])
    assert code == 0
    printed = capsys.readouterr().out.strip()
    folder = Path(printed)
    assert folder.parent.name == "runs" and folder.name.startswith("toy-quadratic-")
    rows = json.loads((tmp_path / folder / "comparison.json").read_text())
    assert len(rows) == 4 and not (tmp_path / folder / "toy.png").exists()


@pytest.mark.parametrize("extra", [
    ["--objective", "classifier", "--steps", "300"],
    ["--objective", "mlp", "--batch-size", "32", "--steps", "100"],
    ["--optimizer", "texp", "--steps", "300", "--momentum", "0.5"],
    ["--optimizer", "wrs", "--lam", "0", "--steps", "300"],
])
def test_other_objectives_and_optimizers(tmp_path, extra):
    assert toy.main([*extra, "--seeds", "2", "--out", str(tmp_path), "--quiet"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_configs"] == 2 and summary["options"]["objective"] in ("quadratic", "classifier", "mlp")
    assert (tmp_path / "toy.png").exists()


class _InterruptingProgress(Progress):
    """Ctrl-C after the first 1,000 steps."""

    def update(self, n=1, postfix=""):
        super().update(n, postfix)
        if self.n >= 1000:
            raise KeyboardInterrupt


def test_ctrl_c_still_writes_partial_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(toy, "Progress", _InterruptingProgress)
    code = toy.main(["--steps", "100000", "--method", "generic", "--dim", "20", "--out", str(tmp_path)])
    assert code == 130
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["interrupted"] and summary["steps_done"] == 1000
    data = np.load(tmp_path / "curves.npz")
    assert data["norm"].shape == (1000, 3)
    assert "INTERRUPTED" in capsys.readouterr().out
