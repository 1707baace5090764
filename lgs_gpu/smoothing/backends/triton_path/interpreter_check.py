"""Whether Triton's interpreter (``TRITON_INTERPRET=1``) can run the LGS kernels here.

The kernels loop over rows with ``range(top, bottom)`` on program-dependent bounds. Triton 3.6's
interpreter converts such a bound with ``int()`` of a one-element array, which NumPy 2.4 and
later refuse ("only 0-dimensional arrays can be converted to Python scalars";
triton-lang/triton#9171, fixed in later Triton releases). A one-program probe kernel that loops
the same way tells, once per process, whether this Triton and NumPy can interpret them.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl


@triton.jit
def _probe_kernel(out_ptr):
    count = 0
    for _ in range(tl.program_id(0), 2):  # a loop bound that depends on the program, as the LGS walks have
        count += 1
    tl.store(out_ptr, count)


@functools.lru_cache(maxsize=1)
def interpreter_unusable_reason() -> str | None:
    """Why interpreted kernels cannot run in this process, or ``None`` (call only under ``TRITON_INTERPRET=1``)."""
    import numpy

    out = torch.zeros(1, dtype=torch.int32)
    try:
        _probe_kernel[(1,)](out)
    except Exception as error:  # the interpreter wraps what failed in InterpreterError
        return (
            f"the Triton {triton.__version__} interpreter cannot run these kernels with NumPy {numpy.__version__} "
            f"({error}; triton-lang/triton#9171): compiled kernels on CUDA are not affected"
        )
    if int(out[0]) != 2:
        return f"the Triton {triton.__version__} interpreter ran a two-step loop {int(out[0])} times"
    return None
