"""A pytest plugin for the CUDA-tier preflight: what the tier's own process collects, and with which kernels.

``python -m pytest --collect-only -p tier_probe ...`` writes ``$LGS_GPU_TIER_PROBE`` (JSON) after
collection: the test count, ``TRITON_INTERPRET`` as the tests see it, and whether the Triton
kernels were defined compiled (``JITFunction``) or interpreted.
"""

import json
import os


def pytest_collection_finish(session):
    from lgs_gpu.smoothing.backends.triton_path import kernels

    probe = {
        "collected": len(session.items),
        "names": [item.nodeid for item in session.items],
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET"),
        "kernel_types": sorted({type(getattr(kernels, name)).__name__ for name in dir(kernels) if name.endswith("_kernel")}),
    }
    with open(os.environ["LGS_GPU_TIER_PROBE"], "w", encoding="utf-8") as handle:
        json.dump(probe, handle)
