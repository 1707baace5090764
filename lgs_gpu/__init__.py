"""lgs_gpu: Local Gradients Smoothing (Naseer et al., WACV 2019) as fused GPU kernels.

The LGS front (:mod:`lgs_gpu.lgs`) is exported here; the baseline defenses live in
:mod:`lgs_gpu.defenses`, the attacks in :mod:`lgs_gpu.attacks`, models and images in
:mod:`lgs_gpu.models` and :mod:`lgs_gpu.data`, and the evaluation in :mod:`lgs_gpu.evaluate`.

Example:
    >>> import torch, lgs_gpu
    >>> defended = lgs_gpu.lgs(torch.rand(8, 3, 299, 299))
"""

from .lgs import (
    BACKENDS,
    STAGES,
    LGSStages,
    LocalGradientsSmoothing,
    backend_info,
    compiled_cache_info,
    lgs,
    lgs_map,
    lgs_stages,
    lgs_sweep,
    warmup,
)
from .parameters import DEFAULT_OVERLAP, DEFAULT_SMOOTHING_FACTOR, DEFAULT_THRESHOLD, DEFAULT_WINDOW_SIZE

__version__ = "0.1.0"
__all__ = [
    "BACKENDS", "DEFAULT_OVERLAP", "DEFAULT_SMOOTHING_FACTOR", "DEFAULT_THRESHOLD", "DEFAULT_WINDOW_SIZE", "STAGES",
    "LGSStages", "LocalGradientsSmoothing", "__version__", "backend_info", "compiled_cache_info", "lgs", "lgs_map",
    "lgs_stages", "lgs_sweep", "warmup",
]  # fmt: skip
