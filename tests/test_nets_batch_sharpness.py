"""Batch sharpness on the sphere (nets.monitor.batch_sharpness) against an exact Hessian."""
import numpy as np
import pytest
import torch
from torch import nn

from nets.monitor.batch_sharpness import batch_sharpness_backward
from theory.stability import riemannian_hessian


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4, bias=False), nn.BatchNorm1d(4, affine=False), nn.Tanh(),
                          nn.Linear(4, 3)).double()
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    return model, x, y


def _loss_of(model, x, y, w_flat):
    w = model[0].weight
    out = nn.functional.linear(x, w_flat.view_as(w))
    for layer in list(model)[1:]:
        out = layer(out)
    return nn.functional.cross_entropy(out, y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_sharpness_matches_exact_hessian(seed):
    model, x, y = _tiny(seed)
    si = [model[0].weight]
    with torch.no_grad():
        si[0].mul_(3.0)                       # away from the unit sphere: tests the rho^2 scaling
    w = si[0].detach().reshape(-1).clone()
    H = torch.autograd.functional.hessian(lambda v: _loss_of(model, x, y, v), w).numpy()
    wg = w.clone().requires_grad_()
    g = torch.autograd.grad(_loss_of(model, x, y, wg), wg)[0].numpy()
    # the reference: projected gradient and Riemannian Hessian on the unit sphere, by numpy
    u = w.numpy() / np.linalg.norm(w.numpy())
    v = g - u * (u @ g)
    h_sphere = v @ riemannian_hessian(H, w.numpy()) @ v / (v @ v)
    params = list(model.parameters())
    expected_grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params)
    rec = batch_sharpness_backward(nn.functional.cross_entropy(model(x), y), params, si, iteration=7, lr=0.3)
    rho = float(np.linalg.norm(w.numpy()))
    assert rec.iteration == 7 and rec.si_norm == pytest.approx(rho)
    assert rec.sphere_batch_sharpness == pytest.approx(h_sphere, rel=1e-9)
    assert rec.batch_sharpness == pytest.approx(h_sphere / rho**2, rel=1e-9)
    assert rec.eff_batch_sharpness == pytest.approx(0.3 * h_sphere / rho**2, rel=1e-9)
    for p, e in zip(params, expected_grads):         # the step's gradient is left in .grad, unchanged
        torch.testing.assert_close(p.grad, e)


def test_batch_sharpness_needs_si_among_params():
    model, x, y = _tiny()
    loss = nn.functional.cross_entropy(model(x), y)
    with pytest.raises(ValueError, match="SI parameters"):
        batch_sharpness_backward(loss, [model[3].weight], [model[0].weight], iteration=0, lr=1.0)


def test_trainer_records_batch_sharpness_and_batched_refuses(tmp_path):
    from nets.config import TrainConfig
    from nets.training.batched import check_batchable
    from nets.training.run import run_training

    cfg = TrainConfig(model="convnet", mode="si", dataset="synthetic", width=4, image_size=8, batch_size=16,
                      iters=12, record_every=2, eval_every=0, batch_sharpness_every=5, sharpness_from=4,
                      checkpoint_every=0, quiet=True)
    r = run_training(cfg, run_dir=tmp_path / "run")
    assert r.batch_sharpness["iteration"].tolist() == [5, 10]
    assert np.all(np.isfinite(r.batch_sharpness["sphere_batch_sharpness"]))
    z = np.load(tmp_path / "run" / "metrics.npz")
    assert z["batch_sharpness_eff_batch_sharpness"].shape == (2,)
    assert (tmp_path / "run" / "batch_sharpness.csv").exists()
    with pytest.raises(ValueError, match="batch sharpness"):
        check_batchable([cfg, cfg])


def test_measuring_leaves_the_training_unchanged(tmp_path):
    from dataclasses import replace

    from nets.config import TrainConfig
    from nets.training.run import run_training

    cfg = TrainConfig(model="convnet", mode="si", dataset="synthetic", width=4, image_size=8, batch_size=16,
                      iters=15, record_every=1, eval_every=0, checkpoint_every=0, quiet=True)
    plain = run_training(cfg, run_dir=None)
    measured = run_training(replace(cfg, batch_sharpness_every=3), run_dir=None)
    np.testing.assert_allclose(measured.steps["si_norm"], plain.steps["si_norm"], rtol=1e-6)
    np.testing.assert_allclose(measured.steps["train_loss"], plain.steps["train_loss"], rtol=1e-5)
