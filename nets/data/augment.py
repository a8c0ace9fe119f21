"""Vectorised batch pipeline on the device: shuffling, random crop + flip, normalisation.

The standard CIFAR augmentation of the paper's code (torchvision ``RandomCrop(32, padding=4)``
then ``RandomHorizontalFlip()``, ``docs/paper_setup.md``) is done here for a whole batch at once with one
gather, with random numbers drawn from a ``torch.Generator`` on the data's device -- so no
per-image Python, no host round trip, and a generator state that checkpoints can save.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_crop_flip", "EpochSampler"]


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator | None = None,
                     flip: bool = True) -> torch.Tensor:
    """Random crop of the original size from the zero-padded batch, then a random h-flip.

    Parameters
    ----------
    x : tensor, shape (B, C, H, W)
        Raw images (zero padding = black, as in torchvision when applied before ``Normalize``).
    pad : int
        Padding on every side; offsets are uniform in ``[0, 2*pad]`` per image and axis.
    generator : torch.Generator, optional
        Source of randomness (must live on ``x.device``).
    flip : bool
        Also flip each image left-right with probability 1/2.
    """
    b, _, h, w = x.shape
    out = x
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device, generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device, generator=generator)
        rows = (oy + torch.arange(h, device=x.device)).unsqueeze(2)   # B x H x 1
        cols = (ox + torch.arange(w, device=x.device)).unsqueeze(1)   # B x 1 x W
        idx = torch.arange(b, device=x.device).view(b, 1, 1)
        out = padded.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2)  # B x C x H x W
    if flip:
        mask = torch.rand(b, device=x.device, generator=generator) < 0.5
        out = torch.where(mask.view(b, 1, 1, 1), out.flip(3), out)
    return out.contiguous()


class EpochSampler:
    """Mini-batches of a tensor data set already on the device, reshuffled every epoch.

    One ``randperm`` per epoch on the device; a batch is an ``index_select`` of the images,
    optionally augmented and then normalised (``x * scale + shift``). With ``drop_last`` an
    epoch's incomplete last batch is dropped (``N // B`` batches per epoch); without, it is
    kept (``ceil(N / B)``, as a PyTorch ``DataLoader`` does by default; a last batch of a single
    image is refused: train-mode BN cannot normalise it). Its whole state is
    ``(perm, pos, generator state)``, see :meth:`state_dict`.
    """

    def __init__(self, x, y, batch_size: int, scale, shift, *, generator: torch.Generator,
                 augment: bool = False, pad: int = 4, drop_last: bool = True):
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.scale, self.shift = scale, shift
        self.generator = generator
        self.augment, self.pad = augment, pad
        n = x.shape[0]
        if not drop_last and n % self.batch_size == 1:
            raise ValueError(f"{n} training images at batch {self.batch_size} leave a last batch of one "
                             f"image, which train-mode BN cannot normalise; drop it or change the subset")
        self.batches_per_epoch = n // self.batch_size if drop_last else -(-n // self.batch_size)
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The next batch ``(x, y, starts_epoch)``; ``starts_epoch`` is True for a new permutation."""
        idx, new_epoch = self.next_indices()
        return (*self.batch(idx), new_epoch)

    def next_indices(self) -> tuple[torch.Tensor, bool]:
        """Advance by one batch: its indices into the training set (a view of the epoch's
        permutation, on the device) and whether it starts an epoch."""
        new_epoch = self.perm is None or self.pos >= self.batches_per_epoch
        if new_epoch:
            self.perm = torch.randperm(self.x.shape[0], device=self.x.device, generator=self.generator)
            self.pos = 0
        idx = self.perm[self.pos * self.batch_size:(self.pos + 1) * self.batch_size]
        self.pos += 1
        return idx, new_epoch

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (augmented if asked, then normalised) and labels at ``idx``."""
        xb = self.x.index_select(0, idx)
        if self.augment:
            xb = random_crop_flip(xb, self.pad, self.generator)
        return torch.addcmul(self.shift, xb, self.scale), self.y.index_select(0, idx)

    def state_dict(self) -> dict:
        return {"perm": None if self.perm is None else self.perm.cpu(), "pos": self.pos,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.perm = None if state["perm"] is None else state["perm"].to(self.x.device)
        self.pos = int(state["pos"])
        self.generator.set_state(state["generator"])
