"""Sizing a GPU run: counted FLOPs and the smallest eta*lambda that fits a budget."""
import math

import pytest
from torch import nn

from nets.training.plan import flops_per_image, gpu_estimate, iterations_needed, smallest_eta_lam


def test_flops_per_image_counts_a_linear_layer_exactly():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5, bias=False))
    # forward 2*12*5; backward: weight gradient 2*12*5 (the input needs no gradient)
    assert flops_per_image(model, image_shape=(3, 2, 2), batch=4) == pytest.approx(2 * 2 * 12 * 5)


def test_paper_convnet_costs_about_345_mflop_per_image():
    from nets.models import build_model

    m = build_model("convnet", mode="si", width=32, num_classes=10, in_channels=3, input_size=32,
                    last_layer_norm=10.0, keep_last_bias=False, norm="bn")
    assert flops_per_image(m) / 1e6 == pytest.approx(343.3, rel=0.01)


def test_smallest_eta_lam_is_the_edge_of_the_budget():
    rise, decay = (2.0, -0.5), (0.3, -1.0)
    x = smallest_eta_lam(100.0, 60.0, rise, decay, first_phase=1000)
    assert iterations_needed(x, rise, decay, 1000) <= 6000 * (1 + 1e-9)
    assert iterations_needed(x * 0.99, rise, decay, 1000) > 6000
    assert smallest_eta_lam(100.0, 120.0, rise, decay, 1000) < x          # more time, smaller eta*lambda
    assert smallest_eta_lam(1.0, 1.0, rise, decay, 1000) == 0.1            # nothing fits: the upper bound


def test_gpu_estimate_from_a_study_summary():
    runs = [{"train_subset": 2000, "event_iterations": [e, e + 500], "images_per_s": 900.0, "eta_lam": x}
            for e, x in ((1500, 1e-3), (2000, 2e-3), (2500, 3e-3))]
    study = {"rise_fit": {"prefactor": 2.0, "exponent": -0.5}, "decay_fit": {"prefactor": 0.3, "exponent": -1.0},
             "runs": runs}
    est = gpu_estimate(study, flops_image=345e6, batch_size=128, train_images=15000, n_runs=5, seconds=100)
    assert est["fit_epochs"] == pytest.approx(2000 / 15)
    assert est["first_phase_iters"] == math.ceil(2000 / 15 * 117)
    assert est["iters_per_s_per_run"] == pytest.approx(0.1 * 494.7e12 / (345e6 * 128) / 5)
    assert est["iterations_needed"] <= est["iters_per_s_per_run"] * 100 * (1 + 1e-9)
    assert not est["floored"] and est["smallest_eta_lam"] > 1e-4
    far = gpu_estimate(study, flops_image=345e6, batch_size=128, train_images=15000, n_runs=5, seconds=48000)
    assert far["floored"] and far["smallest_eta_lam"] == pytest.approx(1e-4)     # a decade below 1e-3, no further
    with pytest.raises(ValueError, match="no rise or decay fit"):
        gpu_estimate({**study, "rise_fit": None}, flops_image=1.0, batch_size=128, train_images=1, n_runs=1,
                     seconds=1)


def test_gpu_study_preset_follows_the_committed_estimate():
    """The one-call GPU command's smallest eta*lambda is the plan's estimate from the committed CPU
    study, rounded up to a value of the doubling grid (not a number picked by hand)."""
    from pathlib import Path

    from nets.paper_check import plan
    from nets.presets import GPU_STUDY

    study = Path(__file__).resolve().parents[1] / "docs" / "figures" / "cifar" / "cifar.json"
    est = plan(str(study), GPU_STUDY["seconds"], len(GPU_STUDY["lrs"]) + 1, efficiency=0.10)
    smallest = min(GPU_STUDY["lrs"]) * GPU_STUDY["wd"]
    assert est["smallest_eta_lam"] <= smallest * (1 + 1e-9) < 2 * est["smallest_eta_lam"]
    lrs = sorted(GPU_STUDY["lrs"])
    assert all(b == pytest.approx(2 * a) for a, b in zip(lrs, lrs[1:]))
    assert GPU_STUDY["twin"][0] * GPU_STUDY["twin"][1] == pytest.approx(lrs[1] * GPU_STUDY["wd"])
