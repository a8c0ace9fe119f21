"""Find a model's scale-invariant (SI) parameters by testing, with ``theory``'s detector.

The authors' code chose SI weights by a name substring and missed the shortcut convs
(``docs/paper_setup.md``). Here every decision is a test of the model's output under rescaling, made by
:func:`theory.invariance.find_scale_invariant_params` (train-mode BN, float64):

* **individually SI** -- parameters whose rescaling *alone* leaves the output unchanged (every
  conv of the ConvNet; the first conv of each ResNet block);
* **the SI group** -- the set whose *joint* rescaling leaves the output unchanged; this is the
  vector ``x`` of the theory (rho = ||x||, effective LR = eta/rho^2, Lobacheva et al., Sec. 2).
  In a pre-activation ResNet the second conv of a block, the stem and the shortcut convs are SI
  only jointly (they feed the residual sum). Candidates are the trainable weight tensors
  (ndim >= 2, i.e. conv kernels and linear matrices) plus every individually SI parameter;
  a joint test on all of them either passes, or the candidate whose removal makes the rest
  pass (greedy, smallest remaining violation first) is dropped until it does.

A joint test rescales one parameter of a wrapper module that holds the whole group as a
single flat vector, so the detector itself is reused, not copied.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from nets.monitor.calls import PREFIX, ExampleBatchError, ModelCall
from theory.invariance import find_scale_invariant_params

__all__ = ["SIGroups", "NoSIParameters", "find_si_groups", "joint_si_violation", "resolve_si_groups"]


class NoSIParameters(ValueError):
    """A model has no scale-invariant parameters (that the optimizer trains)."""


@dataclass
class SIGroups:
    """Result of :func:`find_si_groups`; names in ``model.named_parameters()`` order."""

    si: list[str]                                  # the jointly SI group (the theory's x)
    individual: list[str]                          # SI on their own (a subset of ``si``)
    other: list[str]                               # trainable, not in ``si``
    frozen: list[str] = field(default_factory=list)  # requires_grad == False
    inert: list[str] = field(default_factory=list)   # no effect on the output at all (in ``other``)

    def to_dict(self) -> dict:
        return {"si": self.si, "individual": self.individual, "other": self.other,
                "frozen": self.frozen, "inert": self.inert,
                "joint_only": [n for n in self.si if n not in self.individual]}


class _GroupView(nn.Module):
    """``model`` with the parameters ``names`` replaced by slices of one flat parameter."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        params = dict(model.named_parameters())
        self.names = list(names)
        self.shapes = [params[n].shape for n in names]
        self.sizes = [params[n].numel() for n in names]
        self.group = nn.Parameter(torch.cat([params[n].detach().reshape(-1) for n in names]).clone())
        self.inner = model
        for p in self.inner.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(self.group, self.sizes)
        repl = {n: c.view(s) for n, c, s in zip(self.names, chunks, self.shapes)}
        return torch.func.functional_call(self.inner, repl, (x,))


def _float64_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float64)


def _jointly_si(model: nn.Module, names: list[str], inputs: torch.Tensor, **kw) -> bool:
    view = _GroupView(_float64_copy(model), names)
    return find_scale_invariant_params(view, inputs, **kw) == ["group"]


def _output_change(model: nn.Module, inputs: torch.Tensor, edit) -> float:
    """Relative change of the float64, train-mode, eps-free-BN output when ``edit(params)``
    modifies the parameters of a copy of ``model`` in place."""
    m = _float64_copy(model).train()
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._NormBase):
            mod.eps = 1e-12
    x = inputs.detach().to("cpu", torch.float64)
    with torch.no_grad():  # train-mode BN: the output does not depend on the running stats
        base = m(x)
        edit(dict(m.named_parameters()))
        out = m(x)
    return float((out - base).norm() / base.norm().clamp_min(1e-300))


def joint_si_violation(model: nn.Module, names: list[str], inputs: torch.Tensor,
                       alpha: float = 3.0) -> float:
    """Relative output change when ``names`` are scaled jointly by ``alpha``: 0 for a jointly
    SI group, O(1) otherwise (diagnostics, and the order of the greedy search)."""
    def scale(params):
        for n in names:
            params[n].mul_(alpha)
    return _output_change(model, inputs, scale)


