r"""Real CIFAR-10: period frequency vs :math:`\eta\lambda`, measured, predicted and forecast.

``python -m paper_figures cifar [--quick] [--data-dir DIR]``. The fully scale-invariant ConvNet
of Lobacheva et al. (NeurIPS 2021, Sec. 3) is trained on real 32x32 CIFAR-10 images at several
learning rates plus one *equal-product twin* (another :math:`(\eta, \lambda)` with the same
:math:`\eta\lambda`, which the theory says gives the same period length in iterations). For each
run the figure and ``cifar.json`` give the periods measured (:mod:`analysis.report`: mean and sd of
the spacing of the detected destabilisations), predicted from the measured norm ratio
(:math:`T = \ln(\rho_{\max}/\rho_{\min})/(-\ln(1-\eta\lambda))`), and the forecast of each next
destabilisation from the critical norm (:mod:`analysis.forecast`, no future data).

The experiment is one :class:`CifarExperiment` per mode in :data:`PRESETS`. Its runs are the
existing :mod:`nets.sweep` machinery (``run_or_resume``): cached under
``OUT/cifar_runs/<mode>-<hash of the preset>/``, an interrupted (Ctrl-C, SIGTERM) command
continues where it stopped, ``workers`` runs at a time (one process and
``threads`` CPU threads each: on 2 cores two one-thread runs beat one two-thread run).
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import signal
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from paper_figures.common import FigureResult, save_data, save_figure, table_row

__all__ = ["CifarExperiment", "PRESETS", "run_experiment", "make"]

NAME = "cifar"


@dataclass(frozen=True)
class CifarExperiment:
    """The CIFAR-10 period experiment, in one place.

    ``width`` -- ConvNet width (channels w, 2w, 4w, 8w); ``train_subset`` -- the first N training
    images: small enough that the network fits them (the paper: a net that never reaches a low
    train loss stays in phase A and never destabilises), large enough to be real data;
    ``test_subset`` -- test images per evaluation; ``lrs`` at weight decay ``wd`` plus the equal-product
    ``twin`` (eta, lambda); every run lasts ``fit_iters + iters * f`` iterations, where
    ``fit_iters`` covers the first phase (fitting the training set: about the same number of epochs
    at every eta*lambda) and, with ``scale_length``, ``f = max(eta*lambda) / (eta*lambda)`` (else 1)
    gives every run about the same number of periods (period ~ 1/(eta*lambda)). ``twin_iters``
    (if > 0) makes the equal-product pair -- the twin and its partner -- last ``fit_iters +
    twin_iters`` iterations: their mean period lengths are compared, so they need the most periods
    (the spread of single periods is 25-30 %: with n periods the ratio's standard error is about
    0.4/sqrt(n)). ``sharpness_every`` from ``sharpness_from`` on (the forecast's measurements,
    :mod:`analysis.forecast`) is the same for every run. ``init_si_norm`` rescales the SI weights at
    init (None: the default init); the twin starts at the same norm, so it tests that the periodic
    regime depends on eta*lambda alone, not the exact trajectory equivalence (which would also
    rescale the init by sqrt(c), paper Sec. 2).
    """

    width: int
    train_subset: int
    test_subset: int
    wd: float
    lrs: tuple
    twin: tuple
    iters: int
    record_every: int
    eval_every: int
    sharpness_every: int
    sharpness_batches: int
    sharpness_iters: int
    init_si_norm: float | None
    fit_iters: int = 0
    scale_length: bool = False
    twin_iters: int = 0
    sharpness_from: int = 0
    batch_size: int = 128
    workers: int = 2
    threads: int = 1

    def pairs(self) -> list[tuple[float, float]]:
        """(eta, lambda) of every run: the learning rates at ``wd``, then the twin."""
        return [(float(lr), float(self.wd)) for lr in self.lrs] + [tuple(float(v) for v in self.twin)]

    def configs(self, data_dir: str) -> list:
        """One :class:`nets.config.TrainConfig` per run, longest first."""
        from nets.config import TrainConfig

        top = max(eta * lam for eta, lam in self.pairs())
        product = self.twin[0] * self.twin[1]
        out = []
        for eta, lam in self.pairs():
            f = top / (eta * lam) if self.scale_length else 1.0
            iters = int(math.ceil(self.iters * f))
            if math.isclose(eta * lam, product):          # the twin and its partner
                iters = max(iters, self.twin_iters)
            out.append(TrainConfig(
                model="convnet", mode="si", dataset="cifar10", data_dir=data_dir, width=self.width,
                train_subset=self.train_subset, test_subset=self.test_subset, batch_size=self.batch_size,
                lr=eta, wd=lam, iters=self.fit_iters + iters,
                record_every=self.record_every, eval_every=self.eval_every, full_train_eval=True,
                init_si_norm=self.init_si_norm, sharpness_every=self.sharpness_every,
                sharpness_batches=self.sharpness_batches, sharpness_from=self.sharpness_from,
                sharpness_iters=self.sharpness_iters, checkpoint_every=1000, threads=self.threads, quiet=True))
        return sorted(out, key=lambda c: -c.iters)


def _presets() -> dict:
    from nets.presets import CIFAR_EXPERIMENTS

    return {mode: CifarExperiment(**spec) for mode, spec in CIFAR_EXPERIMENTS.items()}


#: the experiments by mode (data: :data:`nets.presets.CIFAR_EXPERIMENTS`)
PRESETS = _presets()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def experiment_dir(out: Path, mode: str, exp: CifarExperiment) -> Path:
    """``OUT/cifar_runs/<mode>-<hash of the experiment>``: a changed preset never reuses old runs."""
    digest = hashlib.sha1(json.dumps(asdict(exp), sort_keys=True).encode()).hexdigest()[:8]
    return Path(out) / "cifar_runs" / f"{mode}-{digest}"


def _worker(cfg_dict: dict, run_dir: str) -> None:
    from nets.config import TrainConfig
    from nets.training.sweep import run_or_resume

    run_or_resume(TrainConfig.from_dict(cfg_dict), run_dir)


def run_experiment(exp: CifarExperiment, data_dir: str, sweep_dir: Path) -> list[dict]:
    """Run (or continue, or reuse) every run of ``exp``, ``exp.workers`` at a time; return the
    :func:`nets.training.sweep.run_sweep` rows. Ctrl-C stops the runs after their current step (each
    checkpoints) and raises ``KeyboardInterrupt``; the same call continues them."""
    from cli import Progress
    from nets.training.sweep import is_finished, run_sweep, run_tag

    configs = exp.configs(data_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    queue, running = [c for c in configs if not is_finished(sweep_dir / run_tag(c))], []
    previous = signal.signal(signal.SIGTERM, _interrupt) if _main_thread() else None
    bar = Progress(len(queue), desc=f"CIFAR-10 runs ({exp.workers} at a time)")
    try:
        while queue or running:
            alive = [p for p in running if p.is_alive()]
            bar.update(len(running) - len(alive))               # runs that ended since the last look
            running = alive
            while queue and len(running) < max(exp.workers, 1):
                cfg = queue.pop(0)
                p = ctx.Process(target=_worker, args=(cfg.to_dict(), str(sweep_dir / run_tag(cfg))))
                p.start()
                running.append(p)
            if running:
                running[0].join(timeout=0.5)
    except KeyboardInterrupt:           # Ctrl-C (the workers got it too) or SIGTERM (forwarded here)
        for p in running:
            if p.is_alive():
                p.terminate()           # SIGTERM: the run stops after its current step and checkpoints
        for p in running:
            p.join()
        raise
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    rows, completed = run_sweep(configs, sweep_dir)    # everything is finished: only collects and plots
    if not completed:
        raise KeyboardInterrupt
    return rows


def _run_record(cfg, row: dict, run_dir: Path) -> tuple[dict, dict]:
    """The JSON record of one run and its arrays (norm trace, events, forecasts)."""
    rep = json.loads((run_dir / "periods.json").read_text())
    s = rep["summary"]
    fc = s.get("forecast", {})
    z = np.load(run_dir / "metrics.npz")
    rec = {"eta": cfg.lr, "lam": cfg.wd, "eta_lam": cfg.lr * cfg.wd, "subset": cfg.train_subset,
           "width": cfg.width, "iterations": rep.get("iterations"), "n_periods": s.get("n_periods", 0),
           "mean_length": s.get("mean_length"), "std_length": s.get("std_length"),
           "predicted_mean_length": s.get("predicted_mean_length"),
           "measured_over_predicted": s.get("measured_over_predicted"), "forecast_n": fc.get("n", 0),
           **{f"forecast_{k}": fc.get(k) for k in ("median_error_fraction", "median_abs_error_fraction",
                                                   "median_abs_error", "median_last_error_fraction",
                                                   "median_abs_calibrated_error_fraction",
                                                   "median_abs_persistence_error_fraction", "median_h_drift",
                                                   "median_rho_over_rho_c_at_onset")},
           "final_test_acc": row["final_test_acc"],
           "final_train_acc_full": float(z["eval_train_acc_full"][-1]) if len(z["eval_train_acc_full"]) else None,
           "images_per_s": row["images_per_s"], "event_iterations": s.get("event_iterations", []),
           "mean_si_norm_periodic": _periodic_mean(z["step_iteration"], z["step_si_norm"],
                                                   s.get("event_iterations", []))}
    arrays = {"iteration": z["step_iteration"], "si_norm": z["step_si_norm"], "train_loss": z["step_train_loss"],
              "forecasts": np.array([[f["issued"], f["forecast"], f["onset"], f["period_start"]]
                                     for f in fc.get("all_forecasts", [])], dtype=float).reshape(-1, 4),
              "reported": np.array([[p["issued"], p["forecast"], p["onset"], p["start"]]
                                    for p in fc.get("periods", [])], dtype=float).reshape(-1, 4),
              "calibrated": np.array([[p["issued"], p["calibrated_forecast"], p["onset"], p["start"]]
                                      for p in fc.get("periods", [])], dtype=float).reshape(-1, 4)}
    return rec, arrays


def _plot(records: list[dict], arrays: list[dict], title: str):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(records)))
    ax = axes[0]
    for rec, color, k in zip(records, colors, range(len(records))):
        x, meas, pred = rec["eta_lam"], _inv(rec["mean_length"]), _inv(rec["predicted_mean_length"])
        twin = k == len(records) - 1
        err = meas**2 * rec["std_length"] if math.isfinite(meas) and rec["std_length"] else 0.0
        ax.errorbar([x], [meas], yerr=[err], fmt="D" if twin else "o", color=color, ms=7, capsize=3,
                    label=f"η={rec['eta']:g}, λ={rec['lam']:g}" + (" (twin)" if twin else ""))
        ax.plot([x], [pred], "s", mfc="none", mec="k", ms=10)
    ax.plot([], [], "s", mfc="none", mec="k", label="predicted: ln(ρmax/ρmin)/(−ln(1−ηλ))")
    ax.set(xscale="log", xlabel="ηλ", ylabel="destabilisations per iteration",
           title="period frequency (mean ± sd of the spacing)")
    if any(math.isfinite(_inv(r["mean_length"])) for r in records):
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax = axes[1]
    for rec, arr, color in zip(records, arrays, colors):
        t = arr["iteration"] * rec["eta_lam"]
        ax.plot(t, arr["si_norm"], color=color, lw=0.7, label=f"η={rec['eta']:g}, λ={rec['lam']:g}")
        ev = np.asarray(rec["event_iterations"], dtype=float)
        if ev.size:
            ax.plot(ev * rec["eta_lam"], np.interp(ev, arr["iteration"], arr["si_norm"]), "v", color=color,
                    mec="crimson", ms=5)
    ax.set(xlabel="ηλ · iteration", ylabel="SI weight norm ρ", title="norm traces (▼ destabilisations)")
    ax.grid(alpha=0.3)
    ax = axes[2]
    top = 0.0
    for rec, arr, color in zip(records, arrays, colors):
        for key, marker, ms, alpha in (("forecasts", "o", 3, 0.4), ("reported", "o", 7, 1.0),
                                       ("calibrated", "x", 7, 1.0)):
            f = arr[key][np.isfinite(arr[key][:, 1])] if arr[key].size else arr[key]
            if f.size:
                actual, fore = (f[:, 2] - f[:, 0]) * rec["eta_lam"], (f[:, 1] - f[:, 0]) * rec["eta_lam"]
                ax.plot(actual, fore, marker, color=color, ms=ms, alpha=alpha)
                top = max(top, actual.max(), fore.max())
    ax.plot([0, top or 1], [0, top or 1], "k--", lw=0.8, label="forecast = actual")
    ax.plot([], [], "o", color="gray", ms=7, label="issued after the jump (reported)")
    ax.plot([], [], "o", color="gray", ms=3, alpha=0.4, label="issued later in the period")
    ax.plot([], [], "x", color="gray", ms=7, label="threshold calibrated on past onsets")
    ax.set(xlabel="ηλ · iterations to the next destabilisation (actual)", ylabel="ηλ · iterations (forecast)",
           title="forecast from ρc = √(ηh/2), latest h")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def _periodic_mean(iteration, norm, events) -> float | None:
    """Mean SI norm from the first destabilisation on (None without one)."""
    keep = np.asarray(iteration) >= events[0] if len(events) else np.zeros(len(norm), bool)
    return float(np.mean(np.asarray(norm)[keep])) if keep.any() else None


def twin_ratio(twin: dict, partner: dict) -> tuple[float | None, float | None]:
    """Mean period length of the twin over its partner's, and the ratio's standard error.

    SE = r * sqrt(cv_t^2/n_t + cv_p^2/n_p), cv = sd/mean of the single periods, n their number
    (periods taken as independent: the delta method for a ratio of two independent means).
    (None, None) when either run has no complete period.
    """
    parts = []
    for rec in (twin, partner):
        mean, sd, n = rec.get("mean_length"), rec.get("std_length"), rec.get("n_periods") or 0
        if not (n and mean and math.isfinite(mean) and mean > 0):
            return None, None
        parts.append((mean, (sd or 0.0) / mean, n))
    (m_t, cv_t, n_t), (m_p, cv_p, n_p) = parts
    r = m_t / m_p
    return r, r * math.sqrt(cv_t**2 / n_t + cv_p**2 / n_p)


def _inv(x) -> float:
    return 1.0 / x if x is not None and math.isfinite(x) and x > 0 else float("nan")


def make(out: Path, quick: bool, data_dir: str | None = None) -> FigureResult:
    """Run (or reuse) the experiment of ``PRESETS["quick" if quick else "full"]`` and write
    ``cifar.png/pdf`` and ``cifar.json/npz``. Raises :class:`nets.data.DataError` without data."""
    from nets.data import load_cifar, resolve_data_dir

    mode = "quick" if quick else "full"
    exp = PRESETS[mode]
    data_dir = resolve_data_dir(data_dir)
    load_cifar("cifar10", data_dir)                  # the one-line DataError before any work
    from nets.training.sweep import run_tag

    sweep_dir = experiment_dir(out, mode, exp)
    rows = {(r["lr"], r["wd"]): r for r in run_experiment(exp, data_dir, sweep_dir)}
    configs = {(c.lr, c.wd): c for c in exp.configs(data_dir)}
    records, arrays = [], []
    for pair in exp.pairs():                 # the learning rates, then the twin (last)
        rec, arr = _run_record(configs[pair], rows[pair], sweep_dir / run_tag(configs[pair]))
        records.append(rec)
        arrays.append(arr)
    res = FigureResult(NAME)
    title = (f"SI ConvNet-{exp.width} on real CIFAR-10 (32x32, first {exp.train_subset or 50000} train images), "
             f"batch {exp.batch_size}, {mode} preset")
    save_figure(_plot(records, arrays, title), out, NAME, res)
    twin = records[-1]
    partner = next((r for r in records[:-1] if math.isclose(r["eta_lam"], twin["eta_lam"])), None)
    ratio, ratio_se = twin_ratio(twin, partner) if partner else (None, None)
    res.summary = {"preset": mode, "experiment": asdict(exp), "data_dir": data_dir, "runs": records,
                   "twin_length_ratio": ratio, "twin_length_ratio_se": ratio_se,
                   # scaling equivalence (paper Sec. 2): at equal eta*lambda the norm scales as sqrt(eta)
                   "twin_norm_ratio": (twin["mean_si_norm_periodic"] / partner["mean_si_norm_periodic"]
                                       if partner and twin["mean_si_norm_periodic"]
                                       and partner["mean_si_norm_periodic"] else None),
                   "twin_norm_ratio_predicted": math.sqrt(twin["eta"] / partner["eta"]) if partner else None,
                   "min_periods": min(r["n_periods"] for r in records)}
    for rec, arr in zip(records, arrays):
        setting = f"CIFAR-10 η={rec['eta']:g} λ={rec['lam']:g}"
        res.table.append(table_row("period length (iter)", setting,
                                   rec["predicted_mean_length"] or float("nan"), rec["mean_length"] or float("nan")))
        rep = arr["reported"][np.isfinite(arr["reported"][:, 1])] if arr["reported"].size else arr["reported"]
        if rep.size:      # forecast issued after each jump: iterations to the next onset, forecast vs actual
            res.table.append(table_row("iterations to the next destabilisation (forecast, median)", setting,
                                       float(np.median(rep[:, 1] - rep[:, 0])), float(np.median(rep[:, 2] - rep[:, 0]))))
    save_data(out, NAME, res, {f"run{k}_{key}": v for k, arr in enumerate(arrays) for key, v in arr.items()})
    return res

