"""Nothing lost: damaged checkpoints, two processes on one run directory, kills at any moment,
damaged result files, and the warnings that come before a run goes wrong."""
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from cli_run import ROOT, TINY, only_run_dir, run_cli

from cli import MANIFEST_NAME, verify_manifest
from nets import TrainConfig, resume_training, run_training
from nets.training.checkpoint import (
    CHECKPOINT_NAME,
    PREVIOUS_NAME,
    CorruptCheckpoint,
    load_checkpoint,
    load_run_checkpoint,
)
from nets.training.lock import LOCK_NAME, RunDirLocked, run_dir_lock
from nets.training.sweep import is_finished, run_or_resume

CFG = dict(dataset="synthetic", width=2, batch_size=32, record_every=3, eval_every=7, quiet=True, threads=1,
           checkpoint_every=10, init_si_norm=None)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _flip_byte(path: Path, offset_from_end: int = 100) -> None:
    raw = bytearray(path.read_bytes())
    raw[-offset_from_end] ^= 0x01
    path.write_bytes(bytes(raw))


def _same(a, b):
    for k in a.steps:
        np.testing.assert_array_equal(a.steps[k], b.steps[k], err_msg=k)
    for k in a.evals:
        np.testing.assert_array_equal(a.evals[k], b.evals[k], err_msg=k)


def test_a_flipped_bit_is_found_and_the_previous_checkpoint_resumes(tmp_path):
    whole = run_training(TrainConfig(**CFG, iters=40), write=False)
    part = run_training(TrainConfig(**CFG, iters=40, out=str(tmp_path)), stop_after=25)
    run_dir = part.run_dir
    assert load_checkpoint(run_dir / CHECKPOINT_NAME)["trainer"]["iteration"] == 25
    assert load_checkpoint(run_dir / PREVIOUS_NAME)["trainer"]["iteration"] == 20
    _flip_byte(run_dir / CHECKPOINT_NAME)
    with pytest.raises(CorruptCheckpoint, match="SHA-256 does not match"):
        load_checkpoint(run_dir / CHECKPOINT_NAME)
    with pytest.warns(UserWarning, match="resuming from the previous checkpoint.*iteration 20"):
        resumed = resume_training(run_dir)
    _same(whole, resumed)                                   # the lost 5 iterations re-run identically


def test_no_intact_checkpoint_is_refused_in_one_line(tmp_path):
    part = run_training(TrainConfig(**CFG, iters=40, out=str(tmp_path)), stop_after=25)
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME):
        _flip_byte(part.run_dir / name)
    with pytest.raises(CorruptCheckpoint) as exc:
        load_run_checkpoint(part.run_dir)
    assert "no intact checkpoint" in str(exc.value) and len(str(exc.value).splitlines()) == 1
    p = run_cli("nets.train", "--resume", part.run_dir, check=2)
    assert len(p.stderr.strip().splitlines()) == 1 and "no intact checkpoint" in p.stderr


def test_a_checkpoint_without_the_checksum_line_still_loads(tmp_path):
    """Run directories written before checksums resume as before (unverified)."""
    part = run_training(TrainConfig(**CFG, iters=30, out=str(tmp_path)), stop_after=20)
    path = part.run_dir / CHECKPOINT_NAME
    path.write_bytes(path.read_bytes().partition(b"\n")[2])             # the old format: payload only
    assert load_checkpoint(path)["trainer"]["iteration"] == 20
    assert resume_training(part.run_dir).completed


def test_result_files_carry_a_manifest_and_a_damaged_one_is_rewritten(tmp_path):
    cfg = TrainConfig(**CFG, iters=20)
    run_dir = tmp_path / "run"
    assert run_or_resume(cfg, run_dir) and is_finished(run_dir)
    listed = {line.split("  ")[1] for line in (run_dir / MANIFEST_NAME).read_text().splitlines()}
    assert {"config.json", "metrics.csv", "periods.json", "metrics.npz", "plot.png"} <= listed
    good = (run_dir / "periods.json").read_bytes()
    (run_dir / "periods.json").write_bytes(good.replace(b'"completed": true', b'"completed": tru3'))
    assert verify_manifest(run_dir) == ["periods.json"] and not is_finished(run_dir)
    assert run_or_resume(cfg, run_dir)                       # resumes from the checkpoint, writes again
    assert verify_manifest(run_dir) == [] and json.loads((run_dir / "periods.json").read_text())["completed"]


