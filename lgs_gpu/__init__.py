"""lgs_gpu: Local Gradients Smoothing (Naseer et al., WACV 2019) as fused GPU kernels.

Example:
    >>> import torch, lgs_gpu
    >>> defended = lgs_gpu.lgs(torch.rand(8, 3, 299, 299))
"""

from .lgs import BACKENDS, LocalGradientsSmoothing, lgs, lgs_map

__version__ = "0.1.0"
__all__ = ["BACKENDS", "LocalGradientsSmoothing", "lgs", "lgs_map", "__version__"]
