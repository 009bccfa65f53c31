"""``--input-image-padding``: the first convolution takes 4 channels, the 4th being zeros.

On IPUs a 4-channel input maps onto the tiles better than 3 channels; the results are the same,
since the 4th channel's weights multiply zeros.
"""
from __future__ import annotations

import torch
from torch import nn


class PaddedConv(nn.Conv2d):
    """A copy of a 3-channel conv that pads its input with a zero 4th channel."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv.in_channels + 1, conv.out_channels, conv.kernel_size, stride=conv.stride,
                         padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                         bias=conv.bias is not None, padding_mode=conv.padding_mode,
                         device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            self.weight.zero_()
            self.weight[:, :conv.in_channels] = conv.weight
            if conv.bias is not None:
                self.bias.copy_(conv.bias)
        # efficientnet_pytorch's stem pads 'same' before its convolution
        self.same_padding = getattr(conv, "static_padding", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zeros = x.new_zeros((x.shape[0], 1, *x.shape[2:]))
        x = torch.cat((x, zeros), 1)
        if self.same_padding is not None:
            x = self.same_padding(x)
        return super().forward(x)


def pad_first_conv(model: nn.Module) -> str:
    """Replace the first 3-channel Conv2d of ``model`` by a PaddedConv; returns its path ('' if none)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3 and module.groups == 1:
            parent = model
            *parents, child = name.split(".")
            for part in parents:
                parent = getattr(parent, part)
            setattr(parent, child, PaddedConv(module))
            return name.replace(".", "/")
    return ""
