"""Every figure in --quick mode (one shared run of `python -m paper_figures report --quick`), and
checks of the data behind each figure against the theory."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from figure_probe import probe_savefig
from interrupt import popen_interruptible

from paper_figures import FIGURES
from paper_figures.__main__ import main
from paper_figures.common import net_config
from paper_figures.fig_frequency import THEORY_LABEL, TOLERANCE
from paper_figures.fig_phase import boundary_eta_lam

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """The report's output folder and what each saved figure shows (tests/figure_probe.py)."""
    out = tmp_path_factory.mktemp("figures")
    publish = out / "published"
    with probe_savefig() as seen:
        assert main(["report", "--quick", "--out", str(out), "--publish", str(publish)]) == 0
    return out, seen


@pytest.fixture(scope="module")
def report_dir(report_run):
    return report_run[0]


def _summary(out, name):
    return json.loads((out / f"{name}.json").read_text())["summary"]


@pytest.mark.slow
def test_every_figure_written(report_run):
    report_dir, seen = report_run
    for name in FIGURES:
        for ext in ("png", "pdf", "json"):
            assert (report_dir / f"{name}.{ext}").is_file(), (name, ext)
        assert (report_dir / "published" / f"{name}.png").exists()
        # every curve named in a legend has data (an empty or truncated curve fails here)
        for ax in seen[f"{name}.png"]["axes"]:
            drawn = {ln["label"]: ln["points"] for ln in ax["lines"] if not ln["label"].startswith("_")}
            for text in ax["legend"]:
                assert drawn.get(text, 1) >= 1, (name, text)
            assert all(n >= 2 for label, n in drawn.items() if "stability" not in label), (name, drawn)


@pytest.mark.slow
def test_periodic_figure_shows_every_complete_run(report_run):
    """Three learning rates, each curve the whole run (every record of its metrics.npz), in every panel."""
    report_dir, seen = report_run
    iters = net_config(1.0, True).iters
    records = {}
    for lr in ("0.5", "1", "2"):
        it = np.load(report_dir / "net_runs" / f"lr{lr}" / "metrics.npz")["step_iteration"]
        assert it[-1] == iters - 1                      # the run is complete
        records[f"η = {lr}"] = it.size
    for ax in seen["periodic.png"]["axes"]:
        curves = {ln["label"]: ln for ln in ax["lines"] if ln["label"].startswith("η = ")}
        assert sorted(curves) == sorted(records)
        assert all(c["n"] == records[k] and c["points"] == records[k] for k, c in curves.items()), curves


@pytest.mark.slow
def test_frequency_legend_and_axis_are_both_frequencies(report_run):
    report_dir, seen = report_run
    s = _summary(report_dir, "frequency")
    for ax, label in zip(seen["frequency.png"]["axes"], ("toy", "net")):
        assert "per iteration" in ax["ylabel"] and THEORY_LABEL in ax["legend"]
        theory = next(ln for ln in ax["lines"] if ln["label"] == THEORY_LABEL)
        np.testing.assert_allclose(theory["y"], np.array(s[label]["predicted"], dtype=float), rtol=1e-12)


@pytest.mark.slow
def test_periodic_figure_has_periods(report_dir):
    s = _summary(report_dir, "periodic")
    assert s["total_periods"] >= 2
    assert any((v or {}).get("n_periods", 0) >= 2 for k, v in s.items() if k.startswith("lr"))


@pytest.mark.slow
def test_period_detail_destabilises_below_critical_norm(report_dir):
    s = _summary(report_dir, "period_detail")
    assert s["n_periods"] >= 2
    # the jump starts after the norm crossed rho_c (the unstable mode needs time to grow) ...
    assert s["rho_onsets_median"] < s["rho_critical"]
    # ... but not long after: within 20 % of the critical norm
    assert s["rho_onsets_median"] > 0.8 * s["rho_critical"]
    assert abs(s["period_measured"] / s["period_predicted"] - 1) < TOLERANCE


@pytest.mark.slow
def test_frequency_points_match_theory(report_dir):
    s = _summary(report_dir, "frequency")
    toy = {k: np.array(v, dtype=float) for k, v in s["toy"].items() if k != "max_rel_error"}
    assert np.all(toy["n_periods"] >= 5)
    ratio = toy["measured"] / toy["predicted"]
    assert np.all(np.abs(ratio - 1) < TOLERANCE), ratio
    # equal eta*lam, different (eta, lam): the same frequency (scaling equivalence), within 3 %
    same = np.isclose(toy["eta_lam"], 1e-3)
    assert same.sum() == 3
    f = toy["measured"][same]
    assert f.max() / f.min() < 1.03
    # frequency grows with eta*lam
    eta1 = toy["eta"] == 1.0
    order = np.argsort(toy["eta_lam"][eta1])
    assert np.all(np.diff(toy["measured"][eta1][order]) > 0)
    net = {k: np.array(v, dtype=float) for k, v in s["net"].items() if k != "max_rel_error"}
    assert np.all(np.isfinite(net["measured"]) & np.isfinite(net["predicted"]))
    # the formula times the decay phase only: a network's period is longer (the jump and the slow
    # recovery after it add to it), the measured frequency lower by 3 % (eta = 0.5) to 27 % (eta = 2)
    ratio = net["measured"] / net["predicted"]
    assert np.all((ratio > 0.65) & (ratio < 1.05)), ratio


