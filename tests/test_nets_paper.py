"""The paper's setting (--paper): default-init SI norm, effective LR, last layer, batches, train loss."""
import copy
import math

import pytest
import sympy as sp
import torch
import torch.nn.functional as F

from nets.config import TrainConfig
from nets.data import load_digits, make_synthetic
from nets.data.augment import EpochSampler
from nets.models import build_model
from nets.monitor.metrics import evaluate, full_pass_train_loss
from nets.options import config_from_args
from nets.presets import PAPER as PAPER_PRESET
from nets.presets import preset_config
from nets.train import build_parser
from nets.training.trainer import Trainer


def _uniform_moments():
    """E[w^2] and Var[w^2] of w ~ U(-b, b), by sympy integration (independent of torch)."""
    w, b = sp.symbols("w b", positive=True)
    m2 = sp.integrate(w**2 / (2 * b), (w, -b, b))
    m4 = sp.integrate(w**4 / (2 * b), (w, -b, b))
    return sp.lambdify(b, m2), sp.lambdify(b, sp.simplify(m4 - m2**2))


def _expected_sq_norm(model):
    """Mean and standard deviation of ||x||^2 of the SI convs under kaiming_uniform(a=sqrt(5)):
    bound b = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)) = sqrt(1/3), so b^2 = 1/fan_in."""
    m2, var2 = _uniform_moments()
    mean = var = 0.0
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            fan_in = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
            b = math.sqrt(2 / (1 + 5)) * math.sqrt(3 / fan_in)
            mean += mod.weight.numel() * m2(b)
            var += mod.weight.numel() * var2(b)
    return mean, math.sqrt(var)


def test_paper_flag_sets_the_authors_configuration_and_explicit_flags_override():
    cfg = config_from_args(build_parser().parse_args(["--paper", "--data-dir", "D"]))
    for k, v in PAPER_PRESET.items():
        assert getattr(cfg, k) == v, k
    assert cfg.init_si_norm is None and cfg.keep_last_bias and not cfg.drop_last and cfg.full_train_eval
    cfg = config_from_args(build_parser().parse_args(["--lr", "0.03", "--paper", "--width", "8", "--data-dir", "D"]))
    assert (cfg.lr, cfg.width, cfg.wd, cfg.batch_size) == (0.03, 8, 1e-3, 128)
    plain = config_from_args(build_parser().parse_args([]))
    assert plain.width == 16 and plain.init_si_norm == 20.0 and plain.drop_last   # no preset without --paper


def test_default_init_si_norm_matches_its_analytic_expectation():
    mean, sd = _expected_sq_norm(build_model("convnet", width=32))
    assert mean == pytest.approx(160.0)          # sum over blocks of c_out / 3 = (32 + 64 + 128 + 256) / 3
    sq = []
    for seed in range(6):
        torch.manual_seed(seed)
        m = build_model("convnet", width=32)
        sq.append(sum(float(p.detach().double().pow(2).sum()) for p in m.parameters() if p.requires_grad))
        assert abs(sq[-1] - mean) < 4 * sd, (seed, sq[-1], mean, sd)
    assert abs(sum(sq) / len(sq) - mean) < 4 * sd / math.sqrt(len(sq))


def test_paper_trainer_keeps_the_default_init_and_starts_at_eta_over_rho0_squared():
    data = make_synthetic(image_size=8, n_train=300, n_test=20)      # the init does not depend on the image size
    cfg = preset_config("paper", dataset="synthetic", image_size=8, lr=0.5, iters=3, record_every=1, eval_every=-1, threads=1,
                       checkpoint_every=0, quiet=True)
    tr = Trainer(cfg, data)
    mean, sd = _expected_sq_norm(tr.model)
    rho0_sq = tr.initial_si_norm ** 2
    assert abs(rho0_sq - mean) < 4 * sd                      # not rescaled (we default to 20 elsewhere)
    tr.run()
    first = tr.recorder.steps[0]
    eff_lr = first[8]                                        # STEP_COLUMNS: ..., grad_norm, eff_lr, ...
    assert eff_lr == pytest.approx(0.5 / rho0_sq, rel=1e-5)
    assert abs(eff_lr - 0.5 / mean) < 0.5 * 4 * sd / mean**2  # first-order propagation of the init's spread
    assert tr.batches_per_epoch == 3                         # ceil(300 / 128): last partial batch kept


