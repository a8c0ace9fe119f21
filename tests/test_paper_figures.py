"""Every figure in --quick mode (one shared run of `python -m paper_figures report --quick`), and
checks of the data behind each figure against the theory."""
import json

import numpy as np
import pytest

from paper_figures import FIGURES
from paper_figures.__main__ import main
from paper_figures.fig_frequency import TOLERANCE
from paper_figures.fig_phase import _boundary_eta_lam


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    publish = out / "published"
    assert main(["report", "--quick", "--out", str(out), "--publish", str(publish)]) == 0
    return out


def _summary(out, name):
    return json.loads((out / f"{name}.json").read_text())["summary"]


def test_every_figure_written(report_dir):
    for name in FIGURES:
        for ext in ("png", "pdf", "json"):
            assert (report_dir / f"{name}.{ext}").stat().st_size > 1000 or ext == "json", (name, ext)
        assert (report_dir / "published" / f"{name}.png").exists()


def test_periodic_figure_has_periods(report_dir):
    s = _summary(report_dir, "periodic")
    assert s["total_periods"] >= 2
    assert any((v or {}).get("n_periods", 0) >= 2 for k, v in s.items() if k.startswith("lr"))


def test_period_detail_destabilises_below_critical_norm(report_dir):
    s = _summary(report_dir, "period_detail")
    assert s["n_periods"] >= 2
    # the jump starts after the norm crossed rho_c (the unstable mode needs time to grow) ...
    assert s["rho_onsets_median"] < s["rho_critical"]
    # ... but not long after: within 20 % of the critical norm
    assert s["rho_onsets_median"] > 0.8 * s["rho_critical"]
    assert abs(s["period_measured"] / s["period_predicted"] - 1) < TOLERANCE


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
    ok = np.isfinite(net["measured"]) & np.isfinite(net["predicted"])
    assert ok.sum() >= 2
    assert np.all(np.abs(net["measured"][ok] / net["predicted"][ok] - 1) < 0.5)


def test_phase_diagram_follows_equilibrium_theory(report_dir):
    s = _summary(report_dir, "phase")
    assert s["counts_eta_lam"]["equilibrium"] > 0
    assert s["counts_eta_lam"]["edge"] + s["counts_eta_lam"]["periodic"] > 0
    assert s["equilibrium_norm_max_rel_error"] < 0.02
    data = np.load(report_dir / "phase.npz")
    # (eta*lam, sigma) panel: settled-above-critical runs lie on the stable side of the theory line
    lab, el, sig = data["labels2"], data["eta_lam2"], data["sigma2"]
    settled = np.isin(lab, ["equilibrium", "edge", "periodic"])
    predicted_stable = el < _boundary_eta_lam(sig, s["h"])
    agree = (lab == "equilibrium") == predicted_stable
    assert agree[settled].mean() >= 0.8


def test_equivalences_exact_while_stable(report_dir):
    s = _summary(report_dir, "equivalences")
    assert s["scaling"]["max_rel_dist"] == 0.0
    assert s["wrs"]["max_rel_dist_while_stable"] < 1e-12
    assert s["texp"]["max_rel_dist_while_stable"] < 1e-10
    # and the instability does amplify the rounding differences afterwards
    assert s["wrs"]["max_rel_dist"] > 1e-6


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


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["nope"])
    assert exc.value.code == 2
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["phase", "--quick", "--out", str(blocker / "sub")])
    assert exc.value.code == 2
    assert "cannot create output folder" in capsys.readouterr().err
