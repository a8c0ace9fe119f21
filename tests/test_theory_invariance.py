import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from si_functions import SI_FUNCTIONS, bn_linear, normalised_quadratic, quadratic_grad_numpy, spd_matrix

from theory.invariance import check_module_scale_invariance, check_scale_invariance, find_scale_invariant_params

alphas = st.floats(0.05, 20.0).filter(lambda a: abs(a - 1) > 1e-3)


@settings(max_examples=25, deadline=None)
@given(alpha=alphas, seed=st.integers(0, 10_000), idx=st.integers(0, len(SI_FUNCTIONS) - 1))
def test_identities_hold_for_torch_si_functions(alpha, seed, idx):
    fn = SI_FUNCTIONS[idx]
    x = np.random.default_rng(seed).standard_normal(fn.dim) * np.exp(np.random.default_rng(seed + 1).uniform(-2, 2))
    rep = check_scale_invariance(fn.torch_f, x, alpha, seed=seed)
    assert rep.is_invariant(1e-8), rep


@settings(max_examples=20, deadline=None)
@given(alpha=alphas, d=st.integers(2, 12), seed=st.integers(0, 1000))
def test_numpy_callable_with_analytic_grad(alpha, d, seed):
    A = spd_matrix(d, np.random.default_rng(seed))
    f = lambda x: 0.5 * (x @ A @ x) / (x @ x)
    x = np.random.default_rng(seed + 7).standard_normal(d)
    rep = check_scale_invariance(f, x, alpha, grad=quadratic_grad_numpy(A))
    # value, orthogonality and gradient scaling are exact; Hessian terms use finite differences
    assert max(rep.value, rep.orthogonality, rep.grad_scaling) < 1e-10
    assert max(rep.hessian_scaling, rep.euler) < 1e-5


def test_numpy_callable_finite_differences():
    A = spd_matrix(5, np.random.default_rng(3))
    f = lambda x: 0.5 * (x @ A @ x) / (x @ x)
    rep = check_scale_invariance(f, np.arange(1.0, 6.0), 3.0)
    assert rep.is_invariant(1e-4)


def test_non_invariant_layer_is_reported():
    fn = bn_linear(normalise=False)
    x = np.random.default_rng(0).standard_normal(fn.dim)
    rep = check_scale_invariance(fn.torch_f, x, 2.0)
    assert not rep.is_invariant(1e-3)
    assert rep.value > 1e-2 and rep.orthogonality > 1e-2 and rep.grad_scaling > 1e-2
    # and the same function with BN passes at the same point
    assert check_scale_invariance(bn_linear().torch_f, x, 2.0).is_invariant(1e-8)


def test_residuals_scale_with_the_defect():
    """A function that is SI up to a perturbation eps*|x|^2 reports residuals growing with eps."""
    base = normalised_quadratic(4, seed=2).torch_f
    x = np.array([1.0, -0.5, 0.3, 2.0])
    res = [check_scale_invariance(lambda z, e=e: base(z) + e * (z @ z), x).value for e in (1e-6, 1e-3)]
    assert res[0] < res[1] and res[1] > 1e-4


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_alpha(bad):
    with pytest.raises(ValueError, match="alpha"):
        check_scale_invariance(lambda x: (x**2).sum() / (x**2).sum(), np.ones(3), bad)


@pytest.mark.parametrize("x", [np.array([1.0, np.nan]), np.zeros(3), np.array(2.0), np.array([])])
def test_bad_points(x):
    with pytest.raises(ValueError):
        check_scale_invariance(lambda z: (z**2).sum(), x)


def test_bad_grad_shape():
    with pytest.raises(ValueError, match="shape"):
        check_scale_invariance(lambda z: float(np.sum(z**2)), np.ones(3), grad=lambda z: np.ones(4))


def _mlp(affine=False, bias=False):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8, bias=bias), torch.nn.BatchNorm1d(8, affine=affine), torch.nn.ReLU(),
        torch.nn.Linear(8, 8, bias=bias), torch.nn.BatchNorm1d(8, affine=affine), torch.nn.ReLU(),
        torch.nn.Linear(8, 3),
    )


def test_detector_finds_bn_preceded_weights_only():
    x = torch.randn(16, 4)
    assert find_scale_invariant_params(_mlp(), x) == ["0.weight", "3.weight"]
    # affine BN params (with a non-zero shift) and the head are not SI; BN-preceded weights still are
    model = _mlp(affine=True)
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.bias.normal_()
    assert find_scale_invariant_params(model, x) == ["0.weight", "3.weight"]
    # at the default init (shift 0) ReLU(gamma * z) is homogeneous in gamma, so the first BN's
    # gamma is SI too -- the detector tests the function, it does not guess
    assert "1.weight" in find_scale_invariant_params(_mlp(affine=True), x)


def test_detector_finds_convs_in_shortcut_and_skips_frozen():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.bn = torch.nn.BatchNorm2d(4, affine=False)
            self.shortcut = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1, bias=False),
                                                torch.nn.BatchNorm2d(4, affine=False))
            self.head = torch.nn.Linear(4, 2, bias=False)

        def forward(self, x):
            h = torch.relu(self.bn(self.conv(x)) + self.shortcut(x))
            return self.head(h.mean((2, 3)))

    model = Block()
    x = torch.randn(6, 3, 5, 5)
    assert find_scale_invariant_params(model, x) == ["conv.weight", "shortcut.0.weight"]
    model.head.weight.requires_grad_(False)
    assert "head.weight" not in find_scale_invariant_params(model, x, only_trainable=False)


def test_detector_leaves_model_untouched():
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    find_scale_invariant_params(model, torch.randn(16, 4))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_module_group_identities():
    model = _mlp()
    rep = check_module_scale_invariance(model, ["0.weight", "3.weight"], torch.randn(16, 4), alpha=0.3)
    assert rep.is_invariant(1e-7), rep
    rep_head = check_module_scale_invariance(model, ["6.weight"], torch.randn(16, 4))
    assert rep_head.value > 1e-2


def test_module_bad_inputs():
    with pytest.raises(ValueError, match="unknown"):
        check_module_scale_invariance(_mlp(), ["nope"], torch.randn(8, 4))
    with pytest.raises(ValueError):
        find_scale_invariant_params(_mlp(), torch.randn(8, 4), alphas=(1.0,))
