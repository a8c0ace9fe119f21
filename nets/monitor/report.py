"""What :class:`nets.SIMonitor` concludes from its records, and the files it writes.

:func:`analyse_monitor` turns the recorded rows into: the periods (the offline detector and the
period-length prediction of :func:`analysis.report.analyse_run`, the same analysis as a
``nets.train`` run), the theory's equilibrium values per record and per SI tensor
(:mod:`nets.monitor.theory`), and the regime (:mod:`nets.monitor.state`). The window statistics
(RMS over the analysis window) are what the per-tensor table shows.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from analysis.report import RunInfo, analyse_run
from cli import write_csv, write_json, write_manifest, write_npz
from nets.monitor.state import analysis_window, classify_state, ratio_state, rms
from nets.monitor.theory import Hyper, effective_lr, equilibrium, equilibrium_series

__all__ = ["analyse_monitor", "write_monitor_outputs", "layer_columns"]

NAN = float("nan")
EQ_COLUMNS = ("eq_si_norm", "eq_eff_lr", "eq_angular_update")


def layer_columns(names: list[str], layers: dict) -> dict:
    """Per-tensor CSV columns ``norm:<name>``, ``grad_norm:<name>``, ``angular_update:<name>``."""
    cols = {}
    for prefix, key in (("norm", "layer_norms"), ("grad_norm", "layer_grad_norms"),
                        ("angular_update", "layer_angular_updates")):
        for j, name in enumerate(names):
            cols[f"{prefix}:{name}"] = layers[key][:, j]
    return cols


def _eq_angles(hyper_rows: list[list[Hyper]], n_groups: int) -> np.ndarray:
    """Delta theta* per record and SI group (``n x groups``), cached per distinct Hyper."""
    cache: dict = {}
    out = np.full((len(hyper_rows), n_groups), NAN)
    for r, hs in enumerate(hyper_rows):
        for g, h in enumerate(hs):
            if h not in cache:
                cache[h] = equilibrium(h, NAN, 1)[0]["angular_update"]
            out[r, g] = cache[h]
    return out


def _trailing_rms(x: np.ndarray, width: int = 10) -> np.ndarray:
    c = np.cumsum(np.r_[0.0, np.nan_to_num(np.asarray(x, dtype=float) ** 2)])
    i = np.arange(1, x.size + 1)
    lo = np.maximum(i - width, 0)
    return np.sqrt((c[i] - c[lo]) / (i - lo))


def _run_info(h: Hyper, lrs: np.ndarray, k: int) -> RunInfo:
    decoupled_hb = h.kind == "sgd" and h.decoupled and not h.nesterov and h.dampening == 0
    kind = "sgd" if h.plain_sgd or decoupled_hb else (h.kind if h.kind != "sgd" else "sgd-variant")
    lr = float(np.median(lrs)) if lrs.size else h.lr
    return RunInfo(lr=lr, lam_si_equivalent=h.wd, momentum=h.momentum if h.plain_sgd else 0.0,
                   record_every=k, optimizer=kind)


def _row(name, si, numel, h: Hyper, norm, grad, angle, eq_angle, individual=True) -> dict:
    """One table row from window series: RMS of the norm, effective gradient norm, angular update
    and of Delta theta* per record; rho*, eff_lr* for ``h`` (its LR: the window's RMS LR)."""
    rho, g, a, eq_a = rms(norm), rms(grad), rms(angle), rms(eq_angle)
    eq, note = equilibrium(h, g, numel) if individual else ({"norm": NAN, "eff_lr": NAN}, "SI only jointly")
    ratio = a / eq_a if individual and eq_a > 0 else NAN
    return {"name": name, "si": si, "numel": int(numel), "lr": h.lr, "wd": h.wd, "norm": rho,
            "eq_norm": eq["norm"], "eff_lr": effective_lr(h, rho), "eq_eff_lr": eq["eff_lr"],
            "eff_grad_norm": g, "angular_update": a, "eq_angular_update": eq_a if individual else NAN,
            "ratio": ratio, "state": ratio_state(ratio) if individual else "joint", "note": note}


def analyse_monitor(mon) -> dict:
    """Summary of an :class:`nets.SIMonitor`: SI groups, hyper-parameters, periods, regime, the
    per-tensor rows and the total row, and the per-record equilibrium series.

    The rows are statistics over the analysis window (:func:`nets.monitor.state.analysis_window`):
    RMS of each measured series and of :math:`\\Delta\\theta^*` per record, and :math:`\\rho^*`,
    :math:`\\tilde\\eta^*` for the window's RMS LR (with a constant LR: the current values)."""
    steps, _, _ = mon.recorder.arrays()
    layers = mon.recorder.layer_arrays()
    it = steps["iteration"]
    n = it.size
    hyper_rows = mon.hyper_rows()
    current = hyper_rows[-1] if hyper_rows else mon.hypers()
    first = mon.group_of[0]
    h0 = current[first]
    if mon.detector.stale or mon.detector.report is None:
        mon.detector.update()
    lrs = np.array([[h.lr for h in r] for r in hyper_rows]).reshape(n, len(current))
    report, periods = analyse_run(steps, mon.run_info or _run_info(h0, lrs[:, first], mon.log_every))
    events = list(periods.get("event_iterations", []))
    eq_angle = _eq_angles(hyper_rows, len(current))
    window = analysis_window(it, events)
    window_info = ({"from": int(it[window][0]), "to": int(it[window][-1]), "records": int(window.sum())}
                   if window.any() else {"records": 0})
    at_window = [replace(h, lr=rms(lrs[window, g])) if window.any() else h for g, h in enumerate(current)]
    uniform = len({(h.kind, h.lr, h.wd, h.momentum, h.nesterov, h.decoupled) for h in current}) == 1
    numel = sum(mon.watch.sizes)
    rows = []
    for j, name in enumerate(mon.names):
        g = mon.group_of[j]
        ind = name in mon.groups.individual
        rows.append(_row(name, "individual" if ind else "joint", mon.watch.sizes[j], at_window[g],
                         layers["layer_norms"][window, j],
                         (layers["layer_norms"][:, j] * layers["layer_grad_norms"][:, j])[window],
                         layers["layer_angular_updates"][window, j], eq_angle[window, g], ind))
    total_angle = eq_angle[:, first] if uniform else np.full(n, NAN)
    total = _row("total", "group", numel, at_window[first], steps["si_norm"][window], steps["eff_grad_norm"][window],
                 steps["angular_update"][window], total_angle[window], uniform)
    _, note = equilibrium(h0, total["eff_grad_norm"], numel)
    if not uniform:
        note = "SI tensors in parameter groups with different hyper-parameters: see the per-tensor rows"
    eta_lam = np.array([r[first].lr * r[first].wd for r in hyper_rows])
    regime = classify_state(steps, total_angle, events, periods, eta_lam=eta_lam, end=mon.iteration,
                             theory_note=note)
    g_series = _trailing_rms(steps["eff_grad_norm"])
    eq_norm, eq_eff = np.full(n, NAN), np.full(n, NAN)
    if uniform:                                  # one vectorised call per distinct hyper-parameters
        of_record = [hs[first] for hs in hyper_rows]
        for h in dict.fromkeys(of_record):
            rows_h = np.array([x == h for x in of_record])
            eq_norm[rows_h], eq_eff[rows_h] = equilibrium_series(h, g_series[rows_h], numel)
    if mon.sharpness is not None and mon.recorder.sharpness:
        from analysis.report import stability_at_destabilisations
        sh = mon.recorder.sharpness_table()
        periods["stability"] = stability_at_destabilisations(sh, events, h0.momentum if h0.kind == "sgd" else 0.0)
    return {"si_groups": mon.groups.to_dict(), "optimizer": [h.to_dict() for h in current],
            "iterations": mon.iteration, "records": int(n), "diverged": mon.diverged,
            "online_events": mon.detector.events, "periods": periods, "regime": regime,
            "layers": rows, "total": total, "theory_note": note, "period_report": report, "window": window_info,
            "series": {"eq_si_norm": eq_norm, "eq_eff_lr": eq_eff, "eq_angular_update": total_angle}}


def write_monitor_outputs(out, mon, summary: dict, plot: bool = True) -> None:
    """``metrics.csv``/``metrics.npz`` (steps, equilibrium series, per-tensor series),
    ``periods.json`` (periods, regime, SI groups, hyper-parameters, per-tensor rows),
    ``layers.csv``, ``sharpness.csv`` (if measured), ``plot.png`` (if ``plot``) and their
    ``SHA256SUMS`` into folder ``out``."""
    from nets.plots import plot_monitor

    steps, _, _ = mon.recorder.arrays()
    layers = mon.recorder.layer_arrays()
    series = summary["series"]
    write_csv(out / "metrics.csv", {**steps, **series, **layer_columns(mon.names, layers)})
    sharp = mon.recorder.sharpness_table() or {}
    if sharp:
        write_csv(out / "sharpness.csv", sharp)
    write_npz(out / "metrics.npz", compressed=False, **{f"step_{k}": v for k, v in steps.items()}, **series, **layers,
              **{f"sharpness_{k}": v for k, v in sharp.items()}, si_names=np.array(mon.names))
    table = summary["layers"] + [summary["total"]]
    write_csv(out / "layers.csv", {k: [r[k] for r in table] for k in table[0]})
    write_json(out / "periods.json", {k: v for k, v in summary.items() if k not in ("series", "period_report")})
    if plot and len(steps["iteration"]) > 1:
        plot_monitor(out / "plot.png", steps, series, summary, sharpness=sharp or None)
    write_manifest(out, ("metrics.csv", "sharpness.csv", "metrics.npz", "layers.csv", "periods.json", "plot.png"))

