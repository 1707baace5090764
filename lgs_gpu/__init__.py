"""lgs_gpu: Local Gradients Smoothing (Naseer et al., WACV 2019) as fused GPU kernels.

The LGS front (:mod:`lgs_gpu.smoothing`) is exported here; the baseline defenses live in
:mod:`lgs_gpu.defenses`, the attacks in :mod:`lgs_gpu.attacks`, models and images in
:mod:`lgs_gpu.models` and :mod:`lgs_gpu.data`, and the evaluation in :mod:`lgs_gpu.evaluate`.

Importing the package imports nothing heavy: the LGS names load :mod:`lgs_gpu.smoothing` (and with it
torch and the operators ``torch.ops.lgs_gpu.*``) when first used, so that ``lgs-gpu --help``
answers without importing torch. Load a saved ``torch.export`` program that holds LGS after
``import lgs_gpu.smoothing.operators``, which registers the operators.

Example:
    >>> import torch, lgs_gpu
    >>> defended = lgs_gpu.lgs(torch.rand(8, 3, 299, 299))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core.parameters import (
    BACKENDS,
    DEFAULT_OVERLAP,
    DEFAULT_SMOOTHING_FACTOR,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW_SIZE,
    STAGES,
)

if TYPE_CHECKING:
    from .smoothing import (
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

__version__ = "0.1.0"
__all__ = [
    "BACKENDS",
    "DEFAULT_OVERLAP",
    "DEFAULT_SMOOTHING_FACTOR",
    "DEFAULT_THRESHOLD",
    "DEFAULT_WINDOW_SIZE",
    "STAGES",
    "LGSStages",
    "LocalGradientsSmoothing",
    "backend_info",
    "compiled_cache_info",
    "lgs",
    "lgs_map",
    "lgs_stages",
    "lgs_sweep",
    "warmup",
    "__version__",
]
# The public names not bound by now come from .smoothing, loaded on first use.
_FROM_LGS = frozenset(__all__).difference(globals())


def __getattr__(name: str) -> Any:
    if name in _FROM_LGS:
        value = getattr(importlib.import_module(".smoothing", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
