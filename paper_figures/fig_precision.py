r"""Does bf16 autocast move the periodic dynamics? FP32 vs bf16 on real CIFAR-10, several seeds.

``python -m paper_figures precision --quick --data-dir DIR``. The SI ConvNet of the CIFAR study
(:mod:`paper_figures.fig_cifar`) at two values of eta*lambda, each with ``seeds`` seeds in each
precision (:mod:`nets.training.precision`). Per run: the period lengths, rise and decay
(:mod:`analysis.anatomy`), the equilibrium norm and angular update (means from the first
destabilisation of the study on), and the measured/predicted ratio of the same periods
(:mod:`analysis.report`). Per eta*lambda and quantity the bf16 - FP32 difference of the seed
means is compared with the FP32 seed-to-seed spread: Welch's 95 % interval of the difference
(``scipy.stats.ttest_ind``), and the FP32 seeds' standard deviation. A difference whose interval
holds 0 is not detectable at this number of seeds -- say so, not "equal". The SI identity is
measured directly (:func:`nets.training.precision.identity_residuals`): cos(g, x) per SI tensor
and the residual of the norm recurrence, over steps from the end of an FP32 run, in each precision.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats

from paper_figures.common import FigureResult, save_data, save_figure, table_row
from paper_figures.run_pool import run_pool

__all__ = ["PrecisionExperiment", "PRESETS", "make", "compare"]

NAME = "precision"
QUANTITIES = ("measured_period", "rise", "decay", "equilibrium_norm", "angular_update", "same_period_ratio")


@dataclass(frozen=True)
class PrecisionExperiment:
    """Runs of ``width``-ConvNets on the first ``train_subset`` CIFAR-10 images at ``lrs`` (weight
    decay ``wd``), ``run_iters`` iterations each, for every seed in ``seeds`` and precision in
    ``precisions``; init norm ``init_si_norm * sqrt(eta)``; periods from ``fit_iters`` on."""

    width: int
    train_subset: int
    test_subset: int
    wd: float
    lrs: tuple
    run_iters: tuple
    seeds: tuple
    fit_iters: int
    init_si_norm: float
    record_every: int = 5
    eval_every: int = 1000
    identity_steps: int = 20
    precisions: tuple = ("fp32", "bf16")
    batch_size: int = 128
    workers: int = 2
    threads: int = 1

    def jobs(self, data_dir: str, sweep_dir: Path) -> list:
        """``(TrainConfig, run_dir)`` of every run, longest first."""
        from nets.config import TrainConfig

        out = []
        for lr, iters in zip(self.lrs, self.run_iters):
            for seed in self.seeds:
                for p in self.precisions:
                    cfg = TrainConfig(model="convnet", mode="si", dataset="cifar10", data_dir=data_dir,
                                      width=self.width, train_subset=self.train_subset, test_subset=self.test_subset,
                                      batch_size=self.batch_size, lr=float(lr), wd=self.wd, iters=int(iters),
                                      record_every=self.record_every, eval_every=self.eval_every,
                                      init_si_norm=self.init_si_norm * math.sqrt(lr), seed=int(seed), precision=p,
                                      checkpoint_every=1000, threads=self.threads, quiet=True)
                    out.append((cfg, Path(sweep_dir) / f"lr{lr:g}_seed{seed}_{p}"))
        return sorted(out, key=lambda j: -j[0].iters)


def _presets() -> dict:
    from nets.presets import PRECISION_EXPERIMENTS

    return {mode: PrecisionExperiment(**spec) for mode, spec in PRECISION_EXPERIMENTS.items()}


#: the experiments by mode (data: :data:`nets.presets.PRECISION_EXPERIMENTS`)
PRESETS = _presets()


def _run_values(run_dir: Path, start: int) -> dict:
    from nets.training.study import periodic_mean, run_record

    rec, arr, _ = run_record(run_dir, start=start)
    events = rec["event_iterations"]
    return {"eta": rec["eta"], "seed": rec["seed"], "precision": rec["precision"], "n_periods": rec["n_periods"],
            "measured_period": rec["measured_period"], "rise": rec["rise"], "decay": rec["decay"],
            "equilibrium_norm": periodic_mean(arr["iteration"], arr["si_norm"], events),
            "angular_update": periodic_mean(arr["iteration"], arr["angular_update"], events),
            "same_period_ratio": rec["same_period_ratio"], "images_per_s": rec["images_per_s"],
            "iteration": arr["iteration"], "si_norm": arr["si_norm"]}


def compare(fp32: list, bf16: list, confidence: float = 0.95) -> dict:
    """bf16 - FP32 difference of the means with Welch's interval, and the FP32 seed spread."""
    a = np.array([v for v in fp32 if v is not None and math.isfinite(v)], dtype=float)
    b = np.array([v for v in bf16 if v is not None and math.isfinite(v)], dtype=float)
    out = {"fp32_mean": float(a.mean()) if a.size else None, "bf16_mean": float(b.mean()) if b.size else None,
           "fp32_sd": float(a.std(ddof=1)) if a.size > 1 else None, "n": [int(a.size), int(b.size)],
           "diff": float(b.mean() - a.mean()) if a.size and b.size else None, "interval": None,
           "detectable": None}
    if a.size > 1 and b.size > 1 and (a.std() > 0 or b.std() > 0):
        ci = stats.ttest_ind(b, a, equal_var=False).confidence_interval(confidence)
        out["interval"] = [float(ci.low), float(ci.high)]
        out["detectable"] = bool(ci.low > 0 or ci.high < 0)
    return out


