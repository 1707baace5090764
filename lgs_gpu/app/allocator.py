"""How a command's process allocates memory: glibc's malloc tuned for large tensors, or left alone.

With glibc's defaults every tensor buffer above the mmap threshold (32 MiB at most) is a fresh
``mmap``, whose pages the kernel zero-fills on first touch and ``free`` gives back: a page fault per
4 KiB per batch, which on virtual machines cost ``lgs-gpu evaluate`` more than its arithmetic. So the
commands set ``M_MMAP_MAX = 0`` (large blocks from the heap), ``M_TRIM_THRESHOLD = 1 GiB`` (freed
memory kept for the next batch) and ``M_TOP_PAD = 256 MiB`` (the heap grows in large steps) at start
(``tuned``, the default); ``--allocator system`` or ``LGS_GPU_ALLOCATOR=system`` keeps glibc's
defaults, and an allocator preloaded through ``LD_PRELOAD`` (jemalloc, tcmalloc) is left alone.
A library must not change its host's allocator, so ``import lgs_gpu`` never does: docs/benchmarks.md
gives the environment variables that do the same for other programs, and measures each setting.
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
