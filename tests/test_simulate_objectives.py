"""Toy SI objectives: gradients against autograd / finite differences, scale invariance, minima."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from simulate.data import make_blobs
from simulate.objectives import BNMLP, BNLinearClassifier, NormalizedQuadratic, make_objective
from theory.invariance import check_scale_invariance

OBJECTIVES = {
    "quadratic": lambda: NormalizedQuadratic(12, seed=1),
    "quadratic-offset-unrotated": lambda: NormalizedQuadratic(12, a_min=0.3, a_max=2.0, rotate=False),
    "quadratic-geometric": lambda: NormalizedQuadratic(12, spectrum="geometric", a_min=0.01, a_max=1.0),
    "classifier": lambda: BNLinearClassifier(n_classes=3, n_features=4, n_samples=64),
    "classifier-minibatch": lambda: BNLinearClassifier(n_classes=3, n_features=4, n_samples=64, batch_size=16),
    "mlp": lambda: BNMLP(hidden=5, n_features=3, n_samples=64),
    "mlp-minibatch": lambda: BNMLP(hidden=5, n_features=3, n_samples=64, batch_size=16),
}


def _batch(obj, B, seed=0):
    if obj.batch_size is None:
        return None
    return np.random.default_rng(seed).integers(0, obj.n_samples, size=(B, obj.batch_size))


def _autograd(obj, x, batch):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    bt = None if batch is None else torch.from_numpy(batch)
    loss = obj.torch_loss(xt, bt)
    (g,) = torch.autograd.grad(loss.sum(), xt)
    return loss.detach().numpy(), g.numpy()


def _finite_diff(obj, x, batch, h=1e-6):
    g = np.zeros_like(x)
    for j in range(x.shape[1]):
        e = np.zeros_like(x)
        e[:, j] = h
        g[:, j] = (obj.loss(x + e, batch) - obj.loss(x - e, batch)) / (2 * h)
    return g


@pytest.mark.parametrize("name", OBJECTIVES)
def test_gradient_matches_autograd_and_finite_differences(name):
    obj = OBJECTIVES[name]()
    x = obj.init([0, 1, 2], norm=1.7)
    batch = _batch(obj, 3)
    loss, grad = obj.loss_and_grad(x, batch)
    assert loss.shape == (3,) and grad.shape == x.shape
    ref_loss, ref_grad = _autograd(obj, x, batch)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-12)
    # finite differences are independent of both the analytic gradient and autograd
    np.testing.assert_allclose(grad, _finite_diff(obj, x, batch), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_scale_invariance_identities(name):
    obj = OBJECTIVES[name]()
    x = obj.init([3], norm=0.8)[0]
    batch = _batch(obj, 1)
    bt = None if batch is None else torch.from_numpy(batch)
    rep = check_scale_invariance(lambda v: obj.torch_loss(v.reshape(1, -1), bt)[0], x, alpha=3.0)
    assert rep.max_residual < 1e-8, rep


@pytest.mark.parametrize("name", ["quadratic", "classifier", "mlp"])
def test_float32_in_float32_out(name):
    obj = OBJECTIVES[name]()
    x = obj.init([0, 1]).astype(np.float32)
    loss, grad = obj.loss_and_grad(x)
    assert grad.dtype == np.float32
    _, g64 = obj.loss_and_grad(x.astype(np.float64))
    np.testing.assert_allclose(grad, g64, rtol=2e-3, atol=2e-5)


@settings(max_examples=30, deadline=None)
@given(alpha=st.floats(1e-3, 1e3), seed=st.integers(0, 10**6))
def test_quadratic_gradient_orthogonal_and_scales(alpha, seed):
    obj = NormalizedQuadratic(20, seed=2)
    x = np.random.default_rng(seed).standard_normal((2, 20))
    loss, g = obj.loss_and_grad(x)
    loss_a, g_a = obj.loss_and_grad(alpha * x)
    np.testing.assert_allclose(loss_a, loss, rtol=1e-12)
    np.testing.assert_allclose(alpha * g_a, g, rtol=1e-9, atol=1e-14)
    cos = np.einsum("bd,bd->b", g, x) / (np.linalg.norm(g, axis=1) * np.linalg.norm(x, axis=1))
    assert np.all(np.abs(cos) < 1e-12)


def test_quadratic_minimum_and_sharpness():
    obj = NormalizedQuadratic(15, a_min=0.2, a_max=1.5, seed=4)
    u_min = obj.from_eigenbasis(np.eye(15)[:1])          # bottom eigenvector
    loss, grad = obj.loss_and_grad(3.0 * u_min)
    assert loss[0] == pytest.approx(0.1, rel=1e-12)       # a_min / 2
    assert np.abs(grad).max() < 1e-14
    random_losses = obj.loss(obj.init(range(50)))
    assert random_losses.min() > obj.min_loss
    # sharpness on the sphere at the minimum: autograd Hessian + theory vs the closed form
    assert obj.sphere_sharpness() == pytest.approx(1.3)
    assert obj.sphere_sharpness(u_min[0]) == pytest.approx(1.3, rel=1e-10)
    # eigenbasis round trip and the diagonal twin give the same losses
    x = obj.init([0, 1])
    np.testing.assert_allclose(obj.from_eigenbasis(obj.to_eigenbasis(x)), x, atol=1e-14)
    np.testing.assert_allclose(obj.diagonal().loss(obj.to_eigenbasis(x)), obj.loss(x), rtol=1e-12)


def test_blobs_are_linearly_separable():
    from sklearn.svm import LinearSVC
    data = make_blobs(300, 6, 4, seed=3)
    clf = LinearSVC(C=1e4, max_iter=200_000).fit(data.X, data.y)
    assert clf.score(data.X, data.y) == 1.0
    assert 0.8 * 300 < data.n_samples <= 300 and data.one_hot().shape == (data.n_samples, 4)


def test_classifier_has_positive_minimum_reachable_by_gd():
    obj = BNLinearClassifier(n_classes=3, n_features=4, n_samples=64)
    x = obj.init([0])
    for _ in range(300):                                   # plain GD on the sphere, no WD
        _, g = obj.loss_and_grad(x)
        x = x - 0.5 * g
        x /= np.linalg.norm(x)
    loss, g = obj.loss_and_grad(x)
    assert 0 < loss[0] < 0.2 and np.linalg.norm(g) < 0.05


def test_factory_and_validation():
    assert isinstance(make_objective("quadratic", dim=5), NormalizedQuadratic)
    assert make_objective("mlp", hidden=4).dim == 4 * 8 + 16
    with pytest.raises(ValueError, match="unknown objective"):
        make_objective("resnet")
    with pytest.raises(ValueError):
        NormalizedQuadratic(5, spectrum="geometric", a_min=0.0)
    with pytest.raises(ValueError):
        NormalizedQuadratic(eigenvalues=[-1.0, 1.0])
    with pytest.raises(ValueError):
        BNLinearClassifier(n_samples=64, batch_size=1)
    x = NormalizedQuadratic(7).init([5, 5, 6], norm=2.5)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 2.5)
    np.testing.assert_array_equal(x[0], x[1])
    assert not np.allclose(x[0], x[2])
