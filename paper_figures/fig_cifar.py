r"""Real CIFAR-10: where the period theory holds -- the eta*lambda study.

``python -m paper_figures cifar [--quick] [--data-dir DIR]``. The fully scale-invariant ConvNet
of Lobacheva et al. (NeurIPS 2021, Sec. 3) is trained on real 32x32 CIFAR-10 images at several
values of :math:`\eta\lambda` plus one *equal-product twin* (another :math:`(\eta, \lambda)` with the
same product, which the theory says gives the same period length in iterations). Per run
(:mod:`nets.training.study`): the anatomy of every period (rise to the norm maximum, then decay;
the decay against :math:`\ln(\rho_{\max}/\rho_{next})/(-\ln(1-\eta\lambda))`), a whole-period
prediction that uses nothing of the period it predicts (decay from earlier periods, rise from a
power law fitted on the other :math:`\eta\lambda`), the forecasts of each next destabilisation
(batch sharpness on the sphere vs :math:`2(1+\mu-\eta\lambda)`, top eigenvalue, calibrated,
persistence); across runs the frequency and the rise against :math:`\eta\lambda` (power laws with
95 % intervals). Figure ``cifar.png``, data ``cifar.json`` (one record per run) and ``cifar.npz``.

The experiment is one :class:`CifarExperiment` per mode in :data:`PRESETS`. Its runs go through
:func:`paper_figures.run_pool.run_pool`: cached under ``OUT/cifar_runs/<mode>-<hash of the
preset>/``, an interrupted (Ctrl-C, SIGTERM) command continues where it stopped, ``workers`` runs
at a time (one process and ``threads`` CPU threads each: on 2 cores two one-thread runs beat one
two-thread run).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from nets.training.study import FORECAST_METHODS, periodic_mean, run_record, study_summary
from paper_figures.cifar_plots import plot_study
from paper_figures.common import FigureResult, save_data, save_figure, table_row
from paper_figures.run_pool import run_pool

__all__ = ["CifarExperiment", "PRESETS", "FORECAST_METHODS", "run_experiment", "make"]

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
    at every eta*lambda) and, with ``scale_length``, ``f = (max(eta*lambda) / (eta*lambda))**p``
    (else 1; ``p = length_exponent``) gives every run about the same number of periods (period ~
    (eta*lambda)^-p: p = 1 for free decay alone, less where the rise matters). ``twin_iters``
    (if > 0) makes the equal-product pair -- the twin and its partner -- last ``fit_iters +
    twin_iters`` iterations: their mean period lengths are compared, so they need the most periods
    (the spread of single periods is 25-30 %: with n periods the ratio's standard error is about
    0.4/sqrt(n)). ``sharpness_every`` from ``sharpness_from`` on (the forecast's measurements,
    :mod:`analysis.forecast`) is the same for every run. ``init_si_norm`` rescales the SI weights at
    init (None: the default init); the twin starts at the same norm, so it tests that the periodic
    regime depends on eta*lambda alone, not the exact trajectory equivalence (which would also
    rescale the init by sqrt(c), paper Sec. 2). With ``init_scale_with_lr`` the init norm is
    ``init_si_norm * sqrt(eta)``: every run starts at the same effective LR eta/rho^2, so the first
    phase lasts about as many iterations at every eta (the twin still starts at its partner's norm). ``batch_sharpness_every``: the batch
    sharpness on the step's own batch (:mod:`nets.monitor.batch_sharpness`) from ``sharpness_from``
    on; ``min_points`` of them after a period's norm maximum issue its forecast
    (:mod:`analysis.edge_forecast`). ``run_iters`` (if given) are the total iterations of the runs
    at ``lrs``, one each, measured to hold enough periods; they replace the rule above (the
    twin's partner still gets at least ``fit_iters + twin_iters``, and so does the twin).
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
    length_exponent: float = 1.0
    init_scale_with_lr: bool = False
    batch_sharpness_every: int = 0
    min_points: int = 5
    run_iters: tuple = ()
    precision: str = "fp32"

    def pairs(self) -> list[tuple[float, float]]:
        """(eta, lambda) of every run: the learning rates at ``wd``, then the twin."""
        return [(float(lr), float(self.wd)) for lr in self.lrs] + [tuple(float(v) for v in self.twin)]

    def init_norm(self, eta: float) -> float | None:
        """The SI norm a run at learning rate ``eta`` starts from (None: the default init)."""
        if self.init_si_norm is None or not self.init_scale_with_lr:
            return self.init_si_norm
        return self.init_si_norm * math.sqrt(eta)

    def configs(self, data_dir: str) -> list:
        """One :class:`nets.config.TrainConfig` per run, longest first."""
        from nets.config import TrainConfig

        top = max(eta * lam for eta, lam in self.pairs())
        product = self.twin[0] * self.twin[1]
        twin = tuple(float(v) for v in self.twin)
        out = []
        if self.run_iters and len(self.run_iters) != len(self.lrs):
            raise ValueError(f"run_iters needs one entry per learning rate ({len(self.lrs)}), got {len(self.run_iters)}")
        given = {(float(lr), float(self.wd)): int(n) - self.fit_iters for lr, n in zip(self.lrs, self.run_iters)}
        for eta, lam in self.pairs():
            f = (top / (eta * lam)) ** self.length_exponent if self.scale_length else 1.0
            iters = given.get((eta, lam), int(math.ceil(self.iters * f)))
            if math.isclose(eta * lam, product):          # the twin and its partner
                iters = max(iters, self.twin_iters)
            out.append(TrainConfig(
                model="convnet", mode="si", dataset="cifar10", data_dir=data_dir, width=self.width,
                train_subset=self.train_subset, test_subset=self.test_subset, batch_size=self.batch_size,
                lr=eta, wd=lam, iters=self.fit_iters + iters,
                record_every=self.record_every, eval_every=self.eval_every, full_train_eval=True,
                init_si_norm=self.init_norm(eta if (eta, lam) != twin else product / self.wd),
                sharpness_every=self.sharpness_every,
                batch_sharpness_every=self.batch_sharpness_every, precision=self.precision,
                sharpness_batches=self.sharpness_batches, sharpness_from=self.sharpness_from,
                sharpness_iters=self.sharpness_iters, checkpoint_every=1000, threads=self.threads, quiet=True))
        return sorted(out, key=lambda c: -c.iters)


def _presets() -> dict:
    from nets.presets import CIFAR_EXPERIMENTS

    return {mode: CifarExperiment(**spec) for mode, spec in CIFAR_EXPERIMENTS.items()}


#: the experiments by mode (data: :data:`nets.presets.CIFAR_EXPERIMENTS`)
PRESETS = _presets()


def experiment_dir(out: Path, mode: str, exp: CifarExperiment) -> Path:
    """``OUT/cifar_runs/<mode>-<hash of the experiment>``: a changed preset never reuses old runs."""
    digest = hashlib.sha1(json.dumps(asdict(exp), sort_keys=True).encode()).hexdigest()[:8]
    return Path(out) / "cifar_runs" / f"{mode}-{digest}"


def run_experiment(exp: CifarExperiment, data_dir: str, sweep_dir: Path) -> dict:
    """Run (or continue, or reuse) every run of ``exp``, ``exp.workers`` at a time
    (:func:`paper_figures.run_pool.run_pool`); return ``{(eta, lambda): run folder}``. Ctrl-C stops
    the runs after their current step (each checkpoints) and raises ``KeyboardInterrupt``; the same
    call continues them."""
    from nets.training.sweep import run_tag

    jobs = [(c, sweep_dir / run_tag(c)) for c in exp.configs(data_dir)]
    run_pool(jobs, exp.workers, "CIFAR-10 runs")
    return {(c.lr, c.wd): run_dir for c, run_dir in jobs}


def _records(exp: "CifarExperiment", run_dirs: dict):
    records, arrays, anatomies = [], [], []
    for pair in exp.pairs():                 # the learning rates, then the twin (last)
        rec, arr, anatomy = run_record(run_dirs[pair], exp.min_points, start=exp.fit_iters)
        records.append(rec)
        arrays.append(arr)
        anatomies.append(anatomy)
    return records, arrays, anatomies


def make(out: Path, quick: bool, data_dir: str | None = None, precision: str | None = None) -> FigureResult:
    """Run (or reuse) the experiment of ``PRESETS["quick" if quick else "full"]`` (in ``precision``
    if given, else the preset's) and write ``cifar.png/pdf`` and ``cifar.json/npz``. Raises
    :class:`nets.data.DataError` without data."""
    from nets.data import load_cifar, resolve_data_dir

    mode = "quick" if quick else "full"
    exp = PRESETS[mode] if precision is None else replace(PRESETS[mode], precision=precision)
    data_dir = resolve_data_dir(data_dir)
    load_cifar("cifar10", data_dir)                  # the one-line DataError before any work
    sweep_dir = experiment_dir(out, mode, exp)
    t0 = time.perf_counter()
    records, arrays, anatomies = _records(exp, run_experiment(exp, data_dir, sweep_dir))
    summary = study_summary(records, anatomies)
    res = FigureResult(NAME)
    title = (f"SI ConvNet-{exp.width} on real CIFAR-10 (32x32, first {exp.train_subset or 50000} train images), "
             f"batch {exp.batch_size}, {mode} preset" + (", bf16 autocast" if exp.precision == "bf16" else ""))
    twin, partner = records[-1], next((r for r in records[:-1] if math.isclose(r["eta_lam"], records[-1]["eta_lam"])),
                                      None)
    save_figure(plot_study(records, arrays, summary, title, twin_index=len(records) - 1), out, NAME, res)
    ratio, ratio_se = twin_ratio(twin, partner) if partner else (None, None)
    res.summary = {"preset": mode, "experiment": asdict(exp), "dataset": "cifar10", "runs": records, **summary,
                   "twin_length_ratio": ratio, "twin_length_ratio_se": ratio_se,
                   # scaling equivalence (paper Sec. 2): at equal eta*lambda the norm scales as sqrt(eta)
                   "twin_norm_ratio": _norm_ratio(arrays[-1], arrays[records.index(partner)]) if partner else None,
                   "twin_norm_ratio_predicted": math.sqrt(twin["eta"] / partner["eta"]) if partner else None,
                   "wall_s_this_call": time.perf_counter() - t0,
                   "train_s_per_run": [r["elapsed_s"] for r in records]}
    for rec in records:
        setting = f"CIFAR-10 η={rec['eta']:g} λ={rec['lam']:g}"
        res.table.append(table_row("period length (iter), leave-one-out prediction", setting,
                                   rec["predicted_period"] or float("nan"), rec["loo_measured_period"] or float("nan")))
        res.table.append(table_row("decay phase (iter), free-decay formula", setting,
                                   rec["decay_predicted"] or float("nan"), rec["decay"] or float("nan")))
    save_data(out, NAME, res, {f"run{k}_{key}": v for k, arr in enumerate(arrays) for key, v in arr.items()})
    return res


def _norm_ratio(twin: dict, partner: dict) -> float | None:
    """Mean SI norm of the twin over its partner's, each from its first destabilisation on."""
    a = periodic_mean(twin["iteration"], twin["si_norm"], twin["events"])
    b = periodic_mean(partner["iteration"], partner["si_norm"], partner["events"])
    return a / b if a and b else None


def twin_ratio(twin: dict, partner: dict) -> tuple[float | None, float | None]:
    """Mean period length of the twin over its partner's, and the ratio's standard error.

    SE = r * sqrt(cv_t^2/n_t + cv_p^2/n_p), cv = sd/mean of the single periods, n their number
    (periods taken as independent: the delta method for a ratio of two independent means).
    (None, None) when either run has no complete period.
    """
    parts = []
    for rec in (twin, partner):
        mean, sd, n = rec.get("measured_period"), rec.get("std_period"), rec.get("n_periods") or 0
        if not (n and mean and math.isfinite(mean) and mean > 0):
            return None, None
        parts.append((mean, (sd or 0.0) / mean, n))
    (m_t, cv_t, n_t), (m_p, cv_p, n_p) = parts
    r = m_t / m_p
    return r, r * math.sqrt(cv_t**2 / n_t + cv_p**2 / n_p)
