"""``SIMonitor``: the SI measurements of this toolkit in anyone's own PyTorch training loop.

::

    from nets import SIMonitor
    mon = SIMonitor(model, optimizer, example_batch=x[:8], log_every=10, out="runs/mine")
    for x, y in loader:
        loss = F.cross_entropy(model(x), y); optimizer.zero_grad(); loss.backward(); optimizer.step()
        mon.step(loss)            # optional: without it the hooks record everything but the loss
    print(mon.close())            # metrics.csv grew with the run; writes metrics.npz, periods.json, layers.csv

The monitor finds the scale-invariant (SI) parameters by testing (:func:`nets.monitor.si.find_si_groups`,
groups SI only jointly included) and hooks ``optimizer.step`` (``register_step_pre_hook`` /
``register_step_post_hook``): every ``log_every`` steps it takes the SI norms and gradient norms
before the step and the weights after it, and reads the hyper-parameters the step used from the
optimizer's parameter groups (LR schedulers are followed). Everything stays on the device until
one read per recorded step; other steps cost nothing. :class:`nets.Trainer` records through it.

Per SI tensor and in total it reports rho, the effective LR, the effective gradient norm
rho*||grad||, the angular update per step and the theory's equilibrium values for the current
hyper-parameters (:mod:`nets.monitor.theory`); destabilisations are detected online
(:class:`analysis.online.StreamingPeriodDetector`, exactly the offline detector on the series so
far) and :meth:`SIMonitor.summary` classifies the regime (:mod:`nets.monitor.state`).
Lobacheva et al. (NeurIPS 2021) for the quantities and the periodic behaviour.
"""
from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from analysis.online import StreamingPeriodDetector
from analysis.rows import RowTable
from cli.files import CSVStream, ensure_writable, write_csv
from nets.monitor.calls import ExampleBatchError
from nets.monitor.metrics import Recorder, SIWatch, StepProbe, StepRecord, TrainingDiverged
from nets.monitor.report import metrics_columns, metrics_header, metrics_row
from nets.monitor.sharpness import SharpnessProbe
from nets.monitor.si import NoSIParameters, resolve_si_groups
from nets.monitor.sinks import LAYER_QUANTITIES
from nets.monitor.theory import Hyper, effective_lr, read_hyper
from nets.monitor.track import EquilibriumTrack

__all__ = ["SIMonitor", "TrainingDiverged", "NoSIParameters", "ExampleBatchError"]


def _scalar(v, device) -> torch.Tensor:
    """A 0-d float tensor on ``device`` without a host read (NaN for None)."""
    if v is None:
        return torch.full((), float("nan"), device=device)
    if isinstance(v, torch.Tensor):
        return v.detach().reshape(()).to(device=device, dtype=torch.float32)
    return torch.tensor(float(v), device=device)