@pytest.mark.slow
def test_phase_diagram_follows_equilibrium_theory(report_dir):
    s = _summary(report_dir, "phase")
    assert s["counts_eta_lam"]["equilibrium"] > 0
    assert s["counts_eta_lam"]["edge"] + s["counts_eta_lam"]["periodic"] > 0
    assert s["equilibrium_norm_max_rel_error"] < 0.02
    data = np.load(report_dir / "phase.npz")
    # (eta*lam, sigma) panel: settled-above-critical runs lie on the stable side of the theory line
    lab, el, sig = data["labels2"], data["eta_lam2"], data["sigma2"]
    settled = np.isin(lab, ["equilibrium", "edge", "periodic"])
    predicted_stable = el < boundary_eta_lam(sig, s["h"])
    agree = (lab == "equilibrium") == predicted_stable
    assert agree[settled].mean() >= 0.8


@pytest.mark.slow
def test_equivalences_exact_while_stable(report_dir):
    s = _summary(report_dir, "equivalences")
    assert s["scaling"]["max_rel_dist"] == 0.0
    assert s["wrs"]["max_rel_dist_while_stable"] < 1e-12
    assert s["texp"]["max_rel_dist_while_stable"] < 1e-10
    # and the instability does amplify the rounding differences afterwards
    assert s["wrs"]["max_rel_dist"] > 1e-6


@pytest.mark.slow
def test_report_table(report_dir):
    text = (report_dir / "report.md").read_text()
    for name in FIGURES:
        assert f"({name}.png)" in text
    table = json.loads((report_dir / "report.json").read_text())["table"]
    quantities = {r["quantity"] for r in table}
    for q in ("equilibrium norm", "equilibrium effective LR", "angular update per step (rad)",
              "period length (iter)", "period frequency (1/iter)"):
        assert q in quantities
    eq = [r for r in table if r["quantity"] == "equilibrium norm" and "μ=0 " in r["setting"]]
    assert eq and all(r["rel_error"] < 0.02 for r in eq)
    assert (report_dir / "published" / "report.md").exists()


def test_cli_errors(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exc:
        main(["nope"])
    assert exc.value.code == 2
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args in (["phase", "--quick", "--out", str(blocker / "sub")],
                 ["report", "--quick", "--out", str(tmp_path / "ok"), "--publish", str(blocker / "pub")]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "cannot write to the output folder" in err


@pytest.mark.parametrize("broken", ["nowhere", "bad_pickle"])
def test_missing_or_broken_data_dir_is_one_line(tmp_path, capsys, monkeypatch, broken):
    """Full mode with $SIBN_DATA_DIR pointing nowhere or at a broken pickle: nets.data.DataError."""
    data = tmp_path / "data"
    if broken == "bad_pickle":
        folder = data / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                     "test_batch", "batches.meta"):
            (folder / name).write_bytes(b"not a pickle")
    monkeypatch.setenv("SIBN_DATA_DIR", str(data))
    with pytest.raises(SystemExit) as exc:
        main(["periodic", "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and str(data) in err


@pytest.mark.parametrize("figure", ["period_detail", "phase"])
def test_interrupted_toy_sweep_draws_nothing(tmp_path, monkeypatch, figure):
    """The engine returns the steps done at Ctrl-C; the figures must not draw from them."""
    import paper_figures.toy_runs as toy_runs
    from simulate.sweep import sweep as real_sweep

    def interrupted(*args, **kw):
        traj = real_sweep(*args, **{**kw, "steps": 20})
        traj.interrupted = True
        return traj
    monkeypatch.setattr(toy_runs, "sweep", interrupted)
    assert main([figure, "--quick", "--out", str(tmp_path)]) == 130
    assert not list(tmp_path.glob(f"{figure}.*"))


@pytest.mark.slow
def test_sigint_stops_the_job_keeps_the_checkpoint_and_publishes_nothing(tmp_path):
    """Ctrl-C during a network run of `report --quick`: exit 130, no figure, no report, a resumable run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    out, publish = tmp_path / "out", tmp_path / "pub"
    proc = popen_interruptible([sys.executable, "-m", "paper_figures", "report", "--quick", "--out", str(out),
                             "--publish", str(publish)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run = out / "net_runs" / "lr0.5"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "config.json").exists():
            time.sleep(0.05)
        time.sleep(1.0)                      # into the training loop
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()                          # never leave it running when the test fails
        proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted: nothing published" in err and "Traceback" not in err
    assert not list(out.glob("*.png")) and not (out / "report.md").exists()
    assert not publish.exists() or not list(publish.iterdir())
    periods = json.loads((run / "periods.json").read_text())
    assert not periods["completed"] and 0 < periods["iterations"] < 3000
    assert (run / "checkpoint.pt").is_file()
