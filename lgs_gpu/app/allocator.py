"""How a command's process allocates memory: glibc's malloc tuned for large tensors, or left alone.

On Linux with glibc, every allocation above the mmap threshold (32 MiB at most, and most tensor
buffers are larger) is a fresh ``mmap``; the kernel zero-fills each of its pages on first touch and
``free`` gives them back, so a loop over batches pays a page fault per 4 KiB per step. On machines
where a page fault is expensive (virtual machines, most cloud hosts) that costs more than the
arithmetic: the model forward of ``lgs-gpu evaluate`` spent more time in the kernel than in user
code. PyTorch's CPU tuning guide suggests jemalloc or tcmalloc (through ``LD_PRELOAD``, before the
process starts); in-process, glibc can be told the same thing:

* ``M_MMAP_MAX = 0``: large blocks come from the heap, not from fresh mappings;
* ``M_TRIM_THRESHOLD = 1 GiB``: freed memory stays with the process for the next batch;
* ``M_TOP_PAD = 256 MiB``: the heap grows in large steps.

The commands apply this at start (``tuned``, the default); ``--allocator system`` or
``LGS_GPU_ALLOCATOR=system`` keeps glibc's defaults. A library must not change its host's allocator,
so ``import lgs_gpu`` never does: programs that use it can set ``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=268435456`` in their environment, or preload
jemalloc (docs/benchmarks.md measures each).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

ENVIRONMENT_VARIABLE = "LGS_GPU_ALLOCATOR"
CHOICES = ("tuned", "system")
# glibc's mallopt parameters (malloc.h) and the values "tuned" sets.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
TUNED = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 256 << 20))
_PRELOADED = ("jemalloc", "tcmalloc", "mimalloc")

_in_effect = "glibc defaults (not configured by this process)"


def requested(flag: str | None = None) -> str:
    """The allocator setting asked for: ``--allocator``, else ``LGS_GPU_ALLOCATOR``, else ``tuned``."""
    choice = (flag or os.environ.get(ENVIRONMENT_VARIABLE, "") or "tuned").strip().lower()
    if choice not in CHOICES:
        source = "--allocator" if flag else ENVIRONMENT_VARIABLE
        raise ValueError(f"{source} must be one of {', '.join(CHOICES)}. Got {choice!r}")
    return choice


def preloaded() -> str | None:
    """The allocator ``LD_PRELOAD`` put in place of malloc (jemalloc, tcmalloc, mimalloc), or ``None``."""
    for entry in os.environ.get("LD_PRELOAD", "").replace(":", " ").split():
        name = os.path.basename(entry)
        for allocator in _PRELOADED:
            if allocator in name:
                return f"{allocator} ({entry}, through LD_PRELOAD)"
    return None


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        library = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return library if hasattr(library, "mallopt") else None


def configure(flag: str | None = None) -> str:
    """Apply the allocator setting to this process; returns what is in effect (for ``lgs-gpu info``).

    Example:
        >>> configure("system")
        'glibc defaults (allocator: system)'
    """
    global _in_effect
    choice = requested(flag)
    other = preloaded()
    if other is not None:
        _in_effect = other  # it replaces malloc: mallopt would tune a malloc nobody calls
    elif choice == "system":
        _in_effect = "glibc defaults (allocator: system)"
    else:
        glibc = _glibc()
        if glibc is None:
            _in_effect = f"the platform's malloc ({platform.system()}, not glibc: nothing to tune)"
        elif all(glibc.mallopt(parameter, value) == 1 for parameter, value in TUNED):
            _in_effect = "glibc tuned for large tensors (M_MMAP_MAX=0, M_TRIM_THRESHOLD=1 GiB, M_TOP_PAD=256 MiB)"
        else:
            _in_effect = "glibc defaults (mallopt refused the tuned setting)"
    return _in_effect


def in_effect() -> str:
    """What :func:`configure` put in place in this process (or that nothing did)."""
    return _in_effect