def _is_inert(model: nn.Module, name: str, inputs: torch.Tensor, rtol: float) -> bool:
    """True when replacing the parameter by unrelated noise leaves the output unchanged (e.g. the
    bias of a BN whose output only reaches a later BN as a per-channel constant): such a
    parameter is trivially "SI" and has zero gradient, so it is kept out of the SI group."""
    def replace(params):
        p = params[name]
        g = torch.Generator().manual_seed(1)
        p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * (p.norm() / p.numel() ** 0.5 + 1))
    return _output_change(model, inputs, replace) <= rtol


def _generic_point(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy with every all-zero trainable tensor (e.g. BN biases at init) set to small noise.

    Invariance must hold whatever the other parameters are; at ``beta = 0`` a BN's ``gamma`` is
    accidentally SI (ReLU is positively homogeneous), which a generic point rules out.
    """
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad and not p.detach().abs().sum() > 0:
                p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device))
    return m


def find_si_groups(model: nn.Module, inputs=None, *, rtol: float = 1e-6, args: tuple | None = None,
                   output=None) -> SIGroups:
    """Split the model's parameters into the SI group, the other trainable ones and frozen ones.

    ``inputs`` is a small batch (a few images; BN needs more than one): a tensor, a dict of keyword
    inputs, or a loader's ``(inputs, targets)`` pair; several positional inputs go in ``args``.
    ``output`` picks the output to test when the model returns a dict or tuple (default: all its
    floating-point tensors). Dropout is off during the tests (:mod:`nets.monitor.calls`). The
    model is not modified; the tests run on a copy at a generic point (:func:`_generic_point`).
    See the module docstring for the procedure. Raises
    :class:`nets.monitor.calls.ExampleBatchError` (one line) when the model cannot run on the batch.
    """
    call = ModelCall.wrap(model, inputs, args=args, output=output)
    threads = torch.get_num_threads()
    if sum(p.numel() for p in model.parameters()) < 1_000_000:
        torch.set_num_threads(1)  # small float64 tests: extra threads only add contention
    try:
        groups = _find_si_groups(_generic_point(call), torch.zeros(1), rtol)
    finally:
        torch.set_num_threads(threads)
    strip = lambda names: [n[len(PREFIX):] for n in names]   # noqa: E731 -- the wrapper's prefix
    return SIGroups(si=strip(groups.si), individual=strip(groups.individual), other=strip(groups.other),
                    frozen=strip(groups.frozen), inert=strip(groups.inert))


def _find_si_groups(model: nn.Module, inputs: torch.Tensor, rtol: float) -> SIGroups:
    named = list(model.named_parameters())
    frozen = [n for n, p in named if not p.requires_grad]
    trainable = [n for n, p in named if p.requires_grad]
    found = find_scale_invariant_params(model, inputs, rtol=rtol)
    inert = [n for n in found if _is_inert(model, n, inputs, rtol)]
    individual = [n for n in found if n not in inert]
    cand = [n for n, p in named if p.requires_grad and (p.dim() >= 2 or n in individual)]
    while cand and not _jointly_si(model, cand, inputs, rtol=rtol):
        droppable = [n for n in cand if n not in individual]
        if not droppable:
            break
        scores = [(joint_si_violation(model, [m for m in cand if m != n], inputs), n) for n in droppable]
        cand.remove(min(scores)[1])
    si = cand if cand and _jointly_si(model, cand, inputs, rtol=rtol) else list(individual)
    return SIGroups(si=[n for n in trainable if n in si], individual=individual,
                    other=[n for n in trainable if n not in si], frozen=frozen, inert=inert)


def resolve_si_groups(model: nn.Module, example_batch, si_groups, example_args=None, output=None) -> SIGroups:
    """The SI groups of :class:`nets.SIMonitor`: ``si_groups`` as given (an :class:`SIGroups`, or
    parameter names each taken as individually SI), else found by testing on the example inputs."""
    if isinstance(si_groups, SIGroups):
        return si_groups
    named = dict(model.named_parameters())
    if si_groups is not None:                    # names given by the caller
        names = list(si_groups)
        unknown = [n for n in names if n not in named]
        if unknown:
            raise ValueError(f"SIMonitor: {unknown} are not parameters of the model")
        return SIGroups(si=names, individual=names, other=[n for n in named if n not in names])
    if example_batch is None and example_args is None:
        raise ValueError("SIMonitor needs example_batch (a few training inputs) to find the scale-invariant "
                         "parameters by testing, or si_groups=[parameter names]")
    try:
        return find_si_groups(model, example_batch, args=example_args, output=output)
    except ExampleBatchError as exc:
        raise ExampleBatchError(f"SIMonitor: {exc}") from None
