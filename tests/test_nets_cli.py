"""Command lines of nets/: end-to-end runs, one-line errors, signals + resume, the GPU sweep."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_run import ROOT, RUN_FILES, TINY
from cli_run import only_run_dir as _only_run_dir
from cli_run import run_cli as _cli
from interrupt import popen_interruptible

from nets import TrainConfig, run_training
from nets.data import write_fake_cifar


def test_tiny_cli_run_writes_every_file(tmp_path):
    p = _cli("nets.train", *TINY, "--iters", "30", "--record-every", "2", "--out", tmp_path, check=0)
    run = _only_run_dir(tmp_path)
    assert run.name.startswith("nets-synthetic-convnet-")
    assert RUN_FILES <= {f.name for f in run.iterdir()}
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["iters"] == 30 and cfg["config"]["width"] == 2
    assert cfg["si_groups"]["si"] == ["features.0.weight", "features.3.weight", "features.7.weight",
                                      "features.11.weight"]
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"iteration", "train_loss", "si_norm", "eff_lr", "eff_grad_norm", "angular_update",
            "norm:features.0.weight"} <= set(header)
    z = np.load(run / "metrics.npz")
    assert z["step_iteration"][-1] == 29 and z["layer_norms"].shape[1] == 4
    assert "30 iterations" in p.stdout and "periods:" in p.stdout and "regime: " in p.stdout
    rep = json.loads((run / "periods.json").read_text())
    assert [r["name"] for r in rep["layers"]] == cfg["si_groups"]["si"] and rep["total"]["numel"] > 0
    assert not (run / "sharpness.csv").exists() and "sharpness:" not in p.stdout


@pytest.mark.slow
def test_sharpness_flag_writes_its_table_and_line(tmp_path):
    p = _cli("nets.train", *TINY, "--iters", "20", "--sharpness-every", "5", "--sharpness-iters", "6",
             "--out", tmp_path, check=0)
    run = _only_run_dir(tmp_path)
    lines = (run / "sharpness.csv").read_text().splitlines()
    assert lines[0].split(",")[:6] == ["iteration", "lr", "si_norm", "top_eigenvalue", "sphere_sharpness",
                                       "eff_lr_sharpness"]
    assert [int(r.split(",")[0]) for r in lines[1:]] == [0, 5, 10, 15]
    assert "sharpness_eff_lr_sharpness" in np.load(run / "metrics.npz").files
    stability = json.loads((run / "periods.json").read_text())["summary"]["stability"]
    assert stability["threshold"] == 2 and stability["n_measurements"] == 4
    assert "sharpness: 4 measurements" in p.stdout      # too short a run for a destabilisation


@pytest.mark.parametrize("args,needle", [
    (["--bogus"], "unrecognized arguments"),
    (["--lr", "-1"], "--lr"),
    (["--model", "vgg"], "--model"),
    (["--width", "0"], "--width"),
    (["--lr", "2", "--wd", "0.6"], "lr*wd"),
    (["--sharpness-every", "-1"], "--sharpness-every"),
    (["--device", "foo"], "--device"),
    (["--wd", "-1e-3"], "wd must be"),                 # a negative number reaches the validator
])
def test_bad_flags_give_one_line_and_exit_2(args, needle):
    p = _cli("nets.train", *args, check=2)
    assert needle in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_missing_cifar_gives_one_line_and_exit_2(tmp_path):
    p = _cli("nets.train", "--dataset", "cifar10", "--data-dir", tmp_path / "none", check=2)
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert "data_batch_1" in p.stderr and "cifar-10-python.tar.gz" in p.stderr
    p = _cli("nets.train", "--resume", tmp_path / "nothing", check=2)
    assert "no checkpoint" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_help_lists_the_options():
    out = _cli("nets.train", "--help", check=0).stdout
    for flag in ("--model", "--mode", "--width", "--dataset", "--data-dir", "--lr", "--wd", "--momentum",
                 "--batch-size", "--iters", "--epochs", "--record-every", "--augment", "--wrs-norm",
                 "--exp-lr", "--seed", "--device", "--out", "--resume", "--quiet", "--sharpness-every"):
        assert flag in out


LONG = [*TINY, "--iters", "1500", "--record-every", "5", "--checkpoint-every", "20"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run the interrupted ones must reproduce."""
    out = tmp_path_factory.mktemp("ref")
    cfg = TrainConfig(dataset="synthetic", width=2, batch_size=32, threads=1, quiet=True, iters=1500,
                      record_every=5, checkpoint_every=20)
    return run_training(cfg, run_dir=out / "ref")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_killed_run_resumes_to_the_same_metrics(tmp_path, reference, sig):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = popen_interruptible([sys.executable, "-m", "nets.train", *LONG, "--out", str(tmp_path)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("*/checkpoint.pt")):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    run = _only_run_dir(tmp_path)
    if sig in (signal.SIGINT, signal.SIGTERM):
        assert proc.returncode == 130, err
        assert f"--resume {run}" in out and "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
    _cli("nets.train", "--resume", run, "--quiet", check=0)
    z = np.load(run / "metrics.npz")
    assert z["step_iteration"][-1] == 1499
    for k in ("train_loss", "si_norm", "eff_grad_norm", "angular_update"):
        np.testing.assert_array_equal(z[f"step_{k}"], reference.steps[k], err_msg=k)
    np.testing.assert_array_equal(z["eval_test_acc"], reference.evals["test_acc"])


@pytest.mark.slow
def test_gpu_sweep_command_runs_end_to_end_on_fake_cifar(tmp_path):
    """The command prepared for a GPU machine, at tiny scale on CPU (fake CIFAR-10)."""
    write_fake_cifar(tmp_path / "data", "cifar10", n_train=96, n_test=32)
    args = ["--dataset", "cifar10", "--data-dir", tmp_path / "data", "--model", "convnet", "--width", "2",
            "--lrs", "0.5", "1", "--wd", "1e-3", "--iters", "24", "--batch-size", "32", "--record-every", "2",
            "--scale-length", "--sweep-dir", tmp_path / "sweep", "--quiet", "--threads", "1",
            "--sharpness-every", "12", "--sharpness-iters", "4"]
    p = _cli("nets.sweep", *args, check=0)
    rows = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["rows"]
    assert [r["lr"] for r in rows] == [0.5, 1.0] and [r["iters"] for r in rows] == [48, 24]
    assert all(r["completed"] for r in rows)
    assert all("sharpness_peak_over_threshold" in r for r in rows)
    assert "sharpness_peak_over_threshold" in (tmp_path / "sweep" / "sweep.csv").read_text().splitlines()[0]
    assert all((Path(r["run_dir"]) / "sharpness.csv").is_file() for r in rows)
    # 24 iterations hold no complete period: no empty sweep.png, and the output says so
    assert {"sweep.csv", "sweep_config.json"} <= {f.name for f in (tmp_path / "sweep").iterdir()}
    assert not (tmp_path / "sweep" / "sweep.png").exists() and "sweep.png not drawn" in p.stdout
    for r in rows:
        assert RUN_FILES <= {f.name for f in Path(r["run_dir"]).iterdir()}
    assert "eta*lam" in p.stdout
    again = _cli("nets.sweep", *args, check=0)          # continuing a finished sweep: nothing re-run
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["rows"] == rows
    assert "2/2 runs" in again.stdout


@pytest.mark.slow
def test_a_dead_network_is_reported_by_train_and_sweep(tmp_path):
    """Practical mode at eta = 5 kills the tiny network within a few dozen steps."""
    dying = [*TINY, "--mode", "practical", "--keep-init-norm", "--wd", "1e-2", "--iters", "80",
             "--record-every", "2"]
    p = _cli("nets.train", *dying, "--lr", "5", "--out", tmp_path / "one", check=0)
    c = json.loads((_only_run_dir(tmp_path / "one") / "periods.json").read_text())["summary"]["collapse"]
    assert 0 < c["iteration"] < 70 and f"dead from iteration {c['iteration']} on" in p.stdout
    s = _cli("nets.sweep", *dying, "--lrs", "5", "--sweep-dir", tmp_path / "sw", check=0)
    row = json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"][0]
    assert row["collapsed_at"] == c["iteration"] and f"dead from iteration {c['iteration']}" in s.stdout


@pytest.mark.slow
def test_benchmark_runs_at_tiny_scale(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "benchmarks/bench_nets.py", "--dataset", "synthetic", "--width", "2",
                        "--batch-size", "32", "--block", "3", "--rounds", "1", "--warmup", "1", "--threads", "1",
                        "--json", str(tmp_path / "b.json")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    out = json.loads((tmp_path / "b.json").read_text())
    assert set(out["images_per_s"]) >= {"ours", "dataloader", "ours_no_recording", "ours_recording_every_step"}
    # every derived figure recomputed from the raw block times (best of the rounds)
    best = {k: min(v) for k, v in out["block_seconds"].items()}
    assert all(len(v) == 1 for v in out["block_seconds"].values())            # --rounds 1
    for name, t in best.items():
        assert out["images_per_s"][name] == pytest.approx(3 * 32 / t)          # --block 3, --batch-size 32
    assert out["speedup_vs_dataloader"] == pytest.approx(best["dataloader"] / best["ours"])
    per_record = best["ours_recording_every_step"] - best["ours_no_recording"]
    assert out["recording_overhead"] == pytest.approx(per_record / (10 * best["ours_no_recording"]))
    assert f"speed-up vs DataLoader loop: {out['speedup_vs_dataloader']:.2f}x" in p.stdout
    assert "recording overhead" in p.stdout
    assert "plain_monitor" in out["images_per_s"]
    assert "SIMonitor in a plain loop" in p.stdout and math.isfinite(out["monitor_overhead"])


# ----------------------------------------------------------------------------- failure paths


def _blocker(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    return f


def test_unwritable_output_fails_before_any_work(tmp_path, monkeypatch, capsys):
    from nets import train
    from nets.training import run as run_mod
    monkeypatch.setattr(run_mod, "load_data", lambda *a: pytest.fail("data loaded for an unwritable output"))
    with pytest.raises(SystemExit) as exc:
        train.main([*TINY, "--out", str(_blocker(tmp_path) / "sub")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write to the output folder" in err


def test_failure_to_write_mid_run_names_the_file(tmp_path, monkeypatch, capsys):
    """The disk fills up at the second checkpoint: one line naming it, exit 2, the first one kept."""
    from nets import train
    from nets.training import run as run_mod
    real, calls = run_mod.save_checkpoint, []

    def flaky(path, *a, **k):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(28, "No space left on device", str(path))
        return real(path, *a, **k)
    monkeypatch.setattr(run_mod, "save_checkpoint", flaky)
    with pytest.raises(SystemExit) as exc:
        train.main([*TINY, "--iters", "20", "--checkpoint-every", "5", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "checkpoint.pt" in err
    assert (_only_run_dir(tmp_path) / "checkpoint.pt").is_file()


def test_ctrl_c_before_the_loop_has_nothing_to_resume(tmp_path, monkeypatch, capsys):
    """Ctrl-C while the data loads: one line, exit 130, no run directory left behind."""
    from nets import train
    from nets.training import run as run_mod

    def interrupted(*a):
        raise KeyboardInterrupt
    monkeypatch.setattr(run_mod, "load_data", interrupted)
    assert train.main([*TINY, "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "python -m nets.train: interrupted before the first checkpoint: nothing to resume"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("delay", [0.5, 2.0])
def test_sigint_in_the_first_seconds(tmp_path, delay):
    """Whatever phase Ctrl-C lands in (imports, data, first steps): exit 130, no traceback, and a
    --resume hint only with a real run directory that has a checkpoint."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = popen_interruptible([sys.executable, "-m", "nets.train", *TINY, "--iters", "100000", "--out",
                             str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "RUN_DIR" not in out + err
    hints = [w for line in (out + err).splitlines() if "--resume" in line for w in line.split()[-1:]]
    assert all((Path(h) / "checkpoint.pt").is_file() for h in hints), (out, err)
    if not hints:
        assert "nothing to resume" in err


class _Deaf:
    """An object whose ``__del__`` receives a Ctrl-C: CPython prints "Exception ignored in" and
    drops the KeyboardInterrupt, as it did once in CI inside importlib's module-lock callback."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(200_000):      # the handler runs here, inside __del__
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_that_cpython_swallows_still_stops_the_run(tmp_path):
    import cli as sio

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sio.catch_interrupts()
        _Deaf()                                     # the interrupt is swallowed ...
        assert sio.take_interrupt() and not sio.take_interrupt()     # ... but marked, and read once
        _Deaf()
        res = run_training(TrainConfig(dataset="synthetic", width=2, batch_size=32, iters=500, quiet=True,
                                       out=str(tmp_path)))
        assert not res.completed and res.iterations == 0             # ... and the run stops at once
        assert (res.run_dir / "checkpoint.pt").is_file() and not sio.take_interrupt()
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A finished 30-iteration run of the TINY configuration (made in-process: no CLI start-up)."""
    out = tmp_path_factory.mktemp("short")
    run_training(TrainConfig(dataset="synthetic", width=2, batch_size=32, iters=30, quiet=True, out=str(out)))
    return _only_run_dir(out)


@pytest.mark.slow
@pytest.mark.parametrize("args,needle", [
    (["--lr", "0.5"], "--lr cannot change"),
    (["--wd", "1e-2", "--width", "4"], "--wd, --width cannot change"),
    (["--iters", "10"], "has done 30 iterations already"),
])
def test_resume_refuses_what_it_would_ignore(short_run, args, needle):
    p = _cli("nets.train", "--resume", short_run, *args, check=2)
    assert needle in p.stderr and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


@pytest.mark.slow
def test_resumed_run_reports_the_time_of_the_resumed_part(short_run, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    p = _cli("nets.train", "--resume", run, "--iters", "40", "--quiet", check=0)
    assert f"{run}: resumed at iteration 30, 10 more iterations in " in p.stdout and "40 in all" in p.stdout
