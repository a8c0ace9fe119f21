r"""Size a run to a time budget: FLOPs per image, and the smallest eta*lambda that fits.

The cost of a step is counted, not guessed: :func:`flops_per_image` runs one forward and
backward pass of the model under ``torch.utils.flop_counter.FlopCounterMode`` (matrix
multiplications and convolutions; BatchNorm and the element-wise rest are not counted, about
15 % of a CPU step). A device's rate is then ``efficiency * peak`` FLOP/s, where ``efficiency`` is
*measured* on the machine at hand (:func:`achieved_flops` of a timed run over its peak) and
*assumed* to carry over to the target device -- an estimate, to be replaced by the device's
own measurement as soon as one is made.

The length of a period at eta*lambda comes from the fitted power laws of the study
(:mod:`nets.training.study`): ``T = rise + decay``, each ``c (eta*lambda)^k``; the run needs the
first phase plus ``n_periods + 1`` onsets' worth of periods (:func:`iterations_needed`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["flops_per_image", "achieved_flops", "iterations_needed", "smallest_eta_lam", "gpu_estimate",
           "H100_PEAK_TF32"]

#: NVIDIA H100 SXM dense TF32 tensor-core peak, FLOP/s (the data sheet's 989 TFLOP/s is with sparsity)
H100_PEAK_TF32 = 494.7e12


def flops_per_image(model: torch.nn.Module, image_shape=(3, 32, 32), batch: int = 8) -> float:
    """Counted FLOPs of one forward + backward pass per image (cross-entropy on random labels)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(batch, *image_shape)
    was = model.training
    model.train()
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        F.cross_entropy(out, torch.randint(0, out.shape[1], (batch,))).backward()
    model.train(was)
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def achieved_flops(flops_image: float, images_per_s: float) -> float:
    """FLOP/s a run achieved: counted FLOPs per image times images per second."""
    return flops_image * images_per_s


def iterations_needed(eta_lam: float, rise: tuple[float, float], decay: tuple[float, float], first_phase: int,
                      n_periods: int = 3, margin: float = 0.5) -> float:
    """Iterations for ``n_periods`` complete periods: ``first_phase + (n_periods + margin) * T``,
    ``T = c_r x^k_r + c_d x^k_d`` (``rise``, ``decay`` = (prefactor, exponent), x = eta*lambda)."""
    period = rise[0] * eta_lam ** rise[1] + decay[0] * eta_lam ** decay[1]
    return first_phase + (n_periods + margin) * period


def smallest_eta_lam(iters_per_s: float, seconds: float, rise, decay, first_phase: int, n_periods: int = 3,
                     lo: float = 1e-6, hi: float = 1e-1) -> float:
    """The smallest eta*lambda whose :func:`iterations_needed` fit ``iters_per_s * seconds``
    (bisection in log eta*lambda; ``hi`` if even that does not fit)."""
    budget = iters_per_s * seconds
    if iterations_needed(hi, rise, decay, first_phase, n_periods) > budget:
        return hi
    a, b = math.log(lo), math.log(hi)
    if iterations_needed(lo, rise, decay, first_phase, n_periods) <= budget:
        return lo
    for _ in range(60):
        m = (a + b) / 2
        if iterations_needed(math.exp(m), rise, decay, first_phase, n_periods) <= budget:
            b = m
        else:
            a = m
    return math.exp(b)


def gpu_estimate(study: dict, *, flops_image: float, batch_size: int, train_images: int, n_runs: int,
                 seconds: float, peak: float = H100_PEAK_TF32, efficiency: float = 0.10, n_periods: int = 3,
                 max_extrapolation: float = 10.0) -> dict:
    """The smallest eta*lambda a GPU run completes ``n_periods`` periods at, from a CPU study.

    ``study``: the summary of ``paper_figures cifar`` (``rise_fit``, ``decay_fit``, ``runs`` with
    their ``event_iterations``, ``images_per_s``, ``train_subset``, ``width``). Assumptions, each
    returned with the answer: the period lengths in iterations carry over from the CPU study's
    fits (same batch size and eta*lambda; a wider net on more images may differ -- the first GPU
    call measures it); the first phase lasts as many *epochs* as the CPU study's median first
    destabilisation; the device sustains ``efficiency * peak`` FLOP/s shared by ``n_runs``
    concurrent runs; the power laws, fitted over the study's range of eta*lambda, are not
    extrapolated more than ``max_extrapolation`` below its smallest value (the answer is then that
    floor, and ``floored`` is True).
    """
    rise, decay = study["rise_fit"], study["decay_fit"]
    if not rise or not decay:
        raise ValueError("the study has no rise or decay fit (too few runs with periods)")
    runs = study["runs"]
    batches = {r["train_subset"]: max(1, r["train_subset"] // batch_size) for r in runs}
    first = [r["event_iterations"][0] / batches[r["train_subset"]] for r in runs if r["event_iterations"]]
    fit_epochs = float(sorted(first)[len(first) // 2])
    first_phase = int(math.ceil(fit_epochs * max(1, train_images // batch_size)))
    gpu_flops = efficiency * peak
    iters_per_s = gpu_flops / (flops_image * batch_size) / n_runs
    floor = min(r["eta_lam"] for r in runs) / max_extrapolation
    x = smallest_eta_lam(iters_per_s, seconds, (rise["prefactor"], rise["exponent"]),
                         (decay["prefactor"], decay["exponent"]), first_phase, n_periods, lo=floor)
    cpu = [r["images_per_s"] for r in runs if r.get("images_per_s")]
    return {"smallest_eta_lam": x, "floored": x == floor, "extrapolation_floor": floor,
            "iters_per_s_per_run": iters_per_s, "first_phase_iters": first_phase,
            "fit_epochs": fit_epochs, "gpu_flops_assumed": gpu_flops, "efficiency_assumed": efficiency,
            "flops_per_image": flops_image, "n_runs": n_runs, "seconds": seconds, "n_periods": n_periods,
            "iterations_needed": iterations_needed(x, (rise["prefactor"], rise["exponent"]),
                                                   (decay["prefactor"], decay["exponent"]), first_phase, n_periods),
            "cpu_images_per_s_median": float(sorted(cpu)[len(cpu) // 2]) if cpu else None}