class SIMonitor:
    """Measure the SI weights of ``model`` trained by ``optimizer`` (see module docstring).

    Parameters
    ----------
    model : nn.Module
    optimizer : torch.optim.Optimizer
        Any ``torch.optim`` optimizer; each SI tensor's hyper-parameters are read from its group.
    example_batch : tensor, dict or (inputs, targets), optional
        A few training inputs (more than one: BatchNorm needs a batch) for the SI test: a tensor
        (``model(x)``), a dict (``model(**inputs)``) or a loader's ``(inputs, targets)`` pair.
    example_args : tuple, optional
        Instead of ``example_batch``: several positional inputs, ``model(*example_args)``.
    output : key, index or callable, optional
        Which output to test when the model returns a dict, tuple or dataclass (default: all its
        floating-point tensors). Dropout is off during the test; the model's own modes are
        untouched (the test runs on copies, :mod:`nets.monitor.calls`).
    log_every : int
        Record every this many optimizer steps (and at ``last_step``).
    out : path, optional
        Folder for the files (None: write nothing), created and checked here: the records stream
        into ``out/metrics.csv`` as they are made (flushed every ``flush_every`` records or
        ``flush_seconds`` seconds; :class:`cli.CSVStream`), with the theory's values at each
        record (:mod:`nets.monitor.track`), and :meth:`close` writes the rest. The monitor's own
        tables of records are kept in ``out/.records/`` (raw float64,
        :class:`analysis.rows.RowTable`), not in memory.
    plot : bool
        Also draw ``out/plot.png`` at :meth:`close` (about 1.5 s, most of it matplotlib); by default
        close only finalises the data, and :meth:`plot` draws the figure whenever it is wanted.
    sinks : sequence, optional
        More places for every record as it is made, e.g.
        :class:`nets.monitor.sinks.TensorBoardSink` (:mod:`nets.monitor.sinks`).
    si_groups : SIGroups or list of names, optional
        Skip the test and use these (names: each tensor taken as individually SI).
    decoupled_weight_decay : float
        WD you apply yourself outside the optimizer, ``x <- (1 - lr*wd) x`` each step.
    steps_per_epoch : int, optional
        Fills the ``epoch`` column (else -1).
    last_step : int, optional
        Also record this step (e.g. the last one).
    norm_scale : callable, optional
        ``t -> factor`` from the measured norm to an equivalent WD run's norm (recorded as
        ``si_norm_equiv``; used by :class:`nets.Trainer` for Li & Arora's exponential LR).
    sharpness_every, sharpness_from, sharpness_batches, loss_fn, sharpness_iters, sharpness_seed
        Every ``sharpness_every`` steps (0: never) from step ``sharpness_from`` on, before the
        step, the top eigenvalue of the Hessian of ``loss_fn`` (default cross-entropy) on the
        fixed ``[(x, y), ...]`` batches in the SI weights, on the sphere
        (:class:`nets.monitor.sharpness.SharpnessProbe`).
    detect_every : int or "auto"
        Online destabilisation detection every k records, "auto" (within 1 % of wall time), or 0
        (only in :meth:`summary`).
    run_info : analysis.report.RunInfo, optional
        What the period analysis needs to know of the run (LR, WD on the SI weights, momentum, how
        the norm is controlled); default: read from the optimizer. :class:`nets.Trainer` passes
        its :class:`nets.TrainConfig`, whose analysis is then the run's only one.
    verbose : bool
        Print the SI groups found and each destabilisation as it is detected (stderr).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, example_batch=None, *,
                 log_every: int = 10, out=None, si_groups=None, decoupled_weight_decay: float = 0.0,
                 steps_per_epoch: int | None = None, last_step: int | None = None, norm_scale=None,
                 sharpness_every: int = 0, sharpness_from: int = 0, sharpness_batches=None, loss_fn=None,
                 sharpness_iters: int = 30, sharpness_seed: int = 0, detect_every: int | str = "auto",
                 run_info=None, example_args: tuple | None = None, output=None, sinks=(), flush_every: int = 100,
                 flush_seconds: float = 30.0, verbose: bool = True, plot: bool = False):
        if int(log_every) != log_every or log_every < 1:
            raise ValueError(f"log_every must be a positive integer, got {log_every!r}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.model, self.optimizer, self.log_every = model, optimizer, int(log_every)
        self.out = Path(out) if out is not None else None
        self.draw_at_close = bool(plot)
        if self.out is not None:
            ensure_writable(self.out)          # a bad folder is found now, not after the run
        self.groups = resolve_si_groups(model, example_batch, si_groups, example_args, output)
        named = dict(model.named_parameters())
        if not self.groups.si:
            n = sum(p.requires_grad for p in model.parameters())
            raise NoSIParameters(
                f"SIMonitor: no scale-invariant parameters in {type(model).__name__}: rescaling any of its "
                f"{n} trainable tensors (or a group of them) changed the output on example_batch. SI weights "
                "are those followed by a normalisation (BatchNorm, LayerNorm, ...) in train mode.")
        self.names = list(self.groups.si)
        self.watch = SIWatch([named[n] for n in self.names])
        self.group_of = self._map_groups(optimizer)
        self.decoupled_weight_decay = float(decoupled_weight_decay)
        self.steps_per_epoch, self.last_step, self.norm_scale = steps_per_epoch, last_step, norm_scale
        # with out: the per-record rows live in out/.records/*.f64, so memory stays flat in the steps
        self.spill_dir = None if self.out is None else self.out / ".records"
        self.recorder = Recorder(len(self.names), spill_dir=self.spill_dir)
        self.track = self._new_track()
        self.detector = self._new_detector(detect_every)
        self.sharpness = None
        self.sharpness_every, self.sharpness_from = int(sharpness_every), int(sharpness_from)
        if self.sharpness_every:
            if not sharpness_batches:
                raise ValueError("sharpness_every > 0 needs sharpness_batches=[(x, y), ...]")
            self.sharpness = SharpnessProbe(model, self.watch.params, sharpness_batches, max_iter=sharpness_iters,
                                            seed=sharpness_seed, loss_fn=loss_fn or F.cross_entropy)
        self.run_info = run_info
        self.sinks = list(sinks)
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self.stream = None if self.out is None else self._open_stream(append=False)
        self.verbose = verbose
        self.iteration = 0
        self.diverged: str | None = None
        self._probe = self._pending = None
        self._stepped = self._warned = self._closed = False
        self._handles = [optimizer.register_step_pre_hook(self._pre_step),
                         optimizer.register_step_post_hook(self._post_step)]
        if verbose:
            joint = len(self.names) - len(self.groups.individual)
            print(f"SIMonitor: {len(self.names)} SI tensors ({joint} SI only jointly), "
                  f"{sum(self.watch.sizes):,} weights; not SI: {len(self.groups.other)} trained tensors",
                  file=sys.stderr)

    def _map_groups(self, optimizer) -> list[int]:
        """``group_of``: index (into :attr:`si_group_indices`) of the parameter group of each SI tensor."""
        where = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
        missing = [n for n, p in zip(self.names, self.watch.params) if id(p) not in where]
        if missing:
            raise ValueError(f"SIMonitor: the optimizer does not train the SI parameters {missing}; "
                             "pass the optimizer that trains them")
        self.si_group_indices = sorted({where[id(p)] for p in self.watch.params})
        return [self.si_group_indices.index(where[id(p)]) for p in self.watch.params]

    def _new_track(self) -> EquilibriumTrack:
        return EquilibriumTrack(len(self.si_group_indices), sum(self.watch.sizes), self.group_of[0],
                                spill_dir=self.spill_dir)

    def _new_detector(self, every) -> StreamingPeriodDetector:
        spill = None if self.spill_dir is None else self.spill_dir / "detector.f64"
        return StreamingPeriodDetector(self.log_every, every=every, store=RowTable(2, spill=spill))

    def _open_stream(self, append: bool) -> CSVStream:
        return CSVStream(self.out / "metrics.csv", metrics_header(self.names), flush_every=self.flush_every,
                         flush_seconds=self.flush_seconds, append=append)

    # ------------------------------------------------------------------ hooks
    def _is_record(self, t: int) -> bool:
        return t % self.log_every == 0 or t == self.last_step

    def hypers(self) -> list[Hyper]:
        """The current :class:`nets.monitor.theory.Hyper` of each parameter group holding SI tensors."""
        return [read_hyper(self.optimizer, self.optimizer.param_groups[i], self.decoupled_weight_decay)
                for i in self.si_group_indices]

    def current_hypers(self) -> list[Hyper]:
        """The Hyper of the latest record (before any record: :meth:`hypers`)."""
        return self.track.hypers or self.hypers()

    def _pre_step(self, optimizer, args, kwargs):
        if self._pending is not None:       # the previous recorded step got no mon.step(): no loss
            self._finalize(None, None, None)
        t = self.iteration
        if self.sharpness is not None and t >= self.sharpness_from and t % self.sharpness_every == 0:
            lr = self.hypers()[self.group_of[0]].lr
            self.recorder.add_sharpness(self.sharpness.measure(t, lr))     # at x_t, before the step
        if not self._is_record(t):
            return None
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)    # args[0]: the optimizer
        if closure is None:
            self._probe = (t, StepProbe(self.watch), self.hypers())
            return None

        def probing():                      # optimizer.step(closure): the gradient exists only after it
            loss = closure()
            if self._probe is None:
                self._probe = (t, StepProbe(self.watch), self.hypers())
            return loss
        if "closure" in kwargs:
            return args, {**kwargs, "closure": probing}
        return (args[0], probing, *args[2:]), kwargs

    def _post_step(self, optimizer, args, kwargs) -> None:
        self.iteration += 1
        self._stepped = True
        if self._probe is not None:
            self._pending, self._probe = self._probe, None

    # ------------------------------------------------------------------ recording
    def step(self, loss=None, accuracy=None, *, epoch: int | None = None) -> StepRecord | None:
        """Give the monitor the loss (and accuracy) of the optimizer step just made.

        Call it after ``optimizer.step()``. Returns the recorded
        :class:`nets.monitor.metrics.StepRecord` on recorded steps, else None. Raises
        :class:`TrainingDiverged` when the loss or the SI norm is not finite.

        A call before any optimizer step (a loop that calls it before ``optimizer.step()``, where
        each loss would be recorded with the step before it) and two calls without an optimizer
        step in between are each said once, in a warning.
        """
        if not self._stepped:
            if not self._warned:
                first = not self.recorder.steps and self._pending is None and self._probe is None
                warnings.warn("SIMonitor.step() was called before optimizer.step(): call it after "
                              "optimizer.step(), or each loss is recorded with the step before it" if first else
                              "SIMonitor.step() called twice without an optimizer step in between; "
                              "call it once after each optimizer.step()", stacklevel=2)
                self._warned = True
            return None
        self._stepped = False
        return None if self._pending is None else self._finalize(loss, accuracy, epoch)

    def _finalize(self, loss, accuracy, epoch) -> StepRecord:
        t, probe, hypers = self._pending
        self._pending = None
        dev = probe.before.device
        if epoch is None:
            epoch = t // self.steps_per_epoch if self.steps_per_epoch else -1
        h = hypers[self.group_of[0]]
        row = self.recorder.add_step(
            iteration=t, epoch=epoch, lr=h.lr,
            loss_acc=torch.stack([_scalar(loss, dev), _scalar(accuracy, dev)]), probe=probe,
            after=self.watch.flat(), norm_scale=1.0 if self.norm_scale is None else self.norm_scale(t),
            eff_lr_at=lambda rho: effective_lr(h, rho))
        eq = self.track.add(hypers, row.eff_grad_norm)
        if self.stream is not None:
            self.stream.write(metrics_row(row, eq, self.recorder.last_layers))
        bad = ("loss", row.train_loss) if loss is not None and not math.isfinite(row.train_loss) else (
            ("SI weight norm", row.si_norm) if not math.isfinite(row.si_norm) else None)
        if bad is not None:
            self.diverged = f"{bad[0]} is {bad[1]} at iteration {t}: training diverged; lower the learning rate"
            raise TrainingDiverged(self.diverged)
        if self.sinks:
            layers = {q: dict(zip(self.names, rows)) for q, rows in zip(LAYER_QUANTITIES, self.recorder.last_layers)}
            for sink in self.sinks:
                sink.write(row, layers)
        if t % self.log_every == 0:
            new, _ = self.detector.append(row.si_norm_equiv, row.train_loss)
            for sink in self.sinks:
                for it in new if hasattr(sink, "destabilisation") else ():
                    sink.destabilisation(it)
            if new and self.verbose:
                print(f"SIMonitor: destabilisation at iteration {', '.join(map(str, new))} "
                      f"(detected at {t})", file=sys.stderr)
        return row

    def flush(self) -> None:
        """Record a pending step that got no :meth:`step` call (its loss stays NaN)."""
        if self._pending is not None:
            self._finalize(None, None, None)

    # ------------------------------------------------------------------ results
    def summary(self) -> dict:
        """Periods, regime and the per-tensor table of what was recorded (see
        :func:`nets.monitor.report.analyse_monitor`)."""
        from nets.monitor.report import analyse_monitor
        self.flush()
        return analyse_monitor(self)

    def table(self) -> str:
        """The per-tensor table with the total and the regime, as text."""
        from nets.monitor.state import format_table
        s = self.summary()
        return format_table(s["layers"] + [s["total"]], s["regime"], s["window"])

    def close(self) -> dict:
        """Stop monitoring (remove the hooks), finish the files in ``out`` (``metrics.csv`` grew with
        the run; the rest is written here) and return :meth:`summary`."""
        from nets.monitor.report import write_monitor_outputs
        if not self._closed:
            for h in self._handles:
                h.remove()
            self._closed = True
        try:
            summary = self.summary()
            if self.out is not None:                 # metrics.csv's digest was kept as it was written
                write_monitor_outputs(self.out, self, summary, plot=self.draw_at_close,
                                      digests={"metrics.csv": self.stream.hexdigest()})
        finally:
            if self.stream is not None:
                self.stream.close()
            for sink in self.sinks:
                if hasattr(sink, "close"):
                    sink.close()
        return summary

    def plot(self, path=None) -> Path:
        """Draw the monitor's figure (loss, norm, effective LR, angular update vs equilibrium, with
        the destabilisations) of what was recorded so far into ``path`` (default ``out/plot.png``)."""
        from nets.plots import plot_monitor
        if path is None and self.out is None:
            raise ValueError("give a path: this monitor has no out folder")
        path = Path(path) if path is not None else self.out / "plot.png"
        steps, _, _ = self.recorder.arrays()
        if len(steps["iteration"]) < 2:
            raise ValueError(f"only {len(steps['iteration'])} record(s): nothing to plot yet")
        summary = self.summary()
        plot_monitor(path, steps, summary["series"], summary, sharpness=self.recorder.sharpness_table())
        return path

    def __enter__(self) -> "SIMonitor":
        return self

    def __exit__(self, *exc) -> None:
        if self.diverged is None and exc[0] is None:
            self.close()
        else:                                 # keep what was recorded, do not mask the exception
            try:
                self.close()
            except Exception:                 # noqa: BLE001
                pass

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Iteration count and the theory's values of every record (the recorder has its own state)."""
        return {"iteration": self.iteration, "track": self.track.state_dict()}

    def load_state_dict(self, state: dict, recorder_state: dict | None = None) -> None:
        """Continue from :meth:`state_dict` (and a :meth:`Recorder.state_dict`); the online
        detector is rebuilt from the recorded rows and ``out/metrics.csv`` rewritten from them."""
        if recorder_state is not None:
            self.recorder.load_state_dict(recorder_state)
        self.iteration = int(state.get("iteration", self.iteration))
        self.track = self._new_track()
        if "track" in state:
            self.track.load_state_dict(state["track"])
        elif state.get("hyper_log"):             # a checkpoint from before the track: the hyper-parameter log
            log = [(int(i), [Hyper(**d) for d in hs]) for i, hs in state["hyper_log"]]
            self.track.replay(log, self.recorder.arrays()[0]["eff_grad_norm"])
        every = self.detector.every
        self.detector = self._new_detector(0)
        for row in self.recorder.step_records():
            if int(row.iteration) % self.log_every == 0:
                self.detector.append(row.si_norm_equiv, row.train_loss)
        self.detector.every = every
        if self.stream is not None:              # the file holds what the loaded state holds, then grows
            self.stream.close()
            write_csv(self.out / "metrics.csv", metrics_columns(self))
            self.stream = self._open_stream(append=True)
        self._probe = self._pending = None
        self._stepped = False
