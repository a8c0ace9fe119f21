"""Python API of a batched sweep: K runs trained as one network, written as K ordinary runs.

:func:`run_batched` is :func:`nets.run_training` for K configurations that share the
architecture and the data (:data:`nets.training.batched.SHARED_FIELDS`): one process loads the data
once, builds the K trainers, trains them as one grouped network (:class:`nets.training.batched.
BatchedTrainer`) and writes K run directories with exactly the files of a single run --
``config.json``, ``metrics.csv/npz``, ``evals.csv``, ``periods.json``, ``plot.png``,
``checkpoint.pt`` (each resumable alone with ``python -m nets.train --resume``) -- by the same
writers (:func:`nets.training.run.finish_run`). Runs of different lengths are fine: a finished run leaves
the group and the rest go on. Ctrl-C / SIGTERM stop every run after the current step with a
checkpoint; :func:`run_batched_in_dirs` continues them (``python -m nets.sweep --batched``).
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import torch

from cli import Progress, stop_on_signals, write_json
from nets.data import load_data
from nets.training.batched import BatchedTrainer, check_batchable
from nets.training.checkpoint import CHECKPOINT_NAME, has_checkpoint, save_checkpoint
from nets.training.lock import run_dir_lock
from nets.training.run import RunResult, describe_run, finish_run, new_run_dir, resume_config, set_threads
from nets.training.trainer import Trainer, resolve_device

__all__ = ["run_batched", "run_batched_in_dirs"]


class _OwnTensors:
    """A trainer whose checkpoint state holds copies of its model tensors: they are slices of
    the grouped network's, and ``torch.save`` of a slice would store all K networks."""

    def __init__(self, trainer: Trainer):
        self.device = trainer.device
        self._trainer = trainer

    def state_dict(self) -> dict:
        state = self._trainer.state_dict()
        state["model"] = {k: v.clone() for k, v in state["model"].items()}
        return state


def run_batched(configs, run_dirs=None, *, write: bool = True, stop_after: int | None = None,
                states=None) -> list[RunResult]:
    """Train ``configs`` as one batched network; one :class:`nets.RunResult` per config.

    Parameters
    ----------
    configs : list of TrainConfig
        Sharing :data:`nets.training.batched.SHARED_FIELDS`; anything else may differ.
    run_dirs : list of paths, optional
        One directory per config (default: new directories under each ``config.out``).
    write : bool
        False: keep everything in memory (no directories, no checkpoints).
    stop_after : int, optional
        Stop every run (as if interrupted, with a checkpoint) once it has done this many
        iterations.
    states : list of (dict or None), optional
        Trainer states to continue from (``checkpoint["trainer"]``), per config.

    Returns
    -------
    list of RunResult
        In the order of ``configs``. A diverged run (NaN loss) has ``diverged`` set and is not
        raised: the others go on. ``elapsed_s`` is the batched program's wall time.
    """
    configs = list(configs)
    for c in configs:
        c.validate()
    check_batchable(configs)
    device = resolve_device(configs[0].device)
    previous_threads = torch.get_num_threads()
    if write and run_dirs is None:
        run_dirs = [new_run_dir(c) for c in configs]
    try:
        with ExitStack() as held:                           # one process per run directory
            for d in run_dirs if write else []:
                held.enter_context(run_dir_lock(d))
            threads = set_threads(configs[0], device)
            return _run(configs, device, threads, run_dirs, write, stop_after, states)
    finally:
        torch.set_num_threads(previous_threads)


def _run(configs, device, threads, run_dirs, write, stop_after, states) -> list[RunResult]:
    data = load_data(configs[0]).to(device)                  # once, shared by every trainer
    trainers = [Trainer(c, data, device) for c in configs]
    for tr, state in zip(trainers, states or [None] * len(trainers)):
        if state is not None:
            tr.load_state_dict(state)
    dirs = [None] * len(configs)
    if write:
        dirs = [Path(d) for d in run_dirs]
        for d, c, tr in zip(dirs, configs, trainers):
            d.mkdir(parents=True, exist_ok=True)
            write_json(d / "config.json", describe_run(c, tr, device, threads))
    limit = [tr.total_iters if stop_after is None else min(stop_after, tr.total_iters) for tr in trainers]
    start = [tr.iteration for tr in trainers]
    results: dict[int, RunResult] = {}
    t0 = time.perf_counter()
    todo = [i for i, tr in enumerate(trainers) if tr.iteration < limit[i]]
    batched = BatchedTrainer([trainers[i] for i in todo]) if todo else None

    def checkpoint(i):
        if batched is not None:
            batched.sync_counters()
        if dirs[i] is not None:
            save_checkpoint(dirs[i] / CHECKPOINT_NAME, _OwnTensors(trainers[i]), configs[i].to_dict())

    def finish(i, diverged=None):
        tr = trainers[i]
        if diverged is None:
            checkpoint(i)
        results[i] = finish_run(tr, device, dirs[i], completed=tr.iteration >= tr.total_iters,
                                diverged=diverged, elapsed_s=time.perf_counter() - t0,
                                iterations_done=tr.iteration - start[i], resumed_from=start[i])

    for i in range(len(trainers)):
        if i not in todo:                                  # already at its length
            finish(i)
    if batched is not None:
        _train(batched, trainers, limit, finish, checkpoint)
    return [results[i] for i in range(len(trainers))]


def _train(batched: BatchedTrainer, trainers, limit, finish, checkpoint) -> None:
    """Step until every run reached its limit or a signal asked to stop; finish each run."""
    index = {id(tr): i for i, tr in enumerate(trainers)}
    steps = max(limit[index[id(t)]] - t.iteration for t in batched.active)
    c0 = trainers[0].config
    bar = Progress(steps, desc=f"{len(batched.active)} x {c0.model}/{c0.dataset}",
                   enabled=False if all(t.config.quiet for t in trainers) else None)
    with bar, stop_on_signals(batched):
        while batched.active and not batched.stop_requested:
            active = list(batched.active)
            outcome = batched.step()
            bar.update(1)
            done = []
            for tr, diverged in zip(active, outcome):
                i, every = index[id(tr)], tr.config.checkpoint_every
                if diverged is not None or tr.iteration >= limit[i]:
                    finish(i, diverged)
                    done.append(tr)
                elif every and tr.iteration % every == 0:
                    checkpoint(i)
            if done:
                batched.retire(done)
    for tr in list(batched.active):                      # stopped by a signal
        finish(index[id(tr)])


def run_batched_in_dirs(configs, run_dirs) -> list[RunResult]:
    """Run or continue each config in its directory, all as one batched network.

    A directory holding a checkpoint is continued from it (its config is authoritative; the
    length and ``quiet`` come from ``configs``, as :func:`nets.resume_training` does).
    """
    todo, states = [], []
    for cfg, d in zip(configs, run_dirs):
        if has_checkpoint(d):
            cfg, payload = resume_config(d, iters=cfg.iters, epochs=cfg.epochs, quiet=cfg.quiet)
            states.append(payload["trainer"])
        else:
            states.append(None)
        todo.append(cfg)
    return run_batched(todo, run_dirs, states=states)
