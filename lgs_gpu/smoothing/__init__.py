"""Local Gradients Smoothing, the package's one front for it.

* :mod:`.front`: ``lgs``, ``lgs_map``, ``lgs_stages``, from a call to its path;
* :mod:`.routing`: the routing table, which backend runs a call and why (``backend_info``);
* :mod:`.operators`: LGS as PyTorch operators for compilers; import it before ``torch.export.load``
  of a program that holds LGS;
* :mod:`.module`: :class:`LocalGradientsSmoothing`, the ``nn.Module`` and transform;
* :mod:`.sweep`: ``lgs_sweep``, a (λ, γ) grid from one gradient; :mod:`.programs`: ``warmup`` and
  ``compiled_cache_info`` for the compiled CPU path;
* :mod:`.backends`: the paths themselves, reached only through the modules above.
"""

from .front import LGSStages, lgs, lgs_map, lgs_stages
from .module import LocalGradientsSmoothing
from .programs import compiled_cache_info, warmup
from .routing import backend_info
from .sweep import lgs_sweep

__all__ = [
    "LGSStages",
    "LocalGradientsSmoothing",
    "backend_info",
    "compiled_cache_info",
    "lgs",
    "lgs_map",
    "lgs_stages",
    "lgs_sweep",
    "warmup",
]
