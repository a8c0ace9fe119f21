r"""Mixed precision of the training step: bf16 autocast around the forward pass and the loss.

``precision="bf16"`` runs the model's forward and the loss under
``torch.autocast(device_type, dtype=torch.bfloat16)``: convolutions and matrix products compute in
bfloat16 (8 bits of mantissa), everything else as autocast decides. Master weights, their
gradients, weight decay, the optimizer state, BatchNorm running statistics, checkpoints and every
measurement (norms, angles, effective LR, sharpness probes, evaluations) stay float32: the
parameters are never cast in place, only the copies autocast makes for a kernel.

The scale-invariance identity :math:`\langle\nabla f(x), x\rangle = 0` holds only to bf16
round-off under autocast (cos ~1e-4 instead of ~1e-7 in float32); whether that moves the periodic
dynamics is measured, not assumed (docs/measurements.md, "bf16").
"""
from __future__ import annotations

import contextlib

import torch

from theory.dynamics import next_sq_norm

__all__ = ["autocast", "check_precision", "identity_residuals"]


def check_precision(precision: str, device: torch.device) -> None:
    """Raise ``ValueError`` (one line) if ``device`` cannot run ``precision``."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"bf16 needs a GPU that supports it; {torch.cuda.get_device_name(device)} does not "
                         "(use --precision fp32)")
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"bf16 autocast is supported here on cpu and cuda only, not {device.type}")


def autocast(precision: str, device: torch.device):
    """The context for the forward pass and loss: bf16 autocast, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def identity_residuals(trainer, steps: int = 20) -> dict:
    r"""How exactly the SI identities hold in ``trainer``'s precision, over its next ``steps`` steps.

    Per step :math:`t` and SI tensor: :math:`\cos(g, x) = \langle g, x\rangle/(\|g\|\|x\|)` of the
    gradient the step used (0 for exact scale invariance); per step the relative residual of the
    norm recurrence of plain SGD + WD (Lobacheva et al., 2021, Eq. (3), :func:`theory.dynamics.next_sq_norm`;
    exact when :math:`g\perp x`),

    .. math:: r_t = \bigl|\rho_{t+1}^2 - (1-\eta\lambda)^2\rho_t^2 - \eta^2\|g_t\|^2\bigr| / \rho_{t+1}^2 .

    Trains the trainer on (momentum 0 is assumed). Returns ``cos`` (steps x tensors) and
    ``recurrence_residual`` (steps), as numpy arrays, and ``names`` of the SI tensors."""
    import numpy as np

    params = trainer.watch.params
    eta, lam = trainer.config.lr, trainer.config.wd_si
    cos, resid = [], []
    for _ in range(steps):
        x = [p.detach().double().clone() for p in params]
        trainer.step()
        with torch.no_grad():
            g = [p.grad.double() for p in params]
            x_new = torch.cat([p.detach().double().reshape(-1) for p in params])
            cos.append([float((a * b).sum() / (a.norm() * b.norm())) for a, b in zip(g, x)])
            rho2 = sum(float((a * a).sum()) for a in x)
            g2 = sum(float((b * b).sum()) for b in g)
            new2 = float(x_new @ x_new)
            resid.append(abs(new2 - next_sq_norm(rho2, g2, eta, lam)) / new2)
    return {"cos": np.array(cos), "recurrence_residual": np.array(resid), "names": list(trainer.groups.si)}
