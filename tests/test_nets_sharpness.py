"""Sharpness on the SI sphere (nets.monitor.sharpness): Lanczos, the probe vs an explicit Hessian, the
scaling identity, no side effects on training, resume, and the destabilisation summary."""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.report import stability_at_destabilisations, stability_line
from nets import TrainConfig, resume_training, run_training
from nets.data import make_synthetic
from nets.models import build_model
from nets.monitor.sharpness import SharpnessProbe, fixed_batches, lanczos_top_eigenvalue
from nets.monitor.si import find_si_groups
from theory.stability import sphere_sharpness

TINY = dict(dataset="synthetic", width=2, batch_size=32, record_every=3, eval_every=7, quiet=True,
            threads=1, checkpoint_every=10, init_si_norm=None)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _symmetric(seed: int, n: int, spread: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    evals = torch.linspace(-spread, 1.0, n, dtype=torch.float64)   # negative ones too
    return (q * evals) @ q.T


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), spread=st.floats(0.1, 5.0))
def test_lanczos_finds_the_largest_algebraic_eigenvalue(seed, spread):
    a = _symmetric(seed, 40, spread)
    v0 = torch.randn(40, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    full = lanczos_top_eigenvalue(lambda v: a @ v, v0, max_iter=40, rtol=1e-12)
    assert full.value == pytest.approx(1.0, abs=1e-9)          # not the largest in magnitude
    short = lanczos_top_eigenvalue(lambda v: a @ v, v0, max_iter=6, rtol=0.0)
    assert short.iterations == 6
    # the residual bound brackets an eigenvalue of the matrix (Lanczos in exact arithmetic; the
    # 6-step run is short enough for rounding not to matter) ...
    evals = np.linspace(-spread, 1.0, 40)
    assert short.residual > 0
    assert np.min(np.abs(evals - short.value)) <= short.residual * (1 + 1e-9)
    # ... and the top Ritz value never exceeds the top eigenvalue
    assert short.value <= 1.0 + 1e-12


def test_lanczos_stops_when_the_krylov_space_is_exhausted():
    a = torch.diag(torch.tensor([1.0, 3.0, 5.0], dtype=torch.float64))
    res = lanczos_top_eigenvalue(lambda v: a @ v, torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64),
                                 rtol=0.0)
    assert res.iterations == 1 and res.value == 3.0 and res.residual == 0.0   # why starts are random


def test_lanczos_rejects_bad_input():
    with pytest.raises(ValueError, match="non-zero"):
        lanczos_top_eigenvalue(lambda v: v, torch.zeros(3))
    with pytest.raises(ValueError, match="max_iter"):
        lanczos_top_eigenvalue(lambda v: v, torch.ones(3), max_iter=0)


def _tiny_convnet(seed=0):
    """A float64 SI ConvNet (width 1, 8x8 inputs: 405 SI weights), its SI tensors and batches."""
    torch.manual_seed(seed)
    data = make_synthetic(n_train=96, n_test=8, image_size=8, seed=seed)
    model = build_model("convnet", mode="si", width=1, num_classes=data.num_classes,
                        in_channels=data.channels, input_size=8).double()
    scale, shift = (t.double() for t in data.normaliser())
    x = data.x_train.double()
    names = find_si_groups(model, torch.addcmul(shift, x[:8], scale)).si
    params = dict(model.named_parameters())
    return model, [params[n] for n in names], fixed_batches(x, data.y_train, 32, 3, scale, shift)


def _explicit_sphere_sharpness(model, params, batches):
    """theory.stability.sphere_sharpness of the full autograd Hessian (an independent route)."""
    names = [n for n, p in model.named_parameters() if any(p is q for q in params)]
    sizes, shapes = [p.numel() for p in params], [p.shape for p in params]
    w0 = torch.cat([p.detach().reshape(-1) for p in params])

    def loss(w):
        repl = {n: c.view(s) for n, c, s in zip(names, torch.split(w, sizes), shapes)}
        return sum(F.cross_entropy(torch.func.functional_call(model, repl, (xb,)), yb)
                   for xb, yb in batches) / len(batches)

    hess = torch.autograd.functional.hessian(loss, w0)
    return sphere_sharpness(hess.numpy(), w0.numpy())


def test_probe_matches_the_explicit_riemannian_hessian():
    model, params, batches = _tiny_convnet()
    n = sum(p.numel() for p in params)
    probe = SharpnessProbe(model, params, batches, max_iter=n, rtol=1e-10)
    row = probe.measure(iteration=5, lr=0.7)
    h = _explicit_sphere_sharpness(model, params, batches)
    assert h > 0
    assert row[4] == pytest.approx(h, rel=1e-7)                       # sphere sharpness rho^2 lambda
    rho = float(torch.linalg.vector_norm(torch.cat([p.detach().reshape(-1) for p in params])))
    assert row[2] == pytest.approx(rho) and row[3] == pytest.approx(h / rho ** 2, rel=1e-7)
    assert row[5] == pytest.approx(0.7 * h / rho ** 2, rel=1e-7)     # eta*lambda_max = eff_lr * h


