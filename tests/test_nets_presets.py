"""Presets are data in one place (nets.presets), applied by one function, honoured by every command
that offers them."""
import pytest

from nets import paper_check, regimes, sweep, train
from nets.options import config_from_args
from nets.presets import PAPER, PRESETS, preset_config


@pytest.mark.parametrize("build", [train.build_parser, sweep.build_parser, regimes.build_parser],
                         ids=["train", "sweep", "regimes"])
def test_every_command_with_the_flag_applies_the_paper_preset(build):
    extra = {"train": [], "sweep": ["--lrs", "0.5"], "regimes": ["--elrs", "1e-3"]}[build.__module__.split(".")[-1]]
    cfg = config_from_args(build().parse_args(["--paper", "--data-dir", "D", *extra]))
    for key, value in PAPER.items():
        if key != "lr":
            assert getattr(cfg, key) == value, key
    plain = config_from_args(build().parse_args(["--data-dir", "D", *extra]))
    assert plain.width == 16 and plain.dataset == "digits"          # no preset without the flag


def test_explicit_flags_override_the_preset_in_any_order():
    for argv in (["--paper", "--width", "8"], ["--width", "8", "--paper"], ["--pap", "--width", "8"]):
        cfg = config_from_args(regimes.build_parser().parse_args([*argv, "--elrs", "1e-3", "--data-dir", "D"]))
        assert (cfg.width, cfg.dataset, cfg.wd) == (8, "cifar10", 1e-3)


def test_preset_config_is_the_one_way_to_build_a_preset_run():
    cfg = preset_config("paper", lr=0.03, data_dir="D")
    assert cfg.lr == 0.03 and cfg.width == 32 and cfg.keep_last_bias and not cfg.drop_last
    with pytest.raises(ValueError, match="unknown preset 'nope'; presets: paper"):
        preset_config("nope")
    assert set(PRESETS) == {"paper"}
    with pytest.raises(TypeError):
        PAPER["width"] = 8                                                # presets are read-only data


def test_paper_check_builds_its_runs_from_the_preset():
    args = paper_check.build_parser().parse_args(["--out", "o", "--data-dir", "D", "--lrs", "0.5", "2", "--width", "4"])
    runs = paper_check.check_configs(args)
    assert [(c.lr, c.wd) for c in runs] == [(0.5, 1e-3), (2.0, 1e-3), (0.025, 2e-3)]     # + the default twin
    assert all(c.width == 4 and c.keep_last_bias and c.full_train_eval for c in runs)
    assert all(c.precision == "bf16" and c.batch_sharpness_every == 10 for c in runs)   # the GPU study's defaults
    plain = paper_check.build_parser().parse_args(["--out", "o", "--lrs", "1", "--no-twin", "--precision", "fp32"])
    assert [(c.lr, c.precision) for c in paper_check.check_configs(plain)] == [(1.0, "fp32")]


def test_regimes_paper_runs_the_paper_model(tmp_path, capsys):
    """``nets.regimes --paper`` is honoured (it was silently ignored): without CIFAR-10 at the given
    folder it stops with the data error of the paper's data set, before any training."""
    with pytest.raises(SystemExit) as exc:
        regimes.main(["--paper", "--elrs", "1e-3", "--data-dir", str(tmp_path), "--iters", "2",
                      "--sweep-dir", str(tmp_path / "s")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cifar-10-batches-py" in err
