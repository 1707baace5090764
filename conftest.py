"""Settled before pytest collects anything (tests and the package's docstring examples alike).

The Triton kernels run interpreted on CPU tensors in this suite: ``TRITON_INTERPRET`` must be
set before the module defining them is imported, which collecting ``lgs_gpu``'s doctests does.
The CUDA tier (``tests/test_cuda.py``) needs them compiled: it runs in its own process with
``LGS_GPU_CUDA_TIER=1``, which keeps the interpreter off. Modules whose optional extra is not
installed are not collected for doctests.

The compiled CPU path's program cache is off for the suite (``LGS_GPU_CACHE_DIR=off``), so
``backend="auto"`` runs eager torch on CPU here: the suite's many window sizes would each build a
program. ``tests/test_lgs_compiled.py`` turns a temporary cache on and tests the default path.
"""

import importlib.util
import os
import sys
from pathlib import Path

if os.environ.get("LGS_GPU_CUDA_TIER") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")

os.environ["LGS_GPU_CACHE_DIR"] = "off"

# The measurement code (the traffic model, CPU references, the compile-only preflight, bench) lives in
# benchmarks/, out of the wheel; the tests import it from there.
sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))

collect_ignore = ["lgs_gpu/__main__.py", "setup.py"]  # running them is their whole effect
_EXTRAS = {
    "triton": [f"lgs_gpu/smoothing/backends/triton_path/{name}.py" for name in ("kernels", "occupancy")],
    "art": ["lgs_gpu/integrations/art.py"],
}
for _module, _paths in _EXTRAS.items():
    if importlib.util.find_spec(_module) is None:
        collect_ignore += _paths
