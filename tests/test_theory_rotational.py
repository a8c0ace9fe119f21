"""theory.rotational: momentum filter sums (sympy), and every equilibrium formula against random
walks made by PyTorch's own optimizers (simulate.rotational) -- the check Kosson et al.'s AdamW
values need before nets.SIMonitor uses them."""
import numpy as np
import pytest
import sympy as sp

from simulate.rotational import WalkConfig, random_walk, steady_state
from theory.equilibrium import equilibrium_angular_update, equilibrium_norm
from theory.rotational import (
    adamw_equilibrium_angular_update,
    adamw_equilibrium_effective_lr,
    adamw_equilibrium_norm,
    adaptive_effective_lr,
    momentum_filter_sums,
    sgd_equilibrium_angular_update,
    sgd_equilibrium_norm,
)

k = sp.symbols("k", integer=True, nonnegative=True)
m, d = sp.symbols("mu d", nonnegative=True)
# the step filters c_0, c_k (k >= 1), written from the update rules: PyTorch SGD's heavy ball with
# dampening d, its Nesterov variant, Adam's first-moment EMA
FILTERS = {"heavy": ((1 - d), (1 - d) * m ** k), "nesterov": (1 + m, m ** (k + 1)), "ema": ((1 - m), (1 - m) * m ** k)}


CASES = [(kind, mu, 0) for kind in FILTERS for mu in (0, sp.Rational(1, 2), sp.Rational(9, 10))]


@pytest.mark.parametrize("kind,mu,damp", CASES + [("heavy", sp.Rational(9, 10), sp.Rational(3, 10))])
def test_filter_sums_match_sympy_series(kind, mu, damp):
    c0, ck = (e.subs({m: mu, d: damp}) for e in FILTERS[kind])
    s1 = c0 + sp.summation(ck, (k, 1, sp.oo))
    s2 = c0 ** 2 + sp.summation(ck ** 2, (k, 1, sp.oo))
    got = momentum_filter_sums(float(mu), nesterov=kind == "nesterov", dampening=float(damp), ema=kind == "ema")
    assert got == pytest.approx((float(s1), float(s2)), rel=1e-12)


def test_plain_sgd_is_theory_equilibrium_and_variants_differ_from_it():
    eta, lam, G = 0.1, 0.02, 1.3
    for mu in (0.0, 0.9):
        assert sgd_equilibrium_angular_update(eta, lam, mu) == equilibrium_angular_update(eta, lam, mu)
        assert sgd_equilibrium_norm(eta, lam, G, mu) == equilibrium_norm(eta, lam, G, mu)
    heavy = sgd_equilibrium_angular_update(eta, lam, 0.9)
    assert sgd_equilibrium_angular_update(eta, lam, 0.9, nesterov=True) / heavy > 1.1
    assert sgd_equilibrium_angular_update(eta, lam, 0.9, decoupled=True) == pytest.approx(
        np.sqrt(2 * eta * lam * 0.1 / 1.9), rel=1e-12)
    # the general random-walk formula 2*delta*s2/s1^2 with Adam's EMA filter is Kosson et al.'s value
    s1, s2 = momentum_filter_sums(0.9, ema=True)
    assert adamw_equilibrium_angular_update(eta, lam, 0.9) == pytest.approx(np.sqrt(2 * eta * lam * s2 / s1 ** 2))
    assert adamw_equilibrium_effective_lr(eta, lam, 256) == pytest.approx(eta / adamw_equilibrium_norm(eta, lam, 256))
    assert adaptive_effective_lr(0.01, 2.0) == pytest.approx(0.005)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="momentum"):
        momentum_filter_sums(1.0)
    with pytest.raises(ValueError, match="nesterov"):
        momentum_filter_sums(0.9, nesterov=True, dampening=0.1)
    with pytest.raises(ValueError, match="lam"):
        adamw_equilibrium_norm(0.1, 0.0, 10)
    with pytest.raises(ValueError, match="eta\\*lam"):
        sgd_equilibrium_angular_update(10.0, 0.2, 0.5, nesterov=True)


D = 128
CONFIGS = [WalkConfig("sgd", 0.1, 0.02), WalkConfig("sgd", 0.1, 0.02, momentum=0.9),
           WalkConfig("sgd", 0.1, 0.02, momentum=0.9, nesterov=True),
           WalkConfig("sgd", 0.1, 0.02, momentum=0.9, decoupled=True),
           WalkConfig("adamw", 0.01, 0.2, beta1=0.9), WalkConfig("adamw", 0.01, 0.2, beta1=0.0)]


def _predicted(c):
    if c.kind == "sgd":
        kw = dict(nesterov=c.nesterov, decoupled=c.decoupled)
        return (sgd_equilibrium_norm(c.eta, c.lam, 1.0, c.momentum, **kw),
                sgd_equilibrium_angular_update(c.eta, c.lam, c.momentum, **kw))
    return adamw_equilibrium_norm(c.eta, c.lam, D), adamw_equilibrium_angular_update(c.eta, c.lam, c.beta1)


@pytest.fixture(scope="module")
def walks():
    return steady_state(random_walk(CONFIGS, d=D, seeds=8, steps=2500, sigma=1.0, init_norm=2.0))


@pytest.mark.parametrize("j", range(len(CONFIGS)), ids=[f"{c.kind}-mu{c.momentum or c.beta1}"
                                                        f"{'-nesterov' if c.nesterov else ''}"
                                                        f"{'-decoupled' if c.decoupled else ''}" for c in CONFIGS])
def test_equilibrium_matches_random_walks_under_torch_optimizers(walks, j):
    """Measured RMS angular update and norm at equilibrium (second half of 2,500 steps, 8 walks of
    128 weights, eta*lambda = 2e-3) vs the formulas; leading order in eta*lambda, so a few %."""
    rho, angle = _predicted(CONFIGS[j])
    assert walks["angle"][j] == pytest.approx(angle, rel=0.02)
    assert walks["norm"][j] == pytest.approx(rho, rel=0.04)
