"""How the monitor runs anyone's model on an example batch: any inputs, any outputs, no dropout noise.

The scale-invariance test (:mod:`nets.monitor.si`) compares the model's output before and after a
rescaling, so it needs a call ``inputs -> one tensor`` that is deterministic and keeps BatchNorm in
train mode. :class:`ModelCall` wraps the model into exactly that:

* **inputs** -- a tensor (``model(x)``), a dict (``model(**kwargs)``) or a tuple of positional inputs
  (``model(*args)``); tensors among them are buffers of the wrapper, so they follow its copies
  to float64 (integer inputs such as token ids stay integers);
* **outputs** -- a tensor; or a dict, tuple, list or dataclass-like output (e.g. a Hugging Face
  ``ModelOutput``), of which ``output`` picks one entry (a key, an index or a callable), or by
  default all floating-point tensors, flattened and joined: the output is unchanged exactly when
  every one of them is;
* **dropout** -- :data:`DROPOUT` modules stay in eval mode when the wrapper is put in train mode
  (random masks would make every test fail); normalisation layers keep train mode. The user's
  model itself is never touched: the tests run on deep copies.

A batch that the model cannot run in train mode (BatchNorm needs more than one value per channel)
raises :class:`ExampleBatchError`, one line that names the problem.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

__all__ = ["ModelCall", "ExampleBatchError", "DROPOUT", "PREFIX"]

#: module types kept in eval mode by the scale-invariance test
DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
#: prefix of the model's parameter names inside the wrapper
PREFIX = "model."


class _Stored:
    """A tensor input kept as the wrapper's buffer ``name``."""

    def __init__(self, name: str):
        self.name = name


class ExampleBatchError(ValueError):
    """The model cannot be run on the example batch as the SI test needs (one line: why, and what to give)."""


def _floating_leaves(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, dict):
        return [t for v in out.values() for t in _floating_leaves(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _floating_leaves(v)]
    if hasattr(out, "__dataclass_fields__"):
        return [t for k in out.__dataclass_fields__ for t in _floating_leaves(getattr(out, k))]
    return []


def select_output(out: Any, output: str | int | Callable | None = None) -> torch.Tensor:
    """One tensor from a model's output: ``output`` (a key, an index or a callable) or, by default,
    every floating-point tensor in it, flattened and concatenated."""
    if callable(output):
        out = output(out)
    elif output is not None:
        try:
            out = out[output]
        except (KeyError, IndexError, TypeError):
            raise ExampleBatchError(f"the model's output has no entry {output!r} (output=...)") from None
    leaves = _floating_leaves(out)
    if not leaves:
        raise ExampleBatchError(f"the model's output ({type(out).__name__}) holds no floating-point tensor; "
                                "pass output=<key, index or function> to pick the one to test")
    return leaves[0] if len(leaves) == 1 else torch.cat([t.reshape(-1) for t in leaves])


class ModelCall(nn.Module):
    """``model`` run on stored example inputs; ``forward`` ignores its argument and returns one tensor."""

    def __init__(self, model: nn.Module, args: tuple = (), kwargs: dict | None = None, output=None):
        super().__init__()
        self.model = model
        self.output = output
        self._args = [self._store(f"arg{i}", a) for i, a in enumerate(args)]
        self._kwargs = {k: self._store(f"kw_{k}", v) for k, v in (kwargs or {}).items()}

    def _store(self, name: str, value):
        if isinstance(value, torch.Tensor):
            self.register_buffer(name, value.detach().clone(), persistent=False)
            return _Stored(name)
        return value

    def _value(self, slot):
        return getattr(self, slot.name) if isinstance(slot, _Stored) else slot

    def forward(self, _ignored=None) -> torch.Tensor:
        args = [self._value(s) for s in self._args]
        kwargs = {k: self._value(s) for k, s in self._kwargs.items()}
        return select_output(self.model(*args, **kwargs), self.output)

    def train(self, mode: bool = True) -> "ModelCall":
        super().train(mode)
        for m in self.modules():
            if isinstance(m, DROPOUT):
                m.eval()
        return self

    @classmethod
    def wrap(cls, model: nn.Module, example, *, args: tuple | None = None, output=None) -> "ModelCall":
        """The call for ``example`` (a tensor, a dict of keyword inputs, or a loader's ``(inputs,
        targets)`` pair whose first element is one of those) or for positional ``args``, checked by
        one train-mode forward pass on a copy."""
        if args is None:
            if isinstance(example, (tuple, list)):
                example = example[0]
            if isinstance(example, dict):
                call = cls(model, kwargs=example, output=output)
            elif isinstance(example, torch.Tensor):
                call = cls(model, args=(example,), output=output)
            else:
                raise ExampleBatchError(f"example_batch must be a tensor, a dict of inputs or an (inputs, targets) "
                                        f"pair, got {type(example).__name__}; several positional inputs: "
                                        "example_args=(x1, x2)")
        else:
            call = cls(model, args=tuple(args), output=output)
        call.check()
        return call

    def check(self) -> None:
        """One train-mode forward pass in float64 on a copy; a failure becomes :class:`ExampleBatchError`."""
        import copy

        probe = copy.deepcopy(self).to(device="cpu", dtype=torch.float64).train()
        try:
            with torch.no_grad():
                probe()
        except ExampleBatchError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any failure of the user's model, said in one line
            hint = ""
            if "more than 1 value per channel" in str(exc):             # torch's BatchNorm error
                hint = ("; BatchNorm in train mode needs at least 2 samples per batch: give a few training "
                        "inputs (e.g. x[:8])")
            raise ExampleBatchError(f"cannot run {type(self.model).__name__} on the example batch "
                                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}){hint}") \
                from None
