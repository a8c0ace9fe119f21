"""K configurations of one architecture trained as one network ("grouped" batching).

A sweep trains many small networks that differ only in eta, lambda, momentum, seed, ... (the
paper's frequency-vs-eta*lambda experiments, Lobacheva et al., NeurIPS 2021, Sec. 4). Run one
at a time, a small network leaves most of the machine idle (per-operation overheads dominate
on a GPU; two CPU threads share little work). Here the K networks become *one* network whose
every layer holds the K copies side by side along the channel axis:

* ``Conv2d(c_in, c_out)`` -> ``Conv2d(K c_in, K c_out, groups=K)``: group k sees only the
  channels of network k, with network k's kernel;
* ``BatchNorm2d(c)`` -> ``BatchNorm2d(K c)``: BN statistics are per channel, hence per network
  (each network keeps its own batch statistics and running averages);
* ``Linear(n_in, n_out)`` -> :class:`GroupedLinear` (one batched matrix product);
* parameter-free layers (ReLU, pooling, residual sums) act on each channel alone and are kept.

The input is the K networks' own mini-batches side by side, ``B x (K C) x H x W``, so each
network still sees its own data order. The loss is the sum of the K mean cross-entropies, whose
gradient with respect to network k's weights is network k's own gradient.

Nothing else is re-implemented: each configuration keeps its ordinary :class:`nets.Trainer`
(SI groups, sampler and generator, optimizer and its state, recorder, evaluation, sharpness
probe, checkpoint state). Its model's parameters and BN buffers are re-pointed at slices of the
grouped network's tensors, so the trainer sees the weights the grouped network trains, and each
step is the trainer's own ``begin_step`` / ``finish_step`` around one grouped forward and
backward (:class:`BatchedTrainer`). On the CPU the grouped kernels compute each group as the
single-network kernels do, and a batched run reproduces K single runs to the last bit except
the batch-loss value, which is reduced in a different order (1 ulp).

``torch.func.vmap`` over ``functional_call`` with stacked parameters was measured as the
alternative (``benchmarks/bench_batched.py --vmap``): its convolution batching rule is a
grouped convolution too, with extra layout copies; 0.57-0.58x the speed of this on the CPU.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from nets.training.precision import autocast
from nets.training.trainer import Trainer, TrainingDiverged

__all__ = ["GroupedLinear", "group_models", "BatchedTrainer", "SHARED_FIELDS", "check_batchable"]

# TrainConfig fields every configuration of one batched network must share (everything else --
# lr, wd, wd_on, momentum, seed, WRS/exp-LR, init norm, augmentation, length, recording -- may differ)
SHARED_FIELDS = ("model", "mode", "width", "dataset", "data_dir", "image_size", "train_subset",
                 "data_seed", "batch_size", "channels_last", "device", "threads", "precision")


def check_batchable(configs) -> None:
    """Raise ``ValueError`` (one line) unless ``configs`` can be trained as one batched network."""
    if not configs:
        raise ValueError("no configurations to train")
    first = configs[0]
    if any(c.batch_sharpness_every for c in configs):
        raise ValueError("batched runs do not measure the batch sharpness (it needs each run's own graph); "
                         "train these runs one by one")
    for c in configs[1:]:
        for name in SHARED_FIELDS:
            if getattr(c, name) != getattr(first, name):
                raise ValueError(f"batched runs must share {name}: got {getattr(first, name)!r} and "
                                 f"{getattr(c, name)!r}")


class GroupedLinear(nn.Module):
    """K independent linear maps side by side: input ``B x (K n_in)`` -> ``B x (K n_out)``.

    Block k of the output is ``x_k W_k^T + b_k`` with ``weight`` ``K x n_out x n_in`` and
    ``bias`` ``K x n_out``: one ``baddbmm`` when the weight is frozen (SI mode), else K
    ``F.linear`` calls, whose weight gradients round like a single network's (a batched matrix
    product's do not).
    """

    def __init__(self, k: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.k = k
        self.weight = nn.Parameter(torch.empty(k, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(k, out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        h = x.reshape(b, self.k, -1).transpose(0, 1)                         # K x B x n_in
        if self.weight.requires_grad:
            biases = [None] * self.k if self.bias is None else self.bias.unbind(0)
            return torch.cat([F.linear(hi, w, bi) for hi, w, bi in zip(h, self.weight.unbind(0), biases)], 1)
        w = self.weight.transpose(1, 2)
        out = torch.bmm(h, w) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), h, w)
        return out.transpose(0, 1).reshape(b, -1)


class SplitConv2d(nn.Conv2d):
    """A grouped ``Conv2d`` (``groups`` = K) computed as K separate convolutions.

    Used for the stem (1-3 input channels, the images) and 1x1 convolutions (ResNet shortcuts):
    for those oneDNN's weight gradient of a grouped convolution rounds differently from a single
    network's; K calls of the single network's kernel keep the batched run bit-for-bit equal.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.groups
        weights = self.weight.view(k, -1, *self.weight.shape[1:]).unbind(0)
        biases = [None] * k if self.bias is None else self.bias.view(k, -1).unbind(0)
        xs = x.view(x.shape[0], k, -1, *x.shape[2:]).unbind(1)
        outs = [F.conv2d(xi, w, b, self.stride, self.padding, self.dilation)
                for xi, w, b in zip(xs, weights, biases)]
        if not outs[0].is_contiguous():          # channels-last, as the single network's stem
            return torch.cat([o.permute(0, 2, 3, 1) for o in outs], 3).permute(0, 3, 1, 2)
        return torch.cat(outs, 1)


