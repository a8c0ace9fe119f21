"""What :class:`nets.SIMonitor` concludes from its records, and the files it writes.

:func:`analyse_monitor` turns the recorded rows into: the periods (the offline detector and the
period-length prediction of :func:`analysis.report.analyse_run`, the same analysis as a
``nets.train`` run), the per-tensor table and the regime (:mod:`nets.monitor.state`). The theory's
values at every record were computed as each record was made (:mod:`nets.monitor.track`); the
window statistics (RMS over the analysis window) are what the per-tensor table shows.
``metrics.csv`` is streamed as the records are made (:func:`metrics_header`, :func:`metrics_row`);
:func:`write_monitor_outputs` writes the rest at the end.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from analysis.report import RunInfo, analyse_run
from cli import write_csv, write_json, write_manifest, write_npz
from nets.monitor.metrics import STEP_COLUMNS
from nets.monitor.sinks import LAYER_QUANTITIES
from nets.monitor.state import analysis_window, classify_state, ratio_state, rms
from nets.monitor.theory import Hyper, effective_lr, equilibrium
from nets.monitor.track import SERIES_COLUMNS, same_rule

__all__ = ["analyse_monitor", "write_monitor_outputs", "layer_columns", "metrics_header", "metrics_row",
           "metrics_columns"]

NAN = float("nan")
#: Recorder.layer_arrays() key of each per-tensor quantity, in the order of LAYER_QUANTITIES
LAYER_KEYS = ("layer_norms", "layer_grad_norms", "layer_angular_updates")


def layer_columns(names: list[str], layers: dict) -> dict:
    """Per-tensor CSV columns ``norm:<name>``, ``grad_norm:<name>``, ``angular_update:<name>``."""
    return {f"{q}:{name}": layers[key][:, j] for q, key in zip(LAYER_QUANTITIES, LAYER_KEYS)
            for j, name in enumerate(names)}


def metrics_header(names: list[str]) -> list[str]:
    """The columns of ``metrics.csv``: the step record, the equilibrium series, the per-tensor series."""
    return [*STEP_COLUMNS, *SERIES_COLUMNS, *(f"{q}:{n}" for q in LAYER_QUANTITIES for n in names)]


def metrics_row(record, equilibrium_values, layer_rows) -> list:
    """One row of ``metrics.csv``: a StepRecord, its ``(eq_si_norm, eq_eff_lr, eq_angular_update)``
    and ``(norms, grad norms, angular updates)`` of the SI tensors (lists in the tensors' order)."""
    return [*record, *equilibrium_values, *(v for row in layer_rows for v in row)]


def metrics_columns(mon) -> dict:
    """All of ``metrics.csv`` from the monitor's tables at once (``{column: array}``)."""
    steps, _, _ = mon.recorder.arrays()
    track = mon.track.arrays()
    return {**steps, **{k: track[k] for k in SERIES_COLUMNS},
            **layer_columns(mon.names, mon.recorder.layer_arrays())}


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
    track = mon.track.arrays()
    it = steps["iteration"]
    n = it.size
    current = mon.current_hypers()
    first = mon.group_of[0]
    h0 = current[first]
    if mon.detector.stale or mon.detector.report is None:
        mon.detector.update()
    lrs, eq_angle = track["lr"], track["eq_angle"]
    report, periods = analyse_run(steps, mon.run_info or _run_info(h0, lrs[:, first], mon.log_every))
    events = list(periods.get("event_iterations", []))
    window = analysis_window(it, events)
    window_info = ({"from": int(it[window][0]), "to": int(it[window][-1]), "records": int(window.sum())}
                   if window.any() else {"records": 0})
    at_window = [replace(h, lr=rms(lrs[window, g])) if window.any() else h for g, h in enumerate(current)]
    uniform = same_rule(current)
    numel = sum(mon.watch.sizes)
    rows = []
    for j, name in enumerate(mon.names):
        g = mon.group_of[j]
        ind = name in mon.groups.individual
        rows.append(_row(name, "individual" if ind else "joint", mon.watch.sizes[j], at_window[g],
                         layers["layer_norms"][window, j],
                         (layers["layer_norms"][:, j] * layers["layer_grad_norms"][:, j])[window],
                         layers["layer_angular_updates"][window, j], eq_angle[window, g], ind))
    series = {k: track[k] for k in SERIES_COLUMNS}
    total_angle = series["eq_angular_update"]
    total = _row("total", "group", numel, at_window[first], steps["si_norm"][window], steps["eff_grad_norm"][window],
                 steps["angular_update"][window], total_angle[window], uniform)
    _, note = equilibrium(h0, total["eff_grad_norm"], numel)
    if not uniform:
        note = "SI tensors in parameter groups with different hyper-parameters: see the per-tensor rows"
    regime = classify_state(steps, total_angle, events, periods, eta_lam=lrs[:, first] * track["wd"][:, first],
                            end=mon.iteration, theory_note=note)
    if mon.sharpness is not None and mon.recorder.sharpness:
        from analysis.report import stability_at_destabilisations
        sh = mon.recorder.sharpness_table()
        periods["stability"] = stability_at_destabilisations(sh, events, h0.momentum if h0.kind == "sgd" else 0.0)
    return {"si_groups": mon.groups.to_dict(), "optimizer": [h.to_dict() for h in current],
            "iterations": mon.iteration, "records": int(n), "diverged": mon.diverged,
            "online_events": mon.detector.events, "periods": periods, "regime": regime,
            "layers": rows, "total": total, "theory_note": note, "period_report": report, "window": window_info,
            "series": series}


def write_monitor_outputs(out, mon, summary: dict, plot: bool = True, digests: dict | None = None) -> None:
    """Finish the folder ``out`` whose ``metrics.csv`` was streamed: ``metrics.npz`` (steps,
    equilibrium series, per-tensor series), ``periods.json`` (periods, regime, SI groups,
    hyper-parameters, per-tensor rows), ``layers.csv``, ``sharpness.csv`` (if measured),
    ``plot.png`` (if ``plot``) and the ``SHA256SUMS`` of them all (``digests``: those known already,
    e.g. the streamed ``metrics.csv``'s)."""
    from nets.plots import plot_monitor

    steps, _, _ = mon.recorder.arrays()
    layers = mon.recorder.layer_arrays()
    series = summary["series"]
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
    write_manifest(out, ("metrics.csv", "sharpness.csv", "metrics.npz", "layers.csv", "periods.json", "plot.png"),
                   digests)