def _identity(exp: PrecisionExperiment, job) -> dict:
    """cos(g, x) and the recurrence residual from the end of an FP32 run, in each precision."""
    from nets.data import load_data
    from nets.training.checkpoint import load_run_checkpoint
    from nets.training.precision import identity_residuals
    from nets.training.trainer import Trainer

    cfg, run_dir = job
    payload, _ = load_run_checkpoint(run_dir)
    out = {}
    for p in exp.precisions:
        trainer = Trainer(replace(cfg, precision=p), load_data(cfg))
        trainer.load_state_dict(payload["trainer"])
        r = identity_residuals(trainer, exp.identity_steps)
        out[p] = {"median_abs_cos": np.median(np.abs(r["cos"]), axis=0).tolist(),
                  "max_abs_cos": float(np.abs(r["cos"]).max()),
                  "median_recurrence_residual": float(np.median(r["recurrence_residual"])), "names": r["names"]}
    return out


def _plot(values, comparisons, identity, title):
    import matplotlib.pyplot as plt

    lrs = sorted({v["eta"] for v in values})
    fig, axes = plt.subplots(2, 2, figsize=(14, 9), layout="constrained")
    for ax, lr in zip(axes[0], lrs):
        for v in values:
            if v["eta"] == lr:
                ax.plot(v["iteration"], v["si_norm"], lw=0.7, ls="-" if v["precision"] == "fp32" else "--",
                        color=f"C{v['seed']}", label=f"{v['precision']} seed {v['seed']}")
        ax.set(xlabel="iteration", ylabel="SI norm ρ", title=f"η={lr:g} (ηλ={lr * values[0]['lam']:.1e})")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    ax = axes[1, 0]
    labels, k = [], 0
    for lr in lrs:
        for q in QUANTITIES:
            c = comparisons[f"{lr:g}"][q]
            if c["fp32_mean"]:
                rel = lambda x: 100 * x / c["fp32_mean"]
                if c["interval"]:
                    ax.plot([rel(c["interval"][0]), rel(c["interval"][1])], [k, k], "-", color="C0")
                ax.plot(rel(c["diff"]), k, "o", color="C3" if c["detectable"] else "C0")
                if c["fp32_sd"]:
                    ax.plot([-rel(c["fp32_sd"]), rel(c["fp32_sd"])], [k + 0.25] * 2, "-", color="0.6", lw=3)
            labels.append(f"η={lr:g} {q}")
            k += 1
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set(xlabel="bf16 − FP32, % of the FP32 mean (line: Welch 95 % interval; grey: ±1 FP32 seed sd)",
           title="differences vs the seed-to-seed spread")
    ax.grid(alpha=0.3)
    ax = axes[1, 1]
    for lr, ident in identity.items():
        for j, p in enumerate(ident):
            ax.semilogy(ident[p]["median_abs_cos"], "o-" if p == "fp32" else "s--", label=f"η={lr} {p}")
    ax.set(xlabel="SI tensor (input → output)", ylabel="median |cos(g, x)|", title="the SI identity ⟨g, x⟩ = 0")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.suptitle(title, fontsize=10)
    return fig


def make(out: Path, quick: bool, data_dir: str | None = None) -> FigureResult:
    """Run (or reuse) the experiment and write ``precision.png/pdf/json/npz``."""
    from nets.data import load_cifar, resolve_data_dir

    mode = "quick" if quick else "full"
    exp = PRESETS[mode]
    data_dir = resolve_data_dir(data_dir)
    load_cifar("cifar10", data_dir)
    digest = hashlib.sha1(json.dumps(asdict(exp), sort_keys=True).encode()).hexdigest()[:8]
    sweep_dir = Path(out) / "precision_runs" / f"{mode}-{digest}"
    jobs = exp.jobs(data_dir, sweep_dir)
    run_pool(jobs, exp.workers, "CIFAR-10 runs, FP32 and bf16")
    values = [{**_run_values(d, exp.fit_iters), "lam": exp.wd} for _, d in jobs]
    comparisons = {}
    for lr in exp.lrs:
        sel = {p: [v for v in values if v["eta"] == lr and v["precision"] == p] for p in exp.precisions}
        comparisons[f"{lr:g}"] = {q: compare([v[q] for v in sel["fp32"]], [v[q] for v in sel["bf16"]])
                                  for q in QUANTITIES}
    identity = {f"{lr:g}": _identity(exp, next(j for j in jobs if j[0].lr == lr and j[0].precision == "fp32"
                                               and j[0].seed == exp.seeds[0])) for lr in exp.lrs}
    res = FigureResult(NAME)
    title = (f"FP32 vs bf16 autocast: SI ConvNet-{exp.width}, first {exp.train_subset} CIFAR-10 images, "
             f"{len(exp.seeds)} seeds each")
    save_figure(_plot(values, comparisons, identity, title), out, NAME, res)
    speed = {p: float(np.median([v["images_per_s"] for v in values if v["precision"] == p])) for p in exp.precisions}
    runs = [{k: v for k, v in val.items() if k not in ("iteration", "si_norm")} for val in values]
    res.summary = {"preset": mode, "experiment": asdict(exp), "runs": runs, "comparisons": comparisons,
                   "identity": identity, "median_images_per_s": speed,
                   "min_periods": min(v["n_periods"] for v in values)}
    for lr, comp in comparisons.items():
        for q in ("measured_period", "equilibrium_norm", "angular_update"):
            c = comp[q]
            res.table.append(table_row(f"{q}, bf16 vs FP32 (seed means)", f"CIFAR-10 η={lr}",
                                       c["fp32_mean"] or float("nan"), c["bf16_mean"] or float("nan")))
    save_data(out, NAME, res, {f"run{k}_{key}": val[key] for k, val in enumerate(values)
                               for key in ("iteration", "si_norm")})
    return res
