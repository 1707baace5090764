"""JPEG compression as a defense: encode at a quality, decode, continue with the decoded pixels.

Checked against Pillow (``Image.save(format="JPEG", quality=q)`` with its default 4:2:0 chroma
subsampling, then ``Image.open``): on CPU this uses torchvision's libjpeg-turbo codec and the
bytes come out identical to Pillow's; on CUDA, torchvision's nvJPEG codec (batched, on the GPU),
whose output is close to but not byte-identical with libjpeg's.
"""

from __future__ import annotations

import torch

from ..core.parameters import OPERATOR_NAMESPACE
from ..core.validate import from_unit_float, to_unit_float
from ._common import FunctionDefense, apply_defense, integer_parameter, refuse_onnx

PAPER_QUALITIES = (80, 60, 40, 30, 20, 10)


def _check_channels(batch: torch.Tensor):
    channels = batch.shape[1]
    if channels != 1 and channels != 3:  # compared, not looked up: a traced channel count is symbolic
        raise ValueError(f"JPEG encodes 1 (grayscale) or 3 (RGB) channels. Got {channels} channels")
    return channels


# An operator, so that tracers keep it as one opaque node (torch.export, torch.compile,
# AOTInductor) instead of stepping into the codec, which they cannot trace.
@torch.library.custom_op(f"{OPERATOR_NAMESPACE}::jpeg", mutates_args=())
def _compress(batch: torch.Tensor, quality: int) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg  # here: importing torchvision takes 1.5 s

    channels = _check_channels(batch)
    pixels = from_unit_float(batch, torch.uint8)  # JPEG codes 8-bit samples: floats are quantised first
    encoded = encode_jpeg(list(pixels.contiguous().unbind(0)), quality=quality)
    decoded = decode_jpeg(
        [data.cpu() for data in encoded],
        mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB,
        device=batch.device,
    )
    return to_unit_float(torch.stack(decoded)).to(batch.dtype)


@_compress.register_fake
def _(batch: torch.Tensor, quality: int) -> torch.Tensor:
    _check_channels(batch)
    return torch.empty_like(batch, memory_format=torch.contiguous_format)


def jpeg(x: torch.Tensor, quality: int = 30) -> torch.Tensor:
    """JPEG-compress and decompress images at ``quality`` (1..100), as Pillow does.

    Args:
        x: ``[B, C, H, W]`` or ``[C, H, W]`` images with 1 or 3 channels, float in [0, 1]
            (quantised to 8 bits before encoding) or uint8; CPU or CUDA.
        quality: JPEG quality, 1 (worst) to 100.
    Returns:
        Same shape, dtype and device. Not differentiable (attack it with BPDA).

    Example:
        >>> jpeg(torch.rand(2, 3, 32, 32), quality=30).shape
        torch.Size([2, 3, 32, 32])
    """
    quality = integer_parameter(quality, "quality", 1, 100)
    refuse_onnx("jpeg", "ONNX has no JPEG encoder or decoder operator")
    return apply_defense(x, lambda batch: _compress(batch, quality), differentiable=False)


class JPEG(FunctionDefense):
    """:func:`jpeg` as a module / transform. Example: ``JPEG(30)(torch.rand(2, 3, 32, 32))``."""

    name = "jpeg"
    differentiable = False
    _function = staticmethod(jpeg)
    _arguments = ("quality",)

    def __init__(self, quality: int = 30) -> None:
        super().__init__()
        self.quality = integer_parameter(quality, "quality", 1, 100)
