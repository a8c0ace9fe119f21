"""SIMonitor on ordinary models: dropout, dict and tuple outputs, several inputs, keyword inputs,
BatchNorm1d with a tiny batch, and a loop that calls mon.step() before optimizer.step() (said once)."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nets import SIMonitor
from nets.monitor import ExampleBatchError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ResBlockWithDropout(nn.Module):
    """conv-BN-ReLU-dropout-conv-BN + shortcut, then a linear head: every conv is SI."""

    def __init__(self, c=4, classes=3):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.short, self.bns = nn.Conv2d(3, c, 1, bias=False), nn.BatchNorm2d(c)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        h = self.drop(F.relu(self.bn1(self.conv1(x))))
        h = F.relu(self.bn2(self.conv2(h)) + self.bns(self.short(x)))
        return self.head(h.mean((2, 3)))


class DictClassifier(nn.Module):
    """HF-style: returns a dict with logits and an auxiliary feature."""

    def __init__(self):
        super().__init__()
        self.fc, self.bn, self.out = nn.Linear(6, 8, bias=False), nn.BatchNorm1d(8), nn.Linear(8, 3)

    def forward(self, x):
        h = F.relu(self.bn(self.fc(x)))
        return {"logits": self.out(h), "features": h, "n": 3}


class TwoInputs(nn.Module):
    """Image and tabular inputs, each through its own normalised branch."""

    def __init__(self):
        super().__init__()
        self.img, self.bn_img = nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)
        self.tab, self.bn_tab = nn.Linear(5, 4, bias=False), nn.BatchNorm1d(4)
        self.head = nn.Linear(8, 2)

    def forward(self, image, table):
        a = F.relu(self.bn_img(self.img(image))).mean((2, 3))
        b = F.relu(self.bn_tab(self.tab(table)))
        return self.head(torch.cat([a, b], 1))


def _modes(model):
    return [(name, m.training) for name, m in model.named_modules()]


def test_dropout_does_not_hide_the_si_weights_and_modes_are_restored():
    torch.manual_seed(0)
    model = ResBlockWithDropout()
    model.drop.eval()                                       # an unusual mix of modes, kept exactly
    before = _modes(model)
    mon = SIMonitor(model, torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-3),
                    example_batch=torch.randn(8, 3, 6, 6), verbose=False)
    assert mon.names == ["conv1.weight", "conv2.weight", "short.weight"]
    assert _modes(model) == before


def test_dict_output_found_automatically_or_picked_by_key():
    torch.manual_seed(0)
    model = DictClassifier()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-3)
    x = torch.randn(8, 6)
    assert SIMonitor(model, opt, example_batch=x, verbose=False).names == ["fc.weight"]
    assert SIMonitor(model, opt, example_batch=(x, None), output="logits", verbose=False).names == ["fc.weight"]
    with pytest.raises(ExampleBatchError, match="no entry 'scores'"):
        SIMonitor(model, opt, example_batch=x, output="scores", verbose=False)


def test_tuple_output_with_a_selector_function():
    class Pair(DictClassifier):
        def forward(self, x):
            out = super().forward(x)
            return out["logits"], out["features"]

    model = Pair()
    mon = SIMonitor(model, torch.optim.SGD(model.parameters(), lr=0.1), example_batch=torch.randn(8, 6),
                    output=lambda out: out[0], verbose=False)
    assert mon.names == ["fc.weight"]


def test_two_positional_inputs_and_keyword_inputs():
    torch.manual_seed(0)
    model = TwoInputs()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-3)
    image, table = torch.randn(8, 3, 5, 5), torch.randn(8, 5)
    expected = ["img.weight", "tab.weight"]
    assert SIMonitor(model, opt, example_args=(image, table), verbose=False).names == expected
    assert SIMonitor(model, opt, example_batch={"image": image, "table": table}, verbose=False).names == expected


def test_batchnorm1d_with_one_example_row_is_one_clear_line():
    model = DictClassifier()
    with pytest.raises(ExampleBatchError) as exc:
        SIMonitor(model, torch.optim.SGD(model.parameters(), lr=0.1), example_batch=torch.randn(1, 6),
                  verbose=False)
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1 and "at least 2 samples" in msg and msg.startswith("SIMonitor:")


def test_a_wrong_kind_of_example_batch_is_named():
    model = DictClassifier()
    with pytest.raises(ExampleBatchError, match="example_batch must be a tensor"):
        SIMonitor(model, torch.optim.SGD(model.parameters(), lr=0.1), example_batch="images", verbose=False)


def _loop(loss_first: bool, steps=7):
    torch.manual_seed(0)
    model = DictClassifier()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, weight_decay=1e-2)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    mon = SIMonitor(model, opt, example_batch=x[:8], log_every=1, verbose=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for t in range(steps):
            loss = F.cross_entropy(model(x[8 * (t % 8):8 * (t % 8) + 8])["logits"], y[8 * (t % 8):8 * (t % 8) + 8])
            opt.zero_grad()
            loss.backward()
            if loss_first:
                mon.step(loss)
            opt.step()
            if not loss_first:
                mon.step(loss)
        mon.flush()
    return mon, [str(w.message) for w in caught]


def test_step_before_optimizer_step_is_said_once():
    _, said_after = _loop(loss_first=False)
    _, said_before = _loop(loss_first=True)
    assert said_after == []
    assert len(said_before) == 1 and "called before optimizer.step()" in said_before[0]
    assert "recorded with the step before it" in said_before[0]
