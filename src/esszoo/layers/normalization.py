"""Batch norm with its statistics and affine values fixed: the detectors' backbone norm.

A detector trains on a few images per batch, too few for batch statistics; DETR (Carion et
al. 2020, section 4, as Faster R-CNN before it) therefore keeps the batch norms of its
ImageNet-trained backbone frozen: y = (x - mean) / sqrt(var + eps) * weight + bias with all
four held as buffers, neither updated nor trained. `freeze_batch_norm` swaps every
``nn.BatchNorm2d`` of a network for one, keeping its values.
"""

from __future__ import annotations

import torch
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """``nn.BatchNorm2d`` in eval mode for good: four buffers and no parameters."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # a trained nn.BatchNorm2d's state (`init_from` a classifier) also counts its batches
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one scale and one shift per channel: (batch, C, H, W) -> (batch, C, H, W)
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None].to(x.dtype) + shift[None, :, None, None].to(x.dtype)


def freeze_batch_norm(net: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` of `net` (in place) by a `FrozenBatchNorm2d` holding
    its statistics and affine values."""
    for name, child in net.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, child.eps)
            for buffer in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, buffer).copy_(getattr(child, buffer).detach())
            setattr(net, name, frozen)
        else:
            freeze_batch_norm(child)
    return net
