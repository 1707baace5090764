"""Bit-depth reduction: each value rounded to ``2**bits`` evenly spaced levels in [0, 1].

``round(x * (2**bits - 1)) / (2**bits - 1)`` exactly, rounding half to even like numpy (and
``torch.round``), computed in float32 (float64 for float64 input).
"""

from __future__ import annotations

import torch

from ._common import FunctionDefense, apply_defense, integer_parameter

PAPER_BITS = (1, 2, 3)


def bit_depth(x: torch.Tensor, bits: int = 3) -> torch.Tensor:
    """Reduce images to ``bits`` bits per channel (1..8).

    Args:
        x: ``[B, C, H, W]`` or ``[C, H, W]``, float in [0, 1] or uint8; any device.
        bits: bits kept per channel value.
    Returns:
        Same shape, dtype and device. Its gradient is zero almost everywhere: listed as
        not differentiable (attack it with BPDA).

    Example:
        >>> bit_depth(torch.tensor([[[0.0, 0.2, 0.5, 0.9]]]), bits=1)
        tensor([[[0., 0., 0., 1.]]])
    """
    levels = 2 ** integer_parameter(bits, "bits", 1, 8) - 1
    return apply_defense(x, lambda batch: torch.round(batch * levels) / levels, differentiable=False)


class BitDepth(FunctionDefense):
    """:func:`bit_depth` as a module / transform. Example: ``BitDepth(3)(torch.rand(2, 3, 8, 8))``."""

    name = "bitdepth"
    differentiable = False
    _function = staticmethod(bit_depth)
    _arguments = ("bits",)

    def __init__(self, bits: int = 3) -> None:
        super().__init__()
        self.bits = integer_parameter(bits, "bits", 1, 8)
