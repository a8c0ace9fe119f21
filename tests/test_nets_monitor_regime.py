"""nets.monitor.state: the regime rules on synthetic series with known answers, and the table."""
import math

import numpy as np
import pytest

from nets.monitor.state import analysis_window, classify_state, format_table, ratio_state, rms

EQ = 0.01
EL = np.full(100, 0.01)          # eta*lambda per record; records every 10 iterations


def _classify(steps, events=(), summary=None, eq=EQ, **kw):
    return classify_state(steps, np.full(100, eq), list(events), summary, **{"eta_lam": EL, "end": 1000, **kw})


def _steps(angle, n=100, grad=1.0):
    it = np.arange(n) * 10
    return {"iteration": it, "angular_update": np.broadcast_to(angle, n).astype(float),
            "grad_norm": np.broadcast_to(grad, n).astype(float), "si_norm_equiv": np.linspace(5, 4, n),
            "train_loss": np.full(n, 0.1)}


@pytest.mark.parametrize("factor,regime,side", [(1.0, "at equilibrium", None), (1.2, "at equilibrium", None),
                                                (0.5, "approaching equilibrium", "slower"),
                                                (2.0, "approaching equilibrium", "faster")])
def test_angular_update_against_its_equilibrium_value(factor, regime, side):
    r = _classify(_steps(factor * EQ))
    assert r["regime"] == regime and r["evidence"]["ratio"] == pytest.approx(factor)
    assert side is None or side in r["reason"]


def test_a_norm_still_shrinking_under_wd_is_not_at_equilibrium():
    steps = _steps(EQ)
    steps["si_norm_equiv"] = 5 * np.exp(-0.01 * steps["iteration"])      # drift -1: WD alone
    r = _classify(steps)
    assert r["regime"] == "approaching equilibrium" and "not stationary" in r["reason"]
    assert r["evidence"]["norm_drift"] == pytest.approx(-1.0) and r["evidence"]["wd_time"] == pytest.approx(10.0)


def test_only_the_window_counts():
    angle = np.r_[np.full(80, 0.2 * EQ), np.full(20, EQ)]      # slow at first, at equilibrium at the end
    assert _classify(_steps(angle))["regime"] == "at equilibrium"
    angle = np.r_[np.full(80, EQ), np.full(20, 0.2 * EQ)]
    assert _classify(_steps(angle))["regime"] == "approaching equilibrium"


def test_periodic_while_destabilisations_are_recent_then_the_window_after_them():
    steps = _steps(EQ)
    r = _classify(steps, [200, 400, 600, 800], {"predicted_mean_length": 190.0})
    assert r["regime"] == "periodic" and "4 destabilisations" in r["reason"] and "predicted 190" in r["reason"]
    r = _classify(steps, [100, 150, 200])    # long ago: settled since
    assert r["regime"] == "at equilibrium" and r["evidence"]["periodic_until"] == 200
    one = _classify(steps, [900])            # one jump is no period
    assert one["regime"] == "at equilibrium" and one["evidence"]["window_from"] == 910


def test_collapse_and_no_equilibrium():
    grad = np.r_[np.ones(60), np.zeros(40)]
    r = _classify(_steps(EQ, grad=grad))
    assert r["regime"] == "collapsed" and r["evidence"]["collapse"]["iteration"] == 600
    r = _classify(_steps(EQ), eq=np.nan, eta_lam=EL * 0, theory_note="no weight decay")
    assert r["regime"] == "no equilibrium" and r["reason"] == "no weight decay"


def test_helpers_and_table():
    assert rms([3.0, 4.0, np.nan]) == pytest.approx(math.sqrt(12.5)) and math.isnan(rms([]))
    assert [ratio_state(v) for v in (0.5, 1.0, 1.29, 1.31, float("nan"))] == [
        "slower", "equilibrium", "equilibrium", "faster", "-"]
    w = analysis_window(np.arange(50) * 10, [300])
    assert w.sum() == 10 and w[-10:].all()
    row = {"name": "conv", "si": "individual", "numel": 9, "norm": 1.0, "eq_norm": 2.0, "eff_lr": 0.1,
           "eq_eff_lr": float("nan"), "eff_grad_norm": 1.0, "angular_update": 0.01, "eq_angular_update": 0.02,
           "ratio": 0.5, "state": "slower"}
    text = format_table([row, {**row, "name": "total", "si": "group"}], {"regime": "x", "reason": "y"})
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["tensor", "SI", "numel"] and lines[-1] == "regime: x -- y"
    assert "slower" in lines[2] and lines[2].split()[6] == "-"           # NaN shown as "-"


def test_the_table_says_what_each_number_is():
    row = {"name": "w", "si": "individual", "numel": 9, "norm": 1.0, "eq_norm": 2.0, "eff_lr": 0.1, "eq_eff_lr": 0.2,
           "eff_grad_norm": 0.5, "angular_update": 0.01, "eq_angular_update": 0.02, "ratio": 0.5, "state": "slower"}
    text = format_table([row], {"regime": "x", "reason": "y"}, {"from": 800, "to": 990, "records": 20})
    legend = text.splitlines()[-2]
    assert "RMS over the analysis window (iterations 800-990, 20 records)" in legend
    assert all(f"{name}" in legend for name in ("rho*", "eff_lr*", "dtheta*", "ratio = dtheta/dtheta*"))
