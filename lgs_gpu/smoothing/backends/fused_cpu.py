"""LGS's output on the CPU as one hand-written C++ kernel, :file:`fused_cpu.cpp`: the launcher.

The kernel takes the images one after another, all OpenMP threads on each (split by pixel rows),
so that the image and its gradient plane are still in cache when the output is written; what it
does pass by pass is in the source.
It is built once per machine by the C++ compiler AOTInductor uses (``$CXX``, else ``c++``), for
the vector ISA torch itself runs (``torch.backends.cpu.get_cpu_capability()``), into the cache of
:mod:`.package_cache` (same trust checks and atomic writes as the AOTInductor programs), and
loaded with ``ctypes``. The compiled path (:mod:`.compiled_path`) runs it when only the output is
wanted (``lgs(x)``, the module's forward); a failed build falls back to its programs, with the
reason logged once. Values equal the torch path's but for rounding (the window sums are taken
per column down each window row, in float64, then across each window).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
from pathlib import Path

import torch

from ...core.package_cache import PackageCache, UntrustedCache
from ...core.workspace import Workspace
from .torch_path import window_geometry

SOURCE = Path(__file__).with_name("fused_cpu.cpp")
# Flags for the ISA torch dispatches its own kernels to, so that the library runs wherever torch's do.
ISA_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}
# -ffp-contract=off: no fused multiply-adds, so the arithmetic rounds as the torch path's does;
# -fno-math-errno: sqrt never sets errno (it is never read), which lets its loops vectorise.
COMPILE_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-ffp-contract=off", "-fno-math-errno"]
BUILD_TIMEOUT_SECONDS = 300
_LOG = logging.getLogger("lgs_gpu")
_FUNCTIONS = {torch.float32: "lgs_output_float32", torch.float64: "lgs_output_float64"}


def _load(path: Path) -> dict[torch.dtype, ctypes._CFuncPtr]:
    library = ctypes.CDLL(str(path))
    functions = {}
    for dtype, name in _FUNCTIONS.items():
        function = getattr(library, name)
        function.argtypes = (
            [ctypes.c_void_p] * 7
            + [ctypes.c_int64] * 4
            + [
                ctypes.c_void_p,
                ctypes.c_int64,
                ctypes.c_int64,
                ctypes.c_void_p,
                ctypes.c_int64,
                ctypes.c_int64,
                ctypes.c_double,
                ctypes.c_double,
                ctypes.c_int,
            ]
        )
        function.restype = ctypes.c_int
        functions[dtype] = function
    functions["library"] = library  # keeps the library loaded as long as the functions are
    return functions


NAME = "lgs_output"  # the library's name in the cache
_LIBRARY = PackageCache("cpu-fused", (SOURCE, Path(__file__)), suffix=".so", loader=_load)
_failure: dict[str, str] = {}  # cache folder -> why the build failed there (not retried in this process)
_said: set[str] = set()  # the refusals of an untrusted cache already logged


def compile_command(target: Path) -> list[str]:
    """The compiler command that builds the kernel into ``target``."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or "c++"
    isa = ISA_FLAGS.get(torch.backends.cpu.get_cpu_capability(), [])
    return [compiler, *COMPILE_FLAGS, *isa, "-o", str(target), str(SOURCE)]


def _build(targets: dict[str, Path]) -> None:
    for target in targets.values():
        try:
            finished = subprocess.run(
                compile_command(target),
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_SECONDS,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise RuntimeError(f"the C++ compiler could not run: {error}") from error
        if finished.returncode != 0:
            lines = [line for line in finished.stderr.splitlines() if line.strip()]
            raise RuntimeError(f"the C++ compiler failed: {lines[-1][:300] if lines else finished.returncode}")


def kernels() -> dict | None:
    """The loaded kernel functions by dtype, built first when missing; ``None`` when they cannot be (said once)."""
    folder = str(_LIBRARY.folder())
    if folder in _failure:
        return None
    try:
        return _LIBRARY.program(NAME, _build)
    except UntrustedCache as error:  # not remembered: fixing the folder's permissions is enough
        if str(error) not in _said:
            _said.add(str(error))
            _LOG.warning("lgs_gpu: not loading the fused CPU kernel: %s; using the compiled programs", error)
        return None
    except (RuntimeError, OSError, AttributeError) as error:
        _failure[folder] = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        _LOG.warning("lgs_gpu: the fused CPU kernel is unavailable (%s); using the compiled programs", _failure[folder])
        return None


def built() -> bool:
    """Whether the kernel is built in the cache folder."""
    return _LIBRARY.cached(NAME)


def unavailable_reason() -> str | None:
    """Why the fused kernel did not build here (after a try in this process), or ``None``."""
    return _failure.get(str(_LIBRARY.folder()))


@torch.no_grad()
def lgs_output(
    x: torch.Tensor,
    out: torch.Tensor,
    smoothing_factor: float,
    threshold: float,
    window_size: int,
    overlap: int,
    workspace: Workspace,
) -> bool:
    """Eq. 7 of contiguous float32 / float64 ``[B, C, H, W]`` CPU images ``x`` into ``out`` (same shape, dtype,
    contiguous, not overlapping ``x``); the intermediates (one image's worth) live in ``workspace``.
    Returns ``False`` when the kernel is unavailable (nothing written) or an image's gradient is not
    finite (inf inside; the images before it are written): the caller then computes every image
    otherwise.

    Example:
        >>> from lgs_gpu.smoothing.backends import torch_path
        >>> x = torch.rand(2, 3, 40, 52, generator=torch.Generator().manual_seed(0))
        >>> out = torch.empty_like(x)
        >>> lgs_output(x, out, 2.3, 0.1, 15, 5, Workspace())
        True
        >>> bool((out - torch_path.lgs(x, 2.3, 0.1, 15, 5)).abs().max() < 1e-6)  # rounding apart
        True
    """
    functions = kernels()
    if functions is None:
        return False
    batch, channels, height, width = x.shape
    row_starts, col_starts, row_extent, col_extent = window_geometry(height, width, window_size, overlap, x.device)
    n_rows, n_cols = len(row_starts), len(col_starts)
    # One image's worth: the images are taken one after another, all threads on each.
    magnitude = workspace.buffer("fused_magnitude", (height, width), x.dtype)
    lowest = workspace.buffer("fused_lowest", (height,), x.dtype)
    highest = workspace.buffer("fused_highest", (height,), x.dtype)
    covered = workspace.buffer("fused_covered", (n_rows * width,), torch.uint8)  # by each window row's passers
    window_row_passes = workspace.buffer("fused_window_row_passes", (n_rows,), torch.uint8)
    status = functions[x.dtype](
        x.data_ptr(),
        out.data_ptr(),
        magnitude.data_ptr(),
        lowest.data_ptr(),
        highest.data_ptr(),
        covered.data_ptr(),
        window_row_passes.data_ptr(),
        batch,
        channels,
        height,
        width,
        row_starts.data_ptr(),
        n_rows,
        row_extent,
        col_starts.data_ptr(),
        n_cols,
        col_extent,
        float(smoothing_factor),
        float(threshold),
        torch.get_num_threads(),
    )
    return status == 0
