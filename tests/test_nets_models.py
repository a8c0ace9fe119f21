"""Models of nets/: shapes for several inputs, scale invariance, SI groups found by testing."""
import pytest
import torch
from torch import nn

from nets.models import ConvNet, PreActResNet18, build_model
from nets.monitor.si import find_si_groups, joint_si_violation

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _conv_names(model):
    return [f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, nn.Conv2d)]


@pytest.mark.parametrize("name", ["convnet", "resnet18"])
@pytest.mark.parametrize("size,channels", [(32, 3), (16, 1), (8, 1), (8, 3), (28, 3)])
def test_forward_shapes_for_input_sizes_and_channels(name, size, channels):
    torch.manual_seed(0)
    m = build_model(name, mode="si", width=2, num_classes=7, in_channels=channels, input_size=size)
    out = m(torch.randn(3, channels, size, size))
    assert out.shape == (3, 7)


def test_convnet_pooling_matches_paper_at_32():
    m = ConvNet(width=2, input_size=32)
    pools = [mod for mod in m.features if isinstance(mod, nn.MaxPool2d)]
    assert len(pools) == 3 and m.pool.kernel_size == 4       # 32 -> 4x4 -> MaxPool(4)
    assert isinstance(ConvNet(width=2, input_size=8).pool, nn.Identity)
    assert ConvNet(width=2, input_size=16).pool.kernel_size == 2


@pytest.mark.parametrize("cls", [ConvNet, PreActResNet18])
def test_si_mode_last_layer_fixed_at_norm_10_and_frozen(cls):
    m = cls(width=2, input_size=8, mode="si")
    assert torch.linalg.norm(m.linear.weight).item() == pytest.approx(10.0, rel=1e-6)
    assert not any(p.requires_grad for p in m.linear.parameters())
    assert not any(isinstance(b, nn.BatchNorm2d) and b.affine for b in m.modules())


def test_practical_mode_trains_everything():
    m = ConvNet(width=2, input_size=8, mode="practical")
    assert all(p.requires_grad for p in m.parameters())
    assert all(b.affine for b in m.modules() if isinstance(b, nn.BatchNorm2d))


def test_convnet_output_unchanged_when_one_si_weight_is_scaled():
    torch.manual_seed(0)
    m = ConvNet(width=4, input_size=8, in_channels=3, mode="si").double().train()
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d):
            b.eps = 1e-12
    x = torch.randn(8, 3, 8, 8, dtype=torch.float64)
    base = m(x)
    with torch.no_grad():
        m.features[3].weight.mul_(7.3)
    assert torch.allclose(m(x), base, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        m.linear.weight.mul_(2.0)      # not SI: the output must change
    assert not torch.allclose(m(x), base, rtol=1e-3)


def test_convnet_si_group_is_exactly_the_convs():
    torch.manual_seed(0)
    m = ConvNet(width=4, input_size=8, mode="si")
    g = find_si_groups(m, torch.randn(6, 3, 8, 8))
    assert g.si == _conv_names(m) == g.individual
    assert g.other == [] and g.frozen == ["linear.weight", "linear.bias"]


def test_resnet_si_group_is_every_conv_including_shortcuts():
    torch.manual_seed(0)
    m = PreActResNet18(width=2, input_size=8, mode="si")
    g = find_si_groups(m, torch.randn(6, 3, 8, 8))
    convs = _conv_names(m)
    assert len(convs) == 20 and sum("shortcut" in n for n in convs) == 3
    assert g.si == convs and g.other == [] and g.frozen == ["linear.weight"]
    # each block's first conv is SI alone; the rest only jointly (residual sums)
    assert g.individual == [n for n in convs if n.endswith(".conv1.weight") and n != "conv1.weight"]
    assert joint_si_violation(m, convs, torch.randn(6, 3, 8, 8)) < 1e-9
    assert joint_si_violation(m, ["layer1.0.conv2.weight"], torch.randn(6, 3, 8, 8)) > 1e-3


def test_practical_groups_keep_bn_and_linear_out_and_flag_inert_biases():
    torch.manual_seed(0)
    m = PreActResNet18(width=2, input_size=8, mode="practical")
    g = find_si_groups(m, torch.randn(6, 3, 8, 8))
    assert g.si == _conv_names(m)
    assert "linear.weight" in g.other and "bn.weight" in g.other and "layer1.0.bn1.weight" in g.other
    # the shortcut BN's bias only adds a per-channel constant, removed by the next BN
    assert g.inert == [f"layer{i}.0.shortcut.0.bias" for i in (2, 3, 4)]
    c = ConvNet(width=2, input_size=8, mode="practical")
    gc = find_si_groups(c, torch.randn(6, 3, 8, 8))
    assert gc.si == _conv_names(c) and "features.1.weight" in gc.other


def test_build_model_rejects_unknown():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg")
    with pytest.raises(ValueError, match="unknown mode"):
        build_model("convnet", mode="half")
