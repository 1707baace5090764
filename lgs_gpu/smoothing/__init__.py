"""Local Gradients Smoothing, the package's one front for it.

* :mod:`.front`: ``lgs`` and ``lgs_map``, from a call to its path; :mod:`.stages`: ``lgs_stages``;
* :mod:`.routing`: the routing table, which backend runs a call and why;
* :mod:`.operators`: LGS as PyTorch operators for compilers; import it before ``torch.export.load``
  of a program that holds LGS;
* :mod:`.module`: :class:`LocalGradientsSmoothing`, the ``nn.Module`` and transform;
* :mod:`.sweep`: ``lgs_sweep``, a (λ, γ) grid from one gradient; :mod:`.programs`: ``backend_info``,
  and ``warmup`` and ``compiled_cache_info`` for the compiled CPU path;
* :mod:`.backends`: the paths themselves, reached only through the modules above.
"""

from .front import lgs, lgs_map
from .module import LocalGradientsSmoothing
from .programs import backend_info, compiled_cache_info, warmup
from .stages import LGSStages, lgs_stages
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