def _grouped_layer(m: nn.Module, k: int) -> nn.Module | None:
    """The K-network version of a layer with parameters or buffers (None: not one of those)."""
    if type(m) is nn.Conv2d and m.padding_mode == "zeros":
        split = m.groups == 1 and (m.in_channels <= 3 or m.kernel_size == (1, 1))
        conv = SplitConv2d if split else nn.Conv2d
        return conv(k * m.in_channels, k * m.out_channels, m.kernel_size, m.stride, m.padding,
                    m.dilation, k * m.groups, m.bias is not None)
    if type(m) is nn.BatchNorm2d:
        return nn.BatchNorm2d(k * m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
    if type(m) is nn.GroupNorm:
        return nn.GroupNorm(k * m.num_groups, k * m.num_channels, m.eps, m.affine)
    if type(m) is nn.Linear:
        return GroupedLinear(k, m.in_features, m.out_features, m.bias is not None)
    return None


def _replace_layers(module: nn.Module, original: nn.Module, k: int) -> None:
    """Replace, in ``module`` (a tensor-less copy of ``original``), every layer with parameters
    or buffers by its K-network version, built from the original layer."""
    for (name, child), orig in zip(module.named_children(), original.children()):
        new = _grouped_layer(orig, k)
        if new is not None:
            setattr(module, name, new)
            continue
        if list(orig.parameters(recurse=False)) or list(orig.buffers(recurse=False)):
            raise ValueError(f"cannot batch a {type(orig).__name__} layer ({name}): only Conv2d (zero "
                             f"padding), BatchNorm2d, GroupNorm, Linear and parameter-free layers are "
                             f"supported")
        _replace_layers(child, orig, k)


class _Shared:
    """One tensor of the grouped network and the K per-network tensors that are its slices."""

    def __init__(self, grouped: torch.Tensor, per_net: list[torch.Tensor]):
        self.grouped, self.per_net = grouped, per_net
        self.shape = per_net[0].shape

    def stacked(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (a grouped-network tensor like ``grouped``) as ``K x shape`` (a view)."""
        return t.view(len(self.per_net), *self.shape)


def _share(grouped: torch.Tensor, per_net: list[torch.Tensor]) -> _Shared:
    """Copy the K tensors into ``grouped`` and make each one a slice of it (``.data``)."""
    sh = _Shared(grouped, per_net)
    stacked = sh.stacked(grouped)
    stacked.copy_(torch.stack([t.detach() for t in per_net]))
    for t, view in zip(per_net, stacked.unbind(0)):
        t.data = view
    return sh


def group_models(models: list[nn.Module], *, channels_last: bool = False):
    """One network computing ``models`` (same architecture) side by side; see the module docstring.

    The grouped network gets the models' current parameters and BN statistics, and afterwards
    each model's parameters and floating-point buffers *are* slices of the grouped network's
    (``.data`` re-pointed), so training the grouped network trains the models. Returns
    ``(grouped, params, counters)``: ``params`` lists a :class:`_Shared` per parameter,
    ``counters`` pairs each grouped integer buffer (BN's ``num_batches_tracked``) with the
    models' own, which :meth:`BatchedTrainer.sync_counters` keeps up to date.
    """
    k, template = len(models), models[0]
    memo = {id(t): None for t in [*template.parameters(), *template.buffers()]}
    holder = nn.Sequential(copy.deepcopy(template, memo))   # the structure without the tensors
    _replace_layers(holder, nn.Sequential(template), k)     # (the holder: the root may be a layer)
    grouped = holder[0]
    device = next(template.parameters()).device
    grouped = grouped.to(device).train()
    if channels_last:
        grouped = grouped.to(memory_format=torch.channels_last)
    per_param = [dict(m.named_parameters()) for m in models]
    per_buffer = [dict(m.named_buffers()) for m in models]
    params, counters = [], []
    with torch.no_grad():
        for name, g in grouped.named_parameters():
            params.append(_share(g, [p[name] for p in per_param]))
            g.requires_grad_(params[-1].per_net[0].requires_grad)
        for name, g in grouped.named_buffers():
            mine = [b[name] for b in per_buffer]
            if g.is_floating_point():
                _share(g, mine)
            else:                                          # a counter: kept by sync_counters
                g.zero_()
                counters.append((g, mine))
    return grouped, params, counters


class BatchedTrainer:
    """Train the models of ``trainers`` (same architecture and data) as one grouped network.

    Each step: every active trainer opens its step (:meth:`nets.Trainer.begin_step`), draws its
    own batch with its own sampler, the grouped network computes the K losses and their
    gradients in one forward and backward, and every trainer closes its step with its own
    optimizer, recorder and evaluation (:meth:`nets.Trainer.finish_step`). Trainers that are
    done (or diverged) leave with :meth:`retire`; the rest are regrouped.

    Attributes: ``trainers`` (all), ``active`` (being trained), ``grouped`` (the network of the
    active ones), ``stop_requested`` (set it, e.g. from a signal handler, to stop the caller's
    loop; checked by :func:`nets.training.batched_run.run_batched`).
    """

    def __init__(self, trainers: list[Trainer]):
        check_batchable([t.config for t in trainers])
        first = trainers[0]
        for t in trainers[1:]:
            if t.groups.si != first.groups.si or t.sampler.x is not first.sampler.x:
                raise ValueError("batched trainers need the same SI group and the same data tensors")
        self.trainers = list(trainers)
        self.active = [t for t in trainers if t.iteration < t.total_iters]
        self.stop_requested = False
        self.grouped, self._params, self._counters = None, [], []
        self._regroup()

    # ------------------------------------------------------------------ grouping
    def _regroup(self) -> None:
        self.sync_counters()
        self.grouped, self._params, self._counters = None, [], []
        if self.active:
            self.grouped, self._params, self._counters = group_models(
                [t.model for t in self.active], channels_last=self.active[0].config.channels_last)

    def sync_counters(self) -> None:
        """Add the grouped network's BN batch counters to each model's (call before reading the
        models' state, e.g. for a checkpoint)."""
        with torch.no_grad():
            for g, mine in self._counters:
                for b in mine:
                    b.add_(g)
                g.zero_()

    def retire(self, trainers) -> None:
        """Stop training ``trainers`` (their state stays as it is) and regroup the others."""
        gone = {id(t) for t in trainers}
        self.active = [t for t in self.active if id(t) not in gone]
        self._regroup()

    # ------------------------------------------------------------------ steps
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The active trainers' next batches side by side: ``B x (K C) x H x W`` images and
        ``K B`` labels (network-major), each drawn by that trainer's own sampler."""
        samplers = [t.sampler for t in self.active]
        idx = [s.next_indices()[0] for s in samplers]
        k, s0 = len(samplers), samplers[0]
        if any(s.augment for s in samplers):              # per-network random crops and flips
            xs, ys = zip(*(s.batch(i) for s, i in zip(samplers, idx)))
            x, y = torch.stack(xs, 1), torch.cat(ys)
        else:                                             # one gather for all K batches
            flat = torch.cat(idx)
            x = torch.addcmul(s0.shift, s0.x.index_select(0, flat), s0.scale)
            x, y = x.view(k, -1, *x.shape[1:]).transpose(0, 1), s0.y.index_select(0, flat)
        return x.reshape(x.shape[0], -1, *x.shape[3:]), y

    def step(self) -> list[TrainingDiverged | None]:
        """One SGD step of every active trainer; per active trainer, None or its divergence."""
        act = self.active
        opened = [t.begin_step() for t in act]
        x, y = self._batch()
        k, b = len(act), x.shape[0]
        with autocast(act[0].config.precision, act[0].device):     # as Trainer.step (one shared precision)
            logits = self.grouped(x).view(b, k, -1).transpose(0, 1).reshape(k * b, -1)
            losses = F.cross_entropy(logits, y, reduction="none").view(k, b).mean(1)
        self.grouped.zero_grad(set_to_none=True)
        losses.sum().backward()
        with torch.no_grad():
            correct = (logits.argmax(1) == y).view(k, b).sum(1)
        for sh in self._params:
            if sh.grouped.grad is not None:
                for p, g in zip(sh.per_net, sh.stacked(sh.grouped.grad).unbind(0)):
                    p.grad = g
        losses = losses.detach()
        out = []
        for i, (t, it) in enumerate(zip(act, opened)):
            try:
                t.finish_step(it, losses[i], correct[i], b)
                out.append(None)
            except TrainingDiverged as exc:
                out.append(exc)
        return out
