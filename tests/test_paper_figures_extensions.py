"""The figures beyond the paper (`python -m paper_figures regimes|norms`) at test scale: every file
written, and the numbers behind them checked against the theory and the runs."""
import json

import numpy as np
import pytest

from nets import TrainConfig
from paper_figures import EXTENSIONS, FIGURES, fig_norms, fig_regimes
from paper_figures.__main__ import build_parser

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = dict(dataset="synthetic", width=2, batch_size=32, record_every=2, eval_every=-1, quiet=True, threads=1,
            checkpoint_every=0)


def _written(res, out):
    for ext in ("png", "pdf", "json"):
        assert (out / f"{res.name}.{ext}").stat().st_size > 500


@pytest.mark.slow
def test_regimes_figure_at_test_scale(tmp_path):
    base = TrainConfig(**TINY, iters=30, sharpness_every=29, sharpness_batches=1)
    res = fig_regimes.make(tmp_path, True, net_base=base, net_elrs=((1e-3, 3.0), (1e-2,)), toy_steps=400)
    _written(res, tmp_path)
    s = json.loads((tmp_path / "regimes.json").read_text())["summary"]
    quad = s["toy"]["quadratic"]
    # projected GD on the quadratic converges below 2/h and not above: the grid midpoint is within
    # one grid step (a factor 10^(3/12) = 1.78) of the theory's 2/h
    assert s["toy_critical_elr"] == pytest.approx(2.0)
    assert 2.0 / 1.78 < quad["boundaries"]["convergence_upper"] < 2.0 * 1.78
    assert quad["labels"][0] == "convergence" and quad["labels"][-1] == "divergence"
    rows = s["net"]["total"]["rows"]
    assert [r["regime"] for r in rows] == ["convergence", "divergence"]
    assert rows[0]["eff_lr_sharpness"] < 2 < rows[1]["eff_lr_sharpness"]
    assert s["net"]["per_layer"]["rows"][0]["per_layer"] is True
    data = np.load(tmp_path / "regimes.npz")
    # the toys' measured angle per step is arctan(ELR x G), step by step (theory.sphere, relation 3)
    for toy in ("quadratic", "mlp"):
        np.testing.assert_allclose(data[f"{toy}_angle"], data[f"{toy}_angle_predicted"], rtol=1e-9)


@pytest.mark.slow
def test_norms_figure_at_test_scale(tmp_path):
    res = fig_norms.make(tmp_path, True, base=TrainConfig(**TINY, iters=24, lr=0.5, wd=0.05))
    _written(res, tmp_path)
    for norm in fig_norms.NORM_NAMES:
        assert len(res.summary[norm]["si_tensors"]) == 4
    assert (tmp_path / "norm_runs" / "wn" / "metrics.npz").exists()


def test_extensions_are_commands_but_not_part_of_all():
    assert not set(EXTENSIONS) & set(FIGURES)
    for name in EXTENSIONS:
        assert build_parser().parse_args([name, "--quick"]).name == name
    assert "beyond the paper" in build_parser().format_help()


def test_regime_network_configs(monkeypatch):
    """quick: CPU-sized, width 8 on 1,024 CIFAR-10 images; full: the paper's width 32 on all of
    CIFAR-10 for 10 epochs (a GPU job); digits when $SIBN_DATA_DIR is unset."""
    from paper_figures.regime_runs import net_base

    monkeypatch.setenv("SIBN_DATA_DIR", "/data")
    quick, full = net_base(True), net_base(False)
    assert (quick.dataset, quick.width, quick.train_subset, quick.iters) == ("cifar10", 8, 1024, 400)
    assert (full.dataset, full.width, full.train_subset, full.iters) == ("cifar10", 32, 0, 3900)
    assert full.iters == 10 * (50_000 // full.batch_size) and full.sharpness_every == full.iters - 1
    monkeypatch.delenv("SIBN_DATA_DIR")
    assert net_base(True).dataset == "digits"
