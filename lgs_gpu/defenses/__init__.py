"""The paper's baseline defenses, batched on any device, and their registry.

Every defense takes ``[B, C, H, W]`` or ``[C, H, W]`` images (float in [0, 1] or uint8) and
returns the same shape, dtype and device. Each is a function and an ``nn.Module`` /
torchvision v2 transform, and names the CPU library it agrees with (see :func:`available`).

Example:
    >>> import torch
    >>> from lgs_gpu import defenses
    >>> defenses.get("median:3")(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 3, 32, 32])
"""

from ..core.transform import ImageDefense
from ..smoothing import LocalGradientsSmoothing, lgs
from .bilateral import BilateralFilter, bilateral_filter
from .bit_depth import BitDepth, bit_depth
from .compose import Compose, LGSMaskedFilter
from .gaussian import GaussianFilter, gaussian_filter
from .jpeg import JPEG, jpeg
from .median import MedianFilter, median_filter
from .registry import DefenseInfo, Identity, available, get, paper_grid
from .tv import TVBregman, tv_bregman

__all__ = [
    "JPEG",
    "BilateralFilter",
    "BitDepth",
    "Compose",
    "DefenseInfo",
    "GaussianFilter",
    "Identity",
    "ImageDefense",
    "LGSMaskedFilter",
    "LocalGradientsSmoothing",
    "MedianFilter",
    "TVBregman",
    "available",
    "bilateral_filter",
    "bit_depth",
    "gaussian_filter",
    "get",
    "jpeg",
    "lgs",
    "median_filter",
    "paper_grid",
    "tv_bregman",
]
