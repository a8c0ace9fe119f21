"""ConvNet variants with LayerNorm / GroupNorm / weight normalisation: the SI detector finds their
SI weights by testing, and finds none in a network without normalisation."""
import pytest
import torch
from torch import nn

from nets import TrainConfig, run_training
from nets.models import NORMS, build_model
from nets.monitor.si import find_si_groups, joint_si_violation

pytestmark = pytest.mark.usefixtures("one_torch_thread")

X = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _convnet(norm, mode="si"):
    torch.manual_seed(0)
    return build_model("convnet", width=4, input_size=8, norm=norm, mode=mode)


def _conv_weights(model):
    """Names of the trained conv direction tensors (v under weight norm), by module type."""
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            wn = getattr(getattr(mod, "parametrizations", None), "weight", None)
            out.append(f"{name}.parametrizations.weight.original1" if wn is not None else f"{name}.weight")
    return out


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("mode", ["si", "practical"])
def test_every_conv_is_found_individually_si(norm, mode):
    model = _convnet(norm, mode)
    groups = find_si_groups(model, X)
    convs = _conv_weights(model)
    assert len(convs) == 4
    assert groups.si == convs and groups.individual == convs
    if mode == "practical":      # norm-layer affine parameters, WN magnitudes and the head are not SI
        assert groups.other and not set(groups.other) & set(convs)
        assert all(".bias" in n or "original0" in n or n.endswith(".weight") for n in groups.other)
    else:
        assert groups.other == []


@pytest.mark.parametrize("norm", ["ln", "gn"])
def test_per_sample_normalisations_are_si_for_each_input_alone(norm):
    """LN/GN normalise each sample: the output of one image is unchanged by scaling a conv,
    with no batch at all (BN needs the batch)."""
    model = _convnet(norm).eval()
    conv = model.features[0].weight
    with torch.no_grad():
        base = model(X[:1])
        conv.mul_(7.0)
        assert torch.allclose(model(X[:1]), base, rtol=1e-4, atol=1e-5)


def test_weight_norm_magnitudes_are_frozen_in_si_mode_and_not_si():
    model = _convnet("wn")
    g = model.features[0].parametrizations.weight.original0
    assert not g.requires_grad
    practical = _convnet("wn", "practical")
    names = [n for n, _ in practical.named_parameters() if n.endswith("original0")]
    assert joint_si_violation(practical, names[:1], X) > 1e-3       # scaling g changes the output


def test_plain_convs_without_normalisation_are_not_si():
    """A BN-free ReLU ConvNet is positively homogeneous in each conv, not invariant: nothing is SI."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(),
                          nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 10))
    groups = find_si_groups(plain, X)
    assert groups.si == [] and groups.individual == []
    assert joint_si_violation(plain, ["0.weight", "2.weight"], X) > 0.5


@pytest.mark.parametrize("norm", ["ln", "gn", "wn"])
def test_a_normalisation_variant_trains_with_wd_and_records_its_si_norm(norm):
    cfg = TrainConfig(dataset="synthetic", width=4, norm=norm, batch_size=32, iters=12, record_every=3,
                      eval_every=-1, quiet=True, threads=1, checkpoint_every=0, lr=0.5, wd=0.05)
    res = run_training(cfg, write=False)
    assert len(res.si_groups.si) == 4
    rho = res.steps["si_norm"]
    assert rho[-1] < rho[0]                                       # WD shrinks the SI norm


def test_norm_choice_is_validated():
    with pytest.raises(ValueError, match="norm"):
        TrainConfig(norm="batch")
    with pytest.raises(ValueError, match="convnet"):
        TrainConfig(model="resnet18", norm="gn")
    with pytest.raises(ValueError, match="norm"):
        build_model("resnet18", norm="ln")
