"""The training loop: SGD (or Adam/AdamW) with constant LR and WD on SI networks, recorded without host syncs.

One :class:`Trainer` owns the model, the optimizer and the device-resident batch sampler; it
measures through :class:`nets.SIMonitor` (the same code a user's own loop gets; the monitor's
recorder holds the metrics). A step is: slice a batch on the device, forward in train mode,
cross-entropy, backward, optimizer step (``foreach``, or ``fused`` on CUDA; the monitor's hooks
take the SI norms before it on recording steps). Metrics are read to the host only every
``record_every`` steps and at evaluations; between them the loop never syncs, so on a GPU the
host queues work ahead of the device.

Variants on the SI group (Lobacheva et al., NeurIPS 2021, Sec. 2 and App.; ``docs/paper_setup.md``):
WD (plain), WRS -- no WD, the SI weights rescaled to a fixed total norm after every step
(Liu et al., 2021) -- and TEXP -- no WD, LR eta_t = eta * alpha^(-2t-1)
(Li & Arora, 2019; :func:`theory.equivalences.texp_schedule`), equivalent to WD with weights
scaled by alpha^t (recorded as ``si_norm_equiv``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nets.config import TrainConfig
from nets.data import ImageData
from nets.data.augment import EpochSampler
from nets.models import build_model
from nets.monitor import SIMonitor
from nets.monitor.batch_sharpness import batch_sharpness_backward
from nets.monitor.metrics import TrainingDiverged, evaluate, full_pass_train_loss
from nets.monitor.sharpness import fixed_batches
from nets.monitor.si import SIGroups, find_si_groups
from nets.training.precision import autocast, check_precision
from theory.equivalences import texp_schedule

__all__ = ["Trainer", "resolve_device", "TrainingDiverged"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda if available else cpu; anything else as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev


class Trainer:
    """Train ``config.model`` on ``data`` (see module docstring).

    Attributes of interest: ``model``, ``groups`` (:class:`nets.monitor.si.SIGroups`), ``recorder``,
    ``iteration`` (steps done), ``total_iters``, ``batches_per_epoch``, ``stop_requested``
    (set it, e.g. from a signal handler, to stop cleanly after the current step).
    """

    def __init__(self, config: TrainConfig, data: ImageData, device: torch.device | str = "cpu"):
        self.config = c = config
        self.device = torch.device(device)
        check_precision(c.precision, self.device)
        torch.manual_seed(c.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True   # fixed shapes: pick the fastest kernels once
        self.data = data.to(self.device)
        self.scale, self.shift = self.data.normaliser()
        self.model = build_model(c.model, mode=c.mode, width=c.width, num_classes=data.num_classes,
                                 in_channels=data.channels, input_size=data.image_size,
                                 last_layer_norm=c.last_layer_norm, keep_last_bias=c.keep_last_bias,
                                 norm=c.norm).to(self.device)
        if c.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        probe_x = torch.addcmul(self.shift, self.data.x_train[:8], self.scale)
        self.groups: SIGroups = find_si_groups(self.model, probe_x)
        params = dict(self.model.named_parameters())
        if c.fixed_elr_per_layer and self.groups.individual != self.groups.si:
            raise ValueError("fixed_elr_per_layer needs every SI tensor to be SI on its own; these are SI only "
                             f"jointly: {[n for n in self.groups.si if n not in self.groups.individual]}")
        self.optimizer = self._make_optimizer([params[n] for n in self.groups.si],
                                              [params[n] for n in self.groups.other])
        gen = torch.Generator(device=self.device)
        gen.manual_seed(c.seed + 1_000_003)
        self.sampler = EpochSampler(self.data.x_train, self.data.y_train, c.batch_size, self.scale,
                                    self.shift, generator=gen, augment=c.augment, pad=c.aug_pad,
                                    drop_last=c.drop_last)
        self.batches_per_epoch = self.sampler.batches_per_epoch
        self.total_iters = c.epochs * self.batches_per_epoch if c.epochs > 0 else c.iters
        self.eval_every = self.batches_per_epoch if c.eval_every == 0 else c.eval_every
        self.monitor = self._make_monitor()
        self.watch, self.recorder = self.monitor.watch, self.monitor.recorder
        init_norm = c.si_radius if c.si_radius is not None else c.init_si_norm
        if init_norm is not None:
            self.watch.rescale_(init_norm, per_layer=c.fixed_elr_per_layer)
        self.initial_si_norm = float(self.watch.norm())
        self.texp = self._make_texp()
        self.scheduler = None              # TEXP's LambdaLR, made at the first step (_schedule_from)
        self.iteration = 0
        self.stop_requested = False
        self._reset_window()

    # ------------------------------------------------------------------ setup
    def _make_optimizer(self, si: list[torch.Tensor], other: list[torch.Tensor]) -> torch.optim.Optimizer:
        c = self.config
        groups = [{"params": si, "weight_decay": c.wd_si, "name": "si"}]
        if other:
            groups.append({"params": other, "weight_decay": c.wd_other, "name": "other"})
        fast = {"fused": True} if self.device.type == "cuda" else {"foreach": True}
        if c.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, **fast)
        cls = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        return cls(groups, lr=c.lr, betas=(c.beta1, c.beta2), **fast)

    def _make_monitor(self):
        """The measurements: :class:`nets.SIMonitor` on our optimizer, recording every
        ``record_every`` steps and the last one, with the sharpness probe if asked for."""
        c = self.config
        batches = None
        if c.sharpness_every:
            batches = fixed_batches(self.data.x_train, self.data.y_train, c.batch_size, c.sharpness_batches,
                                    self.scale, self.shift)
        return SIMonitor(self.model, self.optimizer, si_groups=self.groups, log_every=c.record_every,
                         last_step=self.total_iters - 1, steps_per_epoch=self.batches_per_epoch,
                         norm_scale=self.norm_scale_at if c.exp_lr else None,
                         sharpness_every=c.sharpness_every if self.groups.si else 0, sharpness_batches=batches,
                         sharpness_from=c.sharpness_from, sharpness_iters=c.sharpness_iters,
                         sharpness_seed=c.seed + 2_000_033,
                         detect_every=0, run_info=c, verbose=False)

    def _make_texp(self):
        c = self.config
        if not c.exp_lr:
            return None
        sched = texp_schedule(c.lr, c.wd, c.momentum, 1)
        growth = -math.log(sched.alpha) * self.total_iters
        if growth > 60:
            raise ValueError(f"exp_lr over {self.total_iters} iterations would grow the SI weights by "
                             f"e^{growth:.0f} (float32 overflow); use fewer iterations or a smaller lr*wd")
        v0 = sched.initial_velocity(torch.ones(()))
        if v0 is not None:
            for p in self.watch.params:
                self.optimizer.state[p]["momentum_buffer"] = float(v0) * p.detach().clone()
        return sched

    def lr_factor(self, t: int) -> float:
        """Factor of the SI group's LR at step ``t``: 1, or TEXP's alpha^(-2t-1)."""
        return 1.0 if self.texp is None else self.texp.alpha ** (-2 * t - 1)

    def lr_at(self, t: int) -> float:
        """LR of the SI group at step ``t`` (constant, or TEXP's eta * alpha^(-2t-1))."""
        return self.config.lr * self.lr_factor(t)

    def _schedule_from(self, t: int):
        """TEXP as ``torch.optim.lr_scheduler.LambdaLR`` (group 0, the SI group, gets
        :meth:`lr_factor`; the others keep their LR), positioned at step ``t``. It sets
        eta * alpha^(-2t-1), the same float operations as :meth:`lr_at`: bit-identical LRs. Made at
        the first step of a run or of a resume (old checkpoints hold no scheduler state)."""
        groups = self.optimizer.param_groups
        groups[0].setdefault("initial_lr", self.config.lr)
        for g in groups[1:]:
            g.setdefault("initial_lr", g["lr"])
        factors = [self.lr_factor] + [lambda t: 1.0] * (len(groups) - 1)
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factors, last_epoch=t - 1)

    def norm_scale_at(self, t: int) -> float:
        """Factor from the recorded SI norm to the equivalent WD run's norm (alpha^t under TEXP)."""
        return 1.0 if self.texp is None else self.texp.alpha ** t

    def _reset_window(self) -> None:
        z = torch.zeros((), device=self.device)
        self._loss_sum, self._correct, self._window, self._seen = z.clone(), z.clone(), 0, 0

    # ------------------------------------------------------------------ steps
    @property
    def epoch(self) -> int:
        """Epochs completed so far."""
        return self.iteration // self.batches_per_epoch

    def step(self) -> list[float] | None:
        """One optimizer step; returns the recorded row on recording steps, else None."""
        t = self.begin_step()
        xb, yb, _ = self.sampler.next()
        with autocast(self.config.precision, self.device):
            out = self.model(xb)
            loss = F.cross_entropy(out, yb)
        self.optimizer.zero_grad(set_to_none=True)
        k = self.config.batch_sharpness_every
        if k and t >= self.config.sharpness_from and t % k == 0 and self.watch.params:
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            self.recorder.add_batch_sharpness(batch_sharpness_backward(
                loss, trainable, self.watch.params, iteration=t, lr=self.lr_at(t)))
        else:
            loss.backward()
        with torch.no_grad():
            correct = (out.argmax(1) == yb).sum()
        return self.finish_step(t, loss.detach(), correct, yb.shape[0])

    # A step is begin_step -> (batch, forward, gradient into .grad) -> finish_step. nets.training.batched
    # trains K trainers' models as one network between the two halves of every trainer's step.
    def begin_step(self) -> int:
        """Open step ``t = iteration`` (set its LR under TEXP); returns ``t``."""
        t = self.iteration
        if self.texp is not None and self.scheduler is None:
            self.scheduler = self._schedule_from(t)
        return t

    def finish_step(self, t: int, loss: torch.Tensor, correct: torch.Tensor, n: int) -> list[float] | None:
        """Close step ``t`` once the batch gradient is in the parameters' ``.grad``.

        ``loss`` (mean cross-entropy) and ``correct`` (number of correct predictions among the
        batch's ``n`` images) are 0-d device tensors. Adds them to the evaluation window, takes the
        optimizer step (the monitor's hooks measure around it; then the WRS / fixed-ELR projection),
        lets :class:`nets.SIMonitor` record on its recording steps (one host read) and evaluates when
        due. Returns the recorded row or None.
        """
        with torch.no_grad():
            self._loss_sum += loss
            self._correct += correct
            self._window += 1
            self._seen += n
        self.optimizer.step()          # the monitor's hooks: sharpness and SI norms before the step
        if self.scheduler is not None:
            self.scheduler.step()          # TEXP: the LR of step t + 1
        if self.config.si_radius is not None:     # WRS / fixed ELR: back onto the sphere
            self.watch.rescale_(self.config.si_radius, per_layer=self.config.fixed_elr_per_layer)
        self.iteration = t + 1
        row = self.monitor.step(loss, correct / n, epoch=t // self.batches_per_epoch)
        if self.eval_every > 0 and (self.iteration % self.eval_every == 0 or
                                    self.iteration == self.total_iters):
            self.evaluate_now()
        return row

    def evaluate_now(self) -> list[float]:
        """Record test loss/accuracy, the train means since the previous evaluation and, with
        ``config.full_train_eval``, the full-pass train loss/accuracy (:func:`full_pass_train_loss`)."""
        n = max(self._window, 1)
        train = torch.stack([self._loss_sum / n, self._correct / max(self._seen, 1)]).tolist()
        test = evaluate(self.model, self.data.x_test, self.data.y_test, self.scale, self.shift,
                        self.config.eval_batch_size)
        parts = [test, self.watch.norm().view(1)]
        if self.config.full_train_eval:
            parts.append(full_pass_train_loss(self.model, self.data.x_train, self.data.y_train, self.scale,
                                              self.shift, self.config.batch_size))
        row = self.recorder.add_eval(iteration=self.iteration, epoch=self.epoch, train=tuple(train),
                                     test_and_norm=torch.cat(parts))
        self._reset_window()
        return row

    def run(self, until: int | None = None, *, on_record=None, on_checkpoint=None) -> bool:
        """Train up to iteration ``until`` (default: ``total_iters``).

        ``on_record(row)`` is called after each recorded step; ``on_checkpoint()`` every
        ``config.checkpoint_every`` iterations. Returns True when ``until`` was reached, False
        when stopped early by ``stop_requested``.
        """
        until = self.total_iters if until is None else min(until, self.total_iters)
        every = self.config.checkpoint_every
        while self.iteration < until:
            if self.stop_requested:
                return False
            row = self.step()
            if row is not None and on_record is not None:
                on_record(row)
            if on_checkpoint is not None and every and self.iteration % every == 0:
                on_checkpoint()
        return True

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything needed to continue bit-for-bit: weights, optimizer, sampler/RNG, metrics."""
        state = {"iteration": self.iteration, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "sampler": self.sampler.state_dict(),
                 "recorder": self.recorder.state_dict(), "monitor": self.monitor.state_dict(),
                 "torch_rng": torch.get_rng_state(),
                 "window": [self._loss_sum.cpu(), self._correct.cpu(), self._window, self._seen],
                 "si_names": list(self.groups.si)}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        if list(state["si_names"]) != list(self.groups.si):
            raise ValueError("checkpoint's SI group differs from this model's: not the same run")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.monitor.load_state_dict(state.get("monitor", {"iteration": state["iteration"]}), state["recorder"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        loss_sum, correct, window, *seen = state["window"]
        self._loss_sum, self._correct = loss_sum.to(self.device), correct.to(self.device)
        self._window = int(window)
        self._seen = int(seen[0]) if seen else self._window * self.config.batch_size
        self.iteration = int(state["iteration"])
        self.scheduler = None              # TEXP: rebuilt at the next step, positioned at the iteration