def test_last_layer_is_frozen_at_norm_10_with_its_random_bias_kept():
    torch.manual_seed(3)
    kept = build_model("convnet", width=4, keep_last_bias=True)
    torch.manual_seed(3)
    practical = build_model("convnet", width=4, mode="practical")       # nothing rescaled or zeroed
    torch.manual_seed(3)
    zeroed = build_model("convnet", width=4)
    assert kept.linear.weight.norm().item() == pytest.approx(10.0, rel=1e-6)
    assert torch.equal(kept.linear.bias, practical.linear.bias) and kept.linear.bias.abs().sum() > 0
    assert not kept.linear.bias.requires_grad and not kept.linear.weight.requires_grad
    assert torch.count_nonzero(zeroed.linear.bias) == 0
    data = make_synthetic(n_train=64, n_test=16)
    tr = Trainer(TrainConfig(dataset="synthetic", width=4, keep_last_bias=True, batch_size=32, iters=4,
                             eval_every=-1, threads=1), data)
    bias = tr.model.linear.bias.detach().clone()
    tr.run()
    assert torch.equal(tr.model.linear.bias, bias)
    assert "linear.bias" in tr.groups.frozen


@pytest.mark.parametrize("drop_last,batches,last", [(False, 391, 80), (True, 390, 128)])
def test_an_epoch_of_50k_images_at_batch_128(drop_last, batches, last):
    x = torch.arange(50_000, dtype=torch.float32).view(-1, 1, 1, 1)
    s = EpochSampler(x, torch.arange(50_000), 128, torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1),
                     generator=torch.Generator().manual_seed(0), drop_last=drop_last)
    assert s.batches_per_epoch == batches
    sizes, seen = [], []
    for _ in range(batches):
        xb, yb, _ = s.next()
        sizes.append(len(yb))
        seen += yb.tolist()
    assert sizes[-1] == last and set(sizes[:-1]) == {128}
    assert len(set(seen)) == len(seen) == sum(sizes)
    assert s.next()[2]                                       # then a new epoch starts
    with pytest.raises(ValueError, match="one image"):
        EpochSampler(x[:129], torch.arange(129), 128, 1, 0, generator=torch.Generator(), drop_last=False)


def test_full_pass_train_loss_is_the_mean_over_train_mode_batches_and_changes_nothing():
    data = make_synthetic(n_train=70, n_test=10)
    torch.manual_seed(0)
    model = build_model("convnet", width=3, input_size=8)
    scale, shift = data.normaliser()
    model.eval()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    got = full_pass_train_loss(model, data.x_train, data.y_train, scale, shift, 32)
    ref = copy.deepcopy(model).train()
    loss = correct = 0.0
    with torch.no_grad():
        for i in (0, 32, 64):                                # batches of 32, 32 and the last 6
            out = ref(data.x_train[i:i + 32] * scale + shift)
            loss += float(F.cross_entropy(out, data.y_train[i:i + 32], reduction="sum"))
            correct += float((out.argmax(1) == data.y_train[i:i + 32]).sum())
    assert got.tolist() == pytest.approx([loss / 70, correct / 70], rel=1e-5)
    assert not model.training                                 # its mode is kept ...
    for k, v in model.state_dict().items():                  # ... and so are the BN running statistics
        assert torch.equal(v, stats[k]), k
    eval_mode = evaluate(model, data.x_train, data.y_train, scale, shift, 32)
    assert abs(float(eval_mode[0]) - loss / 70) > 1e-3        # running statistics: another number


def test_trainer_records_the_full_pass_train_loss_at_each_evaluation():
    data = make_synthetic(n_train=96, n_test=16)
    cfg = TrainConfig(dataset="synthetic", width=2, batch_size=32, iters=6, eval_every=3, full_train_eval=True,
                      threads=1)
    tr = Trainer(cfg, data)
    tr.run()
    _, _, evals = tr.recorder.arrays()
    assert len(evals["train_loss_full"]) == 2
    after = full_pass_train_loss(tr.model, tr.data.x_train, tr.data.y_train, tr.scale, tr.shift, 32)
    assert evals["train_loss_full"][-1] == pytest.approx(float(after[0]), rel=1e-6)
    assert 0 <= evals["train_acc_full"][-1] <= 1
    plain = Trainer(TrainConfig(dataset="synthetic", width=2, batch_size=32, iters=3, eval_every=3, threads=1), data)
    plain.run()
    assert math.isnan(plain.recorder.arrays()[2]["train_loss_full"][0])


def test_default_notes_state_the_measured_init_norms():
    """nets.config's notes on the defaults: the width-16 default init norm (analytic) and where the
    first step throws it."""
    import nets.config

    DEFAULT_NOTES = " ".join(nets.config.__doc__.split())

    mean, _ = _expected_sq_norm(build_model("convnet", width=16, in_channels=1, input_size=16))
    assert f"rho_0 = sqrt(sum of c_out/3) = {math.sqrt(mean):.1f}" in DEFAULT_NOTES
    for init, stated in ((None, "~41"), (20.0, "~27.5")):
        cfg = TrainConfig(init_si_norm=init, wd=1e-3, iters=1, record_every=1, eval_every=-1, threads=1)
        tr = Trainer(cfg, load_digits(16))
        tr.run()
        rho1 = float(tr.watch.norm())
        assert stated in DEFAULT_NOTES and rho1 == pytest.approx(float(stated[1:]), rel=0.05), (init, rho1)
