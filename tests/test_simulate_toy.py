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
from cli import Progress

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
    ["--record-every", "5000", "--steps", "1000"],
])
def test_bad_options_one_line_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        toy.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err
    assert "interrupted" not in err


@pytest.mark.parametrize("args", [["--lam", "-1e-3"], ["--eta", "1", "-2.5E-1"], ["--noise", "-inf"],
                                  ["--momentum", "-.5"]])
def test_negative_numbers_reach_the_validator(args, capsys):
    with pytest.raises(SystemExit) as exc:
        toy.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{args[0]} values must" in err, err


def test_unwritable_output_fails_before_the_simulation(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    started = []
    monkeypatch.setattr(toy, "sweep", lambda *a, **k: started.append(1))
    with pytest.raises(SystemExit) as exc:
        toy.main(["--out", str(blocker / "sub")])
    assert exc.value.code == 2 and not started
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write to the output folder" in err and str(blocker) in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_read_only_output_folder_fails_before_the_simulation(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(SystemExit) as exc:
            toy.main(["--out", str(ro / "sub")])
        assert exc.value.code == 2 and "cannot write to the output folder" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


def test_failure_while_writing_results_is_one_line(tmp_path, monkeypatch, capsys):
    """A disk that fills up after the simulation: one line naming the file, exit 2."""
    def full(path, *a, **k):
        raise OSError(28, "No space left on device", str(path))
    monkeypatch.setattr(toy, "write_csv", full)
    with pytest.raises(SystemExit) as exc:
        toy.main(["--steps", "200", "--dim", "10", "--seeds", "1", "--out", str(tmp_path), "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "curves.csv" in err


def test_plot_draws_every_configuration_of_the_readme_sweep(tmp_path, capsys):
    """`--lam 1e-3 2e-3 4e-3`: 3 settings x 3 seeds = 9 curves per panel, one legend entry per setting."""
    from figure_probe import probe_savefig
    with probe_savefig() as seen:
        assert toy.main(["--lam", "1e-3", "2e-3", "4e-3", "--steps", "600", "--dim", "20",
                         "--out", str(tmp_path)]) == 0
    norm_panel = seen["toy.png"]["axes"][1]
    curves = [ln for ln in norm_panel["lines"] if ln["n"] == 600]
    assert len(curves) == 9 and all(ln["points"] == 600 for ln in curves)
    assert norm_panel["legend"] == [f"η=1, λ={v}, σ=1e-08, 3 seeds" for v in ("0.001", "0.002", "0.004")]
    assert "showing" not in seen["toy.png"]["axes"][0]["title"] and "toy.png:" not in capsys.readouterr().out


def test_plot_says_which_settings_it_left_out(tmp_path, capsys):
    from figure_probe import probe_savefig
    lams = [f"{v:.1e}" for v in np.geomspace(1e-3, 4e-3, 12)]
    with probe_savefig() as seen:
        assert toy.main(["--lam", *lams, "--seeds", "2", "--steps", "300", "--dim", "10",
                         "--out", str(tmp_path)]) == 0
    note = "showing 10 of 12 settings (20 of 24 runs; all are in curves.csv)"
    assert note in seen["toy.png"]["axes"][0]["title"]
    assert len([ln for ln in seen["toy.png"]["axes"][1]["lines"] if ln["n"] == 300]) == 20
    assert f"toy.png: {note}" in capsys.readouterr().out


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


def _sawtooth(eta, lam, G, rho_max, rho_min, n_periods):
    """Norm that decays by the exact recurrence u -> (1-eta lam)^2 u + eta^2 G^2/u (theory.dynamics)
    from rho_max to rho_min, then jumps back in one step; returns (norm, decay lengths)."""
    from theory.dynamics import norm_trajectory
    norm, lengths = [], []
    for _ in range(n_periods):
        u = norm_trajectory(rho_max**2, np.full(100_000, G**2), eta, lam)
        n = int(np.argmax(u <= rho_min**2))
        norm.extend(np.sqrt(u[:n + 1]))
        lengths.append(n + 1)
    return np.array(norm), lengths


@pytest.mark.parametrize("G,rho_min", [(0.0, 2.0), (0.3, 2.0), (0.3, 1.8)])   # G = 0.3: rho* = 1.73
def test_period_prediction_with_the_gradient_between_jumps(G, rho_min):
    """compare_with_theory on a sawtooth with a known gradient level: the gradient-aware period
    counts the recurrence's steps; the pure-WD one only when the gradient is zero."""
    from simulate.compare import compare_with_theory
    from simulate.engine import Trajectory
    from theory.equilibrium import equilibrium_norm
    eta, lam = 1.0, 5e-3
    norm, lengths = _sawtooth(eta, lam, G, 3.0, rho_min, 6)
    n = norm.size
    loss = np.full(n, 1e-3)
    loss[np.flatnonzero(np.diff(norm) > 0) + 1] = 1.0        # a loss spike at every jump
    cfg = {k: np.array([v]) for k, v in dict(eta=eta, lam=lam, momentum=0.0, noise=0.0, seed=0).items()}
    traj = Trajectory(config=cfg, iterations=np.arange(n), norm=norm[:, None], loss=loss[:, None],
                      eff_grad_norm=np.full((n, 1), G), steps_done=n)
    row = compare_with_theory(traj)[0]
    assert row["n_periods"] == 4         # 5 jumps between the 6 decays
    assert row["period_measured"] == pytest.approx(np.mean(lengths), abs=1.5)
    assert row["eff_grad_decay_rms"] == pytest.approx(G)
    assert row["period_predicted_gradient"] == pytest.approx(np.mean(lengths), abs=2.0)
    if G == 0:
        assert row["period_predicted"] == pytest.approx(row["period_predicted_gradient"], rel=1e-9)
    else:
        assert row["rho_decay_equilibrium"] == pytest.approx(equilibrium_norm(eta, lam, G))
        assert row["period_predicted"] < 0.8 * np.mean(lengths)       # pure WD misses the gradient
        assert toy._gradient_note(row)


@pytest.mark.slow
def test_minibatch_mlp_says_why_periods_exceed_the_pure_decay_formula(tmp_path, capsys):
    """README's `--objective mlp --batch-size 32`: mini-batch noise holds the norm at its equilibrium,
    the measured periods are ~3x the pure-WD formula, and the output says why."""
    assert toy.main(["--objective", "mlp", "--batch-size", "32", "--seeds", "1", "--steps", "3000",
                     "--out", str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    row = json.loads((tmp_path / "comparison.json").read_text())[0]
    assert row["n_periods"] >= 2 and row["period_measured"] > 2 * row["period_predicted"]
    # the norm sits at the equilibrium of the gradient level measured between jumps
    assert row["rho_min_measured"] == pytest.approx(row["rho_decay_equilibrium"], rel=0.05)
    assert "gradient is not negligible" in out and "underestimates the period" in out


def test_quadratic_default_needs_no_gradient_note(tmp_path, capsys):
    assert toy.main(["--seeds", "1", "--out", str(tmp_path), "--no-plot"]) == 0
    row = json.loads((tmp_path / "comparison.json").read_text())[0]
    assert row["period_predicted_gradient"] == pytest.approx(row["period_predicted"], rel=0.05)
    assert "not negligible" not in capsys.readouterr().out
