"""The other commands of nets/: sweep figures, the monitor's command line, the one-call GPU check."""
import json
import time
from pathlib import Path

import pytest
from cli_run import TINY
from cli_run import only_run_dir as _only_run_dir
from cli_run import run_cli as _cli

from nets import TrainConfig
from nets.data import write_fake_cifar


def test_sweep_figure_shows_only_runs_with_periods(tmp_path):
    """An interrupted sweep (no run with a period yet) draws nothing; otherwise only measured points."""
    from figure_probe import probe_savefig

    from nets.training.sweep import plot_sweep_rows
    nan = float("nan")
    cfgs = [TrainConfig(lr=lr) for lr in (0.5, 1.0, 2.0)]
    row = lambda lr, f: {"eta_lam": lr * 3e-3, "measured_frequency": f, "predicted_frequency": f and 1.1 * f}
    path = tmp_path / "sweep.png"
    path.write_bytes(b"stale")
    with probe_savefig() as seen:
        assert plot_sweep_rows(path, [row(0.5, nan)], cfgs) is None
        assert not path.exists() and not seen
        assert plot_sweep_rows(path, [row(0.5, 1e-3), row(1.0, nan), row(2.0, 4e-3)], cfgs) == path
    ax = seen["sweep.png"]["axes"][0]
    measured = next(ln for ln in ax["lines"] if ln["label"] == "measured 1/period")
    assert measured["y"] == [1e-3, 4e-3] and "2 of 3 runs shown" in ax["title"]


@pytest.mark.slow
def test_monitor_demo_and_run_tables_on_fake_cifar(tmp_path):
    write_fake_cifar(tmp_path / "data", n_train=64, n_test=16)
    out = tmp_path / "demo"
    p = _cli("nets.monitor", "--demo", "--data-dir", tmp_path / "data", "--subset", "32", "--epochs", "2",
             "--width", "2", "--batch-size", "16", "--log-every", "1", "--threads", "1", "--quiet", "--out", out,
             check=0)
    assert "regime: " in p.stdout and "layers.7.conv2.weight" in p.stdout and "total" in p.stdout
    assert {"metrics.csv", "metrics.npz", "periods.json", "layers.csv", "plot.png"} <= {f.name for f in out.iterdir()}
    rep = json.loads((out / "periods.json").read_text())
    assert len(rep["si_groups"]["si"]) == 20 and rep["optimizer"][0]["momentum"] == 0.9   # every conv, by testing
    train = _cli("nets.train", *TINY, "--iters", "12", "--out", tmp_path / "runs", check=0)
    run = _only_run_dir(tmp_path / "runs")
    p = _cli("nets.monitor", out, run, "--figure", tmp_path / "cmp.png", check=0)
    assert p.stdout.count("regime: ") == 2 and (tmp_path / "cmp.png").stat().st_size > 0
    assert "regime: " in train.stdout


@pytest.mark.parametrize("args,needle", [([], "either --demo or RUN_DIRs"), (["--demo", "--epochs", "0"], "--epochs"),
                                         (["--demo"], "cifar10 needs --data-dir"), (["/nowhere"], "no periods.json")])
def test_monitor_cli_errors_are_one_line(args, needle):
    p = _cli("nets.monitor", *args, check=2)
    assert needle in p.stderr and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


@pytest.mark.slow
def test_paper_check_command_runs_the_study_on_a_tiny_pack(tmp_path):
    """The one-call GPU command, at tiny scale on the CPU: a fake CIFAR pack, width 2, 2 LRs + the twin."""
    write_fake_cifar(tmp_path / "data", "cifar10", n_train=200, n_test=40)
    _cli("nets.data", "pack", "--data-dir", tmp_path / "data", "--train", 200, "--test", 40, tmp_path / "p.npz",
         check=0)
    p = _cli("nets.paper_check", "--data-dir", tmp_path / "p.npz", "--out", tmp_path / "out", "--width", 2,
             "--iters", 16, "--seconds", 170, "--device", "cpu", "--record-every", 2, "--eval-every", 8,
             "--sharpness-every", 8, "--batch-sharpness-every", 4, "--lrs", 0.5, 1, "--twin", 2, 5e-4, check=0)
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [(r["lr"], r["wd"]) for r in s["rows"]] == [(0.5, 1e-3), (1.0, 1e-3), (2.0, 5e-4)]
    assert s["total_images_per_s"] > 0
    assert [r["eta_lam"] for r in s["study"]["runs"]] == pytest.approx([5e-4, 1e-3, 1e-3])
    assert {"rise_fit", "frequency_fit", "forecast_median_abs_error_fraction"} <= set(s["study"])
    for r in s["rows"]:
        assert r["iters"] == 16 and r["completed"] and r["images_per_s"] > 0
        run = Path(r["run_dir"])
        assert {"metrics.csv", "periods.json", "plot.png", "sharpness.csv", "batch_sharpness.csv"} <= {
            f.name for f in run.iterdir()}
        assert not (run / "checkpoint.pt").exists()
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["config"]["keep_last_bias"] and not cfg["config"]["drop_last"] and cfg["config"]["width"] == 2
        assert cfg["derived"]["batches_per_epoch"] == 2                  # 200 images: 128 + the last 72
        assert "train_loss_full" in (run / "evals.csv").read_text().splitlines()[0]
    assert (tmp_path / "out" / "frequency.png").is_file() and (tmp_path / "out" / "summary.csv").is_file()
    assert "images/s in all" in p.stdout and p.stdout.count("eta=") == 3
    plan = _cli("nets.paper_check", "--plan", tmp_path / "nothing.json", check=2)
    assert plan.stderr.count("\n") == 1 and "cannot plan" in plan.stderr
    bad = _cli("nets.paper_check", "--data-dir", tmp_path / "none.npz", "--out", tmp_path / "o2", check=2)
    assert len(bad.stderr.strip().splitlines()) == 1 and "nets.data download" in bad.stderr


