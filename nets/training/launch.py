"""Runs of a sweep as cluster jobs: one Slurm job per run through submitit (``pip install -e '.[slurm]'``).

:func:`run_jobs` submits :class:`RunJob` for every unfinished run (one job array), waits for them
and returns whether each completed. A job trains or resumes its run directory exactly as a local
sweep does (:func:`nets.training.sweep.run_or_resume`), so the results land in the same folder
layout. A job that Slurm preempts or that reaches its time limit is requeued by submitit
(:meth:`RunJob.checkpoint`) and continues from the run's last checkpoint. ``cluster="local"``
runs the same jobs as local processes (submitit's local executor: what the tests use).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["LaunchOptions", "RunJob", "run_jobs"]


@dataclass(frozen=True)
class LaunchOptions:
    """Where and how the jobs run: Slurm ``partition`` (None: the cluster's default), wall-clock
    ``time_min`` per job, ``gpus_per_job``, ``cpus_per_job``, and ``cluster`` (None: Slurm when
    available; ``"local"``: local processes; ``"slurm"``)."""

    partition: str | None = None
    time_min: int = 60
    gpus_per_job: int = 0
    cpus_per_job: int = 2
    cluster: str | None = None

    def __post_init__(self):
        if int(self.time_min) < 1 or int(self.gpus_per_job) < 0 or int(self.cpus_per_job) < 1:
            raise ValueError(f"need time_min >= 1, gpus_per_job >= 0, cpus_per_job >= 1; got {self}")
        if self.cluster not in (None, "local", "slurm"):
            raise ValueError(f"cluster must be local or slurm, got {self.cluster!r}")


class RunJob:
    """One run of a sweep as a submitit job: train or continue ``run_dir``; requeued on preemption."""

    def __call__(self, config: dict, run_dir: str) -> bool:
        from nets.config import TrainConfig
        from nets.training.sweep import run_or_resume

        return run_or_resume(TrainConfig.from_dict(config), run_dir)

    def checkpoint(self, config: dict, run_dir: str):
        """submitit calls this on preemption or timeout: requeue the same call (it resumes)."""
        import submitit

        return submitit.helpers.DelayedSubmission(RunJob(), config, run_dir)


def _executor(folder: Path, options: LaunchOptions):
    try:
        import submitit
    except ImportError as exc:
        raise ImportError("--launcher submitit needs submitit: pip install -e '.[slurm]'") from exc
    executor = submitit.AutoExecutor(folder=str(folder), cluster=options.cluster)
    params = dict(timeout_min=int(options.time_min), gpus_per_node=int(options.gpus_per_job),
                  cpus_per_task=int(options.cpus_per_job), name="sibn-sweep")
    if options.partition:
        params["slurm_partition"] = options.partition
    executor.update_parameters(**params)
    return executor


def run_jobs(configs: list, run_dirs: list, folder: str | Path, options: LaunchOptions = LaunchOptions()) -> list:
    """Submit one job per (config, run directory), wait for all; returns each job's ``completed``.
    submitit's logs and pickles go to ``folder``."""
    executor = _executor(Path(folder), options)
    with executor.batch():
        jobs = [executor.submit(RunJob(), c.to_dict(), str(d)) for c, d in zip(configs, run_dirs)]
    return [bool(job.result()) for job in jobs]