def test_one_process_per_run_directory_and_a_stale_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir.mkdir()
        (run_dir / LOCK_NAME).write_text(f"{os.uname().nodename} {child.pid}\n")
        with pytest.raises(RunDirLocked, match=f"in use by process {child.pid}"):
            run_training(TrainConfig(**CFG, iters=5), run_dir=run_dir)
    finally:
        child.kill()
        child.wait()
    res = run_training(TrainConfig(**CFG, iters=5), run_dir=run_dir)       # its process is gone: stale
    assert res.completed and not (run_dir / LOCK_NAME).exists()
    with run_dir_lock(run_dir):
        assert (run_dir / LOCK_NAME).read_text().split()[1] == str(os.getpid())
        with run_dir_lock(run_dir):                                        # re-entrant in one process
            pass
        assert (run_dir / LOCK_NAME).exists()
    assert not (run_dir / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_second_resume_of_a_running_run_is_refused(tmp_path):
    run_cli("nets.train", *TINY, "--iters", "30", "--checkpoint-every", "10", "--out", tmp_path, check=0)
    run_dir = only_run_dir(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    first = subprocess.Popen([sys.executable, "-m", "nets.train", "--resume", str(run_dir), "--iters", "200000"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (run_dir / LOCK_NAME).exists() and time.time() < deadline:
            time.sleep(0.05)
        second = run_cli("nets.train", "--resume", run_dir, "--iters", "200000", check=2)
        assert len(second.stderr.strip().splitlines()) == 1 and f"in use by process {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 130 and not (run_dir / LOCK_NAME).exists()


@pytest.mark.slow
def test_sigkill_at_any_moment_loses_at_most_one_interval_and_resumes_identically(tmp_path):
    """Kill a real run at several moments (in start-up, right after a checkpoint is renamed into
    place, between checkpoints); each time the directory holds only whole files, a checkpoint
    within one interval of the last one seen, and resuming gives the uninterrupted run's metrics."""
    args = [*TINY, "--iters", "300", "--record-every", "2", "--checkpoint-every", "25"]
    run_cli("nets.train", *args, "--out", tmp_path / "ref", check=0)
    ref = only_run_dir(tmp_path / "ref")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    for k, (delay, after_checkpoints) in enumerate([(0.3, 0), (0.0, 1), (0.05, 4)]):
        out = tmp_path / f"kill{k}"
        p = subprocess.Popen([sys.executable, "-m", "nets.train", *args, "--out", str(out)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen, last = 0, None
        deadline = time.time() + 120
        while seen < after_checkpoints and time.time() < deadline and p.poll() is None:
            ck = list(out.glob(f"*/{CHECKPOINT_NAME}"))
            stamp = ck[0].stat().st_mtime_ns if ck else None
            if stamp is not None and stamp != last:
                seen, last = seen + 1, stamp
            time.sleep(0.002)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        dirs = [d for d in out.iterdir()] if out.exists() else []
        if not dirs or not any((d / CHECKPOINT_NAME).exists() for d in dirs):
            assert after_checkpoints == 0           # killed before the first checkpoint: nothing to resume
            continue
        run_dir = dirs[0]
        payload, note = load_run_checkpoint(run_dir)
        assert note is None                                       # checkpoint.pt is always whole
        assert json.loads((run_dir / "config.json").read_text())["config"]["iters"] == 300
        resumed = run_cli("nets.train", "--resume", run_dir, check=0)
        assert "resumed at iteration" in resumed.stdout
        assert not list(run_dir.glob(".*.tmp")) and not (run_dir / LOCK_NAME).exists()
        for name in ("metrics.csv", "evals.csv"):
            assert (run_dir / name).read_text() == (ref / name).read_text(), (k, name)


def test_more_threads_than_cores_and_a_run_of_days_are_warned_about(monkeypatch):
    import nets.training.run as run_mod

    with pytest.warns(UserWarning, match="more than the .* usable CPU cores"):
        run_training(TrainConfig(**{**CFG, "threads": os.cpu_count() + 8}, iters=3), write=False)
    monkeypatch.setattr(run_mod, "LENGTH_CHECK_S", 0.0)
    with pytest.warns(UserWarning, match=r"iterations left take ~.* days"):
        run_training(TrainConfig(**CFG, iters=10**9), write=False, stop_after=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                         # an ordinary run: no warning
        monkeypatch.setattr(run_mod, "LENGTH_CHECK_S", 1e9)
        run_training(TrainConfig(**CFG, iters=6), write=False)


def test_threads_may_change_on_resume(tmp_path):
    run_cli("nets.train", *TINY, "--iters", "20", "--checkpoint-every", "5", "--out", tmp_path, check=0)
    run_dir = only_run_dir(tmp_path)
    p = run_cli("nets.train", "--resume", run_dir, "--iters", "30", "--threads", "2", check=0)
    assert "resumed at iteration 20" in p.stdout