@pytest.mark.parametrize("c", [0.25, 3.0])
def test_sharpness_on_the_unit_sphere_is_scale_invariant(c):
    """Hessian identity: lambda_max(c x) = lambda_max(x)/c^2, so h = rho^2 lambda_max is unchanged."""
    model, params, batches = _tiny_convnet(seed=1)
    for m in model.modules():               # BN's eps breaks exact invariance at the 1e-4 level
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-14
    probe = SharpnessProbe(model, params, batches, max_iter=120, rtol=1e-9)
    base = probe.measure(0, 1.0)
    with torch.no_grad():
        for p in params:
            p.mul_(c)
    scaled = probe.measure(0, 1.0)
    assert scaled[4] == pytest.approx(base[4], rel=1e-6)
    assert scaled[3] == pytest.approx(base[3] / c ** 2, rel=1e-6)


def test_probe_has_no_side_effects():
    model, params, batches = _tiny_convnet(seed=2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    model.eval()
    SharpnessProbe(model, params, batches, max_iter=10).measure(0, 1.0)
    assert not model.training                                  # mode restored
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())   # BN stats too
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in params)


def test_measuring_does_not_change_training_and_resumes(tmp_path):
    cfg = TrainConfig(**TINY, iters=30, augment=True, out=str(tmp_path))
    plain = run_training(cfg, write=False)
    measured = run_training(replace(cfg, sharpness_every=10, sharpness_iters=8), run_dir=tmp_path / "m")
    for k in plain.steps:
        np.testing.assert_array_equal(plain.steps[k], measured.steps[k], err_msg=k)
    assert plain.sharpness is None
    s = measured.sharpness
    assert list(s["iteration"]) == [0, 10, 20]
    np.testing.assert_allclose(s["eff_lr_sharpness"], cfg.lr * s["top_eigenvalue"])
    np.testing.assert_allclose(s["sphere_sharpness"], s["si_norm"] ** 2 * s["top_eigenvalue"])
    assert (tmp_path / "m" / "sharpness.csv").is_file()
    assert "stability" in measured.period_summary
    part = run_training(replace(cfg, sharpness_every=10, sharpness_iters=8), run_dir=tmp_path / "p",
                        stop_after=15)
    res = resume_training(tmp_path / "p")
    for k in s:
        np.testing.assert_array_equal(s[k], res.sharpness[k], err_msg=k)
    assert part.iterations == 15
    late = run_training(replace(cfg, sharpness_every=10, sharpness_from=11, sharpness_iters=8), write=False)
    assert list(late.sharpness["iteration"]) == [20]          # multiples of 10 from iteration 11 on
    np.testing.assert_array_equal(late.sharpness["top_eigenvalue"], s["top_eigenvalue"][2:])


def test_stability_summary_takes_the_peak_of_each_decay_phase():
    it = np.arange(0, 100, 10)
    prod = np.array([5.0, 0.5, 0.9, 1.6, 2.1, 0.4, 0.8, 1.2, 1.9, 2.4])
    out = stability_at_destabilisations({"iteration": it, "eff_lr_sharpness": prod}, [45, 95],
                                        momentum=0.0)
    assert out["threshold"] == 2.0
    # first onset at 45: later half of [0, 45] -> iterations 30, 40; peak 2.1 at 40
    assert out["onsets"][0] == {"onset": 45, "peak": 2.1, "peak_iteration": 40, "last": 2.1,
                                "last_iteration": 40}
    # second onset at 95: later half of [45, 95] -> 70, 80, 90; peak 2.4 at 90
    assert out["onsets"][1]["peak"] == 2.4 and out["onsets"][1]["peak_iteration"] == 90
    assert out["median_peak"] == pytest.approx(2.25)
    assert out["fraction_above_threshold"] == pytest.approx(0.3)
    assert "peaks at 2.25 (median), threshold 2(1+mu) = 2 (ratio 1.12); 30% of 10" in stability_line(out)
    none = stability_at_destabilisations({"iteration": it, "eff_lr_sharpness": prod}, [], momentum=0.9)
    assert none["threshold"] == pytest.approx(3.8) and none["onsets"] == []
    assert "10 measurements, no destabilisation" in stability_line(none)


def test_config_and_probe_reject_bad_settings():
    with pytest.raises(ValueError, match="sharpness_every"):
        TrainConfig(sharpness_every=-1)
    with pytest.raises(ValueError, match="sharpness_iters"):
        TrainConfig(sharpness_iters=0)
    with pytest.raises(ValueError, match="sharpness_from"):
        TrainConfig(sharpness_from=-1)
    model, params, batches = _tiny_convnet()
    with pytest.raises(ValueError, match="no SI parameters"):
        SharpnessProbe(model, [], batches)
    with pytest.raises(ValueError, match="no batches"):
        SharpnessProbe(model, params, [])
