"""One cached gate for the Triton path: can Triton run on this tensor?

Triton runs on CUDA tensors when ``import triton`` works and ``LGS_GPU_DISABLE_TRITON`` is not
set to ``1``. Under ``TRITON_INTERPRET=1`` (set before this package is imported) the kernels
run on CPU tensors too, which is how the test-suite checks them without a GPU.
"""

from __future__ import annotations

import functools
import os

import torch

DISABLE_VARIABLE = "LGS_GPU_DISABLE_TRITON"


@functools.lru_cache(maxsize=1)
def triton_import_error() -> str | None:
    """Why Triton cannot be used at all (import failure or override), or ``None`` if it can."""
    if os.environ.get(DISABLE_VARIABLE) == "1":
        return f"disabled by {DISABLE_VARIABLE}=1"
    try:
        from . import kernels  # noqa: F401  (imports triton and defines the kernels)
    except Exception as error:  # ImportError, or a triton that fails to initialise
        return f"triton could not be imported: {error}"
    return None


def interpreting() -> bool:
    """True when Triton kernels are interpreted on the CPU (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def triton_unusable_reason(x: torch.Tensor) -> str | None:
    """Why the Triton path cannot run on ``x``, or ``None`` when it can."""
    error = triton_import_error()
    if error is not None:
        return error
    if x.is_cuda:
        return None
    if interpreting() and x.device.type == "cpu":
        from .interpreter_check import interpreter_unusable_reason

        return interpreter_unusable_reason()
    return f"the Triton kernels need a CUDA tensor (or TRITON_INTERPRET=1 for CPU tensors); got a tensor on {x.device}"