@pytest.mark.slow
def test_paper_check_stops_every_run_at_the_deadline(tmp_path):
    write_fake_cifar(tmp_path / "data", "cifar10", n_train=200, n_test=40)
    t0 = time.time()
    p = _cli("nets.paper_check", "--data-dir", tmp_path / "data", "--out", tmp_path / "out", "--width", 2,
             "--lrs", 1, "--seconds", 10, "--device", "cpu", "--sharpness-every", 0, check=0)
    assert time.time() - t0 < 10 + 60                   # start-up of python, the stop and the writing
    row = json.loads((tmp_path / "out" / "summary.json").read_text())["rows"][0]
    # stopped mid-run, or (on a badly overloaded machine) before training began: never run to the end
    assert ("note" in row) or (not row["completed"] and row["iters"] > 0), (row, p.stdout)


def test_a_sweep_counts_only_the_runs_that_finished(tmp_path, monkeypatch, capsys):
    """Runs that stopped early (completed: false) are not counted as done."""
    import nets.training.sweep as sweep_lib
    from nets import sweep
    from nets.training.run import run_training

    def stopped_early(cfg, run_dir):
        run_training(cfg, run_dir=run_dir, stop_after=4)
        return True                                   # as if the caller went on: the rows must tell
    monkeypatch.setattr(sweep_lib, "run_or_resume", stopped_early)
    assert sweep.main([*TINY, "--lrs", "0.5", "1", "--iters", "12", "--record-every", "2",
                       "--sweep-dir", str(tmp_path / "sw")]) == 0
    out = capsys.readouterr().out
    assert "0/2 runs finished" in out


@pytest.mark.slow
def test_publish_copies_any_figure(tmp_path):
    from paper_figures.__main__ import main

    assert main(["phase", "--quick", "--out", str(tmp_path / "out"), "--publish", str(tmp_path / "pub")]) == 0
    assert {p.name for p in (tmp_path / "pub").iterdir()} == {"phase.png", "phase.json"}


@pytest.mark.slow
def test_a_sweep_on_submitit_lands_in_the_local_layout(tmp_path):
    """--launcher submitit with submitit's local executor: one job per run, the same run directories
    and files as a local sweep, the same metrics (the jobs train exactly what the local runs do)."""
    pytest.importorskip("submitit", reason="the slurm extra is not installed: pip install -e '.[slurm]'")
    args = [*TINY, "--lrs", "0.5", "1", "--iters", "16", "--record-every", "2"]
    _cli("nets.sweep", *args, "--sweep-dir", tmp_path / "local", check=0)
    p = _cli("nets.sweep", *args, "--sweep-dir", tmp_path / "jobs", "--launcher", "submitit", "--cluster", "local",
             "--time-min", "5", check=0)
    assert "2/2 runs finished" in p.stdout
    for tag in ("lr0.5_wd0.003", "lr1_wd0.003"):
        local, job = tmp_path / "local" / tag, tmp_path / "jobs" / tag
        assert {f.name for f in local.iterdir()} == {f.name for f in job.iterdir()}
        assert (local / "metrics.csv").read_text() == (job / "metrics.csv").read_text()
    assert list((tmp_path / "jobs" / "submitit").glob("*_result.pkl"))            # submitit's own records
    bad = _cli("nets.sweep", *args, "--sweep-dir", tmp_path / "x", "--launcher", "submitit", "--batched", check=2)
    assert "not both" in bad.stderr


def test_a_preempted_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    """submitit calls RunJob.checkpoint on preemption or timeout; the requeued call continues the run
    from its last checkpoint and ends with the uninterrupted run's metrics."""
    pytest.importorskip("submitit", reason="the slurm extra is not installed: pip install -e '.[slurm]'")
    from nets.training.launch import RunJob
    from nets.training.run import run_training

    cfg = TrainConfig(dataset="synthetic", width=2, batch_size=32, record_every=2, threads=1, quiet=True,
                      iters=30, checkpoint_every=10)
    whole = run_training(cfg, run_dir=tmp_path / "whole")
    run_training(cfg, run_dir=tmp_path / "job", stop_after=20)           # the job, preempted at 20
    delayed = RunJob().checkpoint(cfg.to_dict(), str(tmp_path / "job"))
    assert isinstance(delayed.function, RunJob) and delayed.args == (cfg.to_dict(), str(tmp_path / "job"))
    assert delayed.function(*delayed.args) is True                       # the requeued job
    assert (tmp_path / "job" / "metrics.csv").read_text() == (whole.run_dir / "metrics.csv").read_text()
