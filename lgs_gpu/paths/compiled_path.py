"""Local Gradients Smoothing compiled ahead of time for the CPU: the default CPU path.

Implements the contract of :mod:`lgs_gpu.front` for inference (no autograd) on contiguous CPU
tensors of the compute dtype. The torch path's stages are exported (``torch.export``, dynamic
batch, channels, height and width) and compiled by AOTInductor into one vectorised C++/OpenMP
program each, kept in the per-machine cache of :mod:`.package_cache`: built once (tens of seconds,
on first use or by ``lgs-gpu warmup``) by a Python process of its own (:mod:`.compiled_build`: a
compiler that crashes ends that process, not the caller's, which falls back to eager torch with the
reason), then loaded by every new process in milliseconds.
The stages are separate programs because one graph lets Inductor fuse the per-image reduction
into every consumer and recompute the gradient many times over.

Full-size traffic per pixel of a ``C``-channel image (the copy roof moves C in and C out; the
bytes are counted in :func:`lgs_gpu.tooling.roofline.traffic`):

1. :class:`InteriorGradientProgram`: read C, write 1 (``m`` on inner pixels, in place, from shifted
   slices); the one-pixel frame from two-pixel strips (eager, tiny).
2. :class:`WindowTestProgram`: read ``m`` about 2.5 times (min/max, then the overlapping
   windows), write the ``n_rows x n_cols`` means and pass flags. One program per window size:
   the window's extents are the only sizes that are compiled in, so one program serves every
   image at least a window tall and wide. On an image smaller than the window in either axis
   (the extent is then ``min(window_size, H)``, see :func:`lgs_gpu.windows.axis_windows`) the
   window test runs eagerly: a program per small size cost tens of seconds each on a cold cache.
3. :func:`.torch_path.collate_by_row_class` (eager): the mask as a small table, one row per class
   of rows (about ``2 * n_rows`` of them), no full-size mask.
4. :class:`SuppressProgram`: read C + 1 (``m``) and the table's row for each pixel row, write C.

The Sobel taps are paired as in :func:`.torch_path.sobel`, so flat regions give exactly 0.
Outputs differ from the eager paths by rounding only (generated code uses the correctly rounded
square root and sums windows in its own order); the parity tests hold it to the Triton path's
tolerances. Programs are keyed by compute dtype (float32, float64): a package runs whatever dtype
it is handed, so the key is what keeps float64 images out of float32 code.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from ..parameters import STAGES
from . import torch_path
from .package_cache import PackageCache, UntrustedCache, cache_folder, compiler_missing_reason
from .torch_path import (
    collate_by_row_class,
    collation_geometry,
    image_range,
    magnitude_of_padded,
    normalise_between,
    window_geometry,
)

# The graphs below and the torch path's functions they trace: a change to either rebuilds.
_PACKAGES = PackageCache(
    "cpu-kernels", (Path(__file__), Path(torch_path.__file__), Path(__file__).with_name("compiled_build.py"))
)
# Smallest height and width the programs take: an interior of at least 2 x 2 pixels (sizes 1 would
# be compiled in as constants). Smaller images take the eager torch path.
MIN_SIDE = 4
# Largest size of any dimension the programs take (no image has one that large). Unbounded, some torch
# versions' export takes a guard of its own that a size is not 2**63 - 1, and refuses the dynamic size.
MAX_SIZE = 2**31 - 1
# (cache folder, program name) -> why its build failed there (not retried in this process; another
# folder, e.g. after LGS_GPU_CACHE_DIR changed, is tried afresh).
_build_failures: dict[tuple[str, str], str] = {}


_LOG = logging.getLogger("lgs_gpu")
_said: set[str] = set()  # the untrusted-cache warnings already logged in this process


class ProgramBuildError(RuntimeError):
    """A CPU program could not be built (no working compiler, an unwritable cache folder ...)."""


class InteriorGradientProgram(torch.nn.Module):
    """Eq. 5 on the pixels whose 3x3 neighbourhood lies inside the image, written into ``magnitude``.

    The image is its own padding there: shifted slices, unit-stride loads (a replicate pad folded
    into the loads clamps every index and ran 3x slower). ``magnitude`` ``[B, H, W]`` is an input the
    program writes, so the interior lands in place; the one-pixel frame is :func:`_frame`'s.
    """

    def forward(self, x: torch.Tensor, magnitude: torch.Tensor) -> tuple:
        magnitude[:, 1:-1, 1:-1] = magnitude_of_padded(x)
        return ()


def _frame(x: torch.Tensor, magnitude: torch.Tensor) -> None:
    """``m`` on the first / last row and column, from replicate-padded two-pixel strips (eager: tiny)."""
    magnitude[:, :1] = magnitude_of_padded(F.pad(x[..., :2, :], (1, 1, 1, 0), mode="replicate"))
    magnitude[:, -1:] = magnitude_of_padded(F.pad(x[..., -2:, :], (1, 1, 0, 1), mode="replicate"))
    magnitude[:, 1:-1, :1] = magnitude_of_padded(F.pad(x[..., :2], (1, 0, 0, 0), mode="replicate"))
    magnitude[:, 1:-1, -1:] = magnitude_of_padded(F.pad(x[..., -2:], (0, 1, 0, 0), mode="replicate"))


class WindowTestProgram(torch.nn.Module):
    """``m`` -> pass flags and means ``[B, n_rows, n_cols]`` and each image's range of ``m`` ``[B, 1, 1]``."""

    def __init__(self, row_extent: int, col_extent: int) -> None:
        super().__init__()
        self.row_extent, self.col_extent = row_extent, col_extent

    def forward(self, magnitude, row_starts, col_starts, threshold):
        lowest, highest = image_range(magnitude)
        normalised = normalise_between(magnitude, lowest, highest)
        # Windows summed by gathering their rows then columns (not ``unfold``, whose ``H - extent + 1``
        # would be specialised at 1): Inductor turns each gather-and-sum into one loop.
        row_offsets = torch.arange(self.row_extent, device=magnitude.device)
        col_offsets = torch.arange(self.col_extent, device=magnitude.device)
        row_sums = normalised[:, row_starts[:, None] + row_offsets].sum(2)  # [B, n_rows, W]
        sums = row_sums[:, :, col_starts[:, None] + col_offsets].sum(3)  # [B, n_rows, n_cols]
        means = sums / (self.row_extent * self.col_extent)
        return means > threshold, means, lowest, highest


def _suppressed(magnitude, lowest, highest, covered_by_row_class, row_class):
    # Rows of the mask are gathered inside the loop (one index per row, unit-stride loads), so the
    # full-size mask never exists; it is a 0/1 float table: Inductor's loops on bool are slower.
    covered = covered_by_row_class[:, row_class]
    return torch.where(covered > 0, normalise_between(magnitude, lowest, highest), 0)


class SuppressionMapProgram(torch.nn.Module):
    """``ĝ`` ``[B, H, W]`` from ``m``, its range and the collated table."""

    def forward(self, magnitude, lowest, highest, covered_by_row_class, row_class):
        return _suppressed(magnitude, lowest, highest, covered_by_row_class, row_class)


class SuppressProgram(torch.nn.Module):
    """Eq. 7: the defended ``[B, C, H, W]`` images."""

    def forward(self, x, magnitude, lowest, highest, covered_by_row_class, row_class, smoothing_factor):
        suppressed = _suppressed(magnitude, lowest, highest, covered_by_row_class, row_class)
        return x * (1 - (smoothing_factor * suppressed).clamp(0, 1))[:, None]


def examples(name: str, dtype: torch.dtype, extents: tuple[int, int] = (1, 1)):
    """``(module, example inputs, dynamic shapes)`` to export the program ``name``.

    Example sizes are distinct and above 1 (sizes 0 and 1 would be compiled in as constants).
    """
    from torch.export import Dim

    row_extent, col_extent = extents
    batch, channels, classes = (Dim(name, max=MAX_SIZE) for name in ("batch", "channels", "row_classes"))
    height = Dim("height", min=max(MIN_SIDE, row_extent), max=MAX_SIZE)
    width = Dim("width", min=max(MIN_SIDE, col_extent), max=MAX_SIZE)
    n_rows, n_cols = Dim("n_rows", max=MAX_SIZE), Dim("n_cols", max=MAX_SIZE)
    shape = (2, 3, max(MIN_SIDE, row_extent) * 3 + 2, max(MIN_SIDE, col_extent) * 3 + 5)
    x = torch.rand(shape, dtype=dtype)
    magnitude = torch.rand(shape[0], *shape[2:], dtype=dtype)
    lowest, highest = torch.zeros(2, 1, 1, dtype=dtype), torch.ones(2, 1, 1, dtype=dtype)
    table = torch.ones(2, 4, shape[3], dtype=dtype)
    row_class = torch.arange(shape[2]) % 4
    scalar = torch.tensor(0.5, dtype=dtype)
    image, plane, range_ = {0: batch, 1: channels, 2: height, 3: width}, {0: batch, 1: height, 2: width}, {0: batch}
    if name == "gradient":
        return InteriorGradientProgram(), (x, magnitude), (image, plane)
    if name == "window_test":
        starts = (torch.tensor([0, row_extent, 2 * row_extent]), torch.tensor([0, col_extent, 2 * col_extent, 2 * col_extent + 5]))
        return WindowTestProgram(*extents), (magnitude, *starts, scalar), (plane, {0: n_rows}, {0: n_cols}, None)
    table_shape, rows = {0: batch, 1: classes, 2: width}, {0: height}
    if name == "suppression_map":
        return SuppressionMapProgram(), (magnitude, lowest, highest, table, row_class), (plane, range_, range_, table_shape, rows)
    return SuppressProgram(), (x, magnitude, lowest, highest, table, row_class, scalar), (
        image, plane, range_, range_, table_shape, rows, None,
    )  # fmt: skip


def _key(name: str, dtype: torch.dtype, extents: tuple[int, int] | None = None) -> str:
    dtype_name = str(dtype).removeprefix("torch.")
    return f"{name}-{dtype_name}" + (f"-{extents[0]}x{extents[1]}" if extents else "")


def _program(name: str, dtype: torch.dtype, extents: tuple[int, int] | None = None):
    return _programs([(name, dtype, extents)])[0]


def _programs(requests: list[tuple[str, torch.dtype, tuple[int, int] | None]]) -> list:
    """The programs ``requests`` names, loaded; those missing from the cache are built first, together."""
    keys = [_key(*request) for request in requests]
    folder = str(cache_folder())
    for key in keys:
        if (folder, key) in _build_failures:
            raise ProgramBuildError(
                f"building the CPU program {key} failed earlier in this process: {_build_failures[folder, key]}"
            )
    by_key = dict(zip(keys, requests, strict=True))

    def build(targets: dict[str, Path]) -> None:
        build_in_child([(*_request_fields(by_key[key]), str(path)) for key, path in targets.items()])

    try:
        return _PACKAGES.programs(keys, build)
    except UntrustedCache as error:  # not remembered: fixing the folder's permissions is enough
        raise ProgramBuildError(str(error)) from error
    except Exception as error:  # a compiler error or crash, an unwritable folder: remembered, reported once
        why = str(error) if isinstance(error, ProgramBuildError) else f"{type(error).__name__}: {error}"
        why = why.splitlines()[0][:300] if why else type(error).__name__
        for key in keys:
            if not _PACKAGES.cached(key):
                _build_failures[folder, key] = why
        raise ProgramBuildError(f"building the CPU programs {', '.join(keys)} failed: {why}") from error


def _request_fields(request) -> tuple[str, str, list[int] | None]:
    name, dtype, extents = request
    return name, str(dtype).removeprefix("torch."), list(extents) if extents else None


# Seconds a build process may take before it counts as failed (a cold build takes tens of seconds).
BUILD_TIMEOUT_SECONDS = 1800


def child_command() -> list[str]:
    """The command that builds programs in a process of its own (:mod:`.compiled_build`)."""
    return [sys.executable, "-m", "lgs_gpu.paths.compiled_build"]


def build_in_child(requests: list[tuple[str, str, list[int] | None, str]]) -> None:
    """Export and compile ``(name, dtype, extents, package path)`` requests in a new Python process.

    A process of its own, not a thread: an exporter or compiler that crashes (torch 2.11 segfaults
    in ``torch.export`` in the second thread that exports) ends that process with a reason here,
    never the caller's; and none of the caller's dispatch modes, grad mode or compile contexts (a
    first call from inside a ``torch.compile``'d model) reach the export.
    """
    if not sys.executable:
        raise ProgramBuildError("no Python executable to build in (sys.executable is empty)")
    package_root = str(Path(__file__).resolve().parents[2])  # runs from a checkout that is not installed too
    search_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    try:
        result = subprocess.run(
            [*child_command(), json.dumps(requests)], env={**os.environ, "PYTHONPATH": search_path},
            capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ProgramBuildError(f"the build process took over {BUILD_TIMEOUT_SECONDS} s and was stopped") from None
    except OSError as error:
        raise ProgramBuildError(f"could not start the build process: {error}") from error
    if result.returncode == 0:
        return
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    last = lines[-1][:300] if lines else "it printed nothing"
    if result.returncode < 0:
        try:
            died = f"died of {signal.Signals(-result.returncode).name}"
        except ValueError:
            died = f"died of signal {-result.returncode}"
        raise ProgramBuildError(f"the build process {died} (last words: {last})")
    raise ProgramBuildError(last)


def cache_enabled() -> bool:
    """Whether programs persist in a cache folder (``LGS_GPU_CACHE_DIR`` is not ``off``)."""
    return cache_folder() is not None


def unusable_reason() -> str | None:
    """Why ``auto`` should not pick this path now (no compiler, cache off, a failed build), or ``None``."""
    if cache_folder() is None:
        return "LGS_GPU_CACHE_DIR=off: no cache for the compiled CPU programs, so auto uses eager torch"
    untrusted = _PACKAGES.untrusted_reason()
    if untrusted is not None:
        if untrusted not in _said:  # auto falls back to eager torch: say why, once per reason
            _said.add(untrusted)
            _LOG.warning("lgs_gpu: refusing the CPU program cache: %s; using the eager torch path", untrusted)
        return f"refusing the CPU program cache: {untrusted}"
    missing = compiler_missing_reason()
    if missing is not None:
        return missing
    failed_here = [(key, why) for (folder, key), why in _build_failures.items() if folder == str(cache_folder())]
    if failed_here:
        key, why = failed_here[0]
        return f"building the CPU program {key} failed: {why}"
    return None


def cache_description() -> str:
    """Where the programs live and which are built (for ``lgs-gpu info``)."""
    folder = _PACKAGES.folder()
    if folder is None:
        return "off (LGS_GPU_CACHE_DIR=off)"
    built = sorted(path.stem for path in folder.glob("*.pt2")) if folder.is_dir() else []
    return f"{folder} ({', '.join(built) if built else 'nothing built yet'})"


def warmup(
    dtypes: tuple[torch.dtype, ...] = (torch.float32,), window_sizes: tuple[int, ...] = (15,),
    stages: tuple[str, ...] = ("output", "suppression_map"),
) -> list[str]:
    """Build (or load) the programs for ``dtypes`` and ``window_sizes`` now; returns their names.

    Every image needs only these (images smaller than a window test their windows eagerly).
    """
    programs = ["gradient", *(program for stage, program in _STAGE_PROGRAMS.items() if stage in stages)]
    requests = [(name, dtype, None) for dtype in dtypes for name in programs] + [
        ("window_test", dtype, (window_size, window_size)) for dtype in dtypes for window_size in window_sizes
    ]
    _programs(requests)  # one build process for every missing program
    return [_key(*request) for request in requests]


# The full-size stages that have a program of their own (the others come from the gradient and the window test).
_STAGE_PROGRAMS = {"output": "suppress", "suppression_map": "suppression_map"}


@torch.no_grad()
def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Eq. 5 on contiguous ``[B, C, H, W]`` images with ``H, W >= MIN_SIDE``. Returns ``[B, H, W]``."""
    batch, _, height, width = x.shape
    magnitude = x.new_empty(batch, height, width)
    _program("gradient", x.dtype)([x, magnitude])
    _frame(x, magnitude)
    return magnitude


@torch.no_grad()
def stages(
    x: torch.Tensor, smoothing_factor: float, threshold: float, window_size: int, overlap: int,
    wanted: tuple[str, ...] = STAGES,
) -> dict[str, torch.Tensor]:
    """The ``wanted`` stages (see :func:`.torch_path.stages`) of contiguous CPU images, ``H, W >= MIN_SIDE``."""
    _, _, height, width = x.shape
    row_starts, col_starts, row_extent, col_extent = window_geometry(height, width, window_size, overlap, x.device)
    # Every program this call runs, built together when missing (one build process, not one each).
    whole_windows = (row_extent, col_extent) == (window_size, window_size)
    requests = [("gradient", x.dtype, None)] + [("window_test", x.dtype, (window_size, window_size))] * whole_windows
    requests += [(program, x.dtype, None) for stage, program in _STAGE_PROGRAMS.items() if stage in wanted]
    programs = dict(zip((name for name, _, _ in requests), _programs(requests), strict=True))
    magnitude = x.new_empty(x.shape[0], height, width)
    programs["gradient"]([x, magnitude])
    _frame(x, magnitude)
    window_inputs = (magnitude, row_starts, col_starts, torch.tensor(threshold, dtype=x.dtype))
    if whole_windows:
        passing, means, lowest, highest = programs["window_test"](list(window_inputs))
    else:  # an image smaller than the window: the same graph eagerly (cheap there), not a program per small size
        passing, means, lowest, highest = WindowTestProgram(row_extent, col_extent)(*window_inputs)
    # Collation works on small tables, eagerly: compiled, Inductor's bool loops made it 4x slower.
    row_class, *collation = collation_geometry(height, width, window_size, overlap, x.device)
    covered_by_row_class = collate_by_row_class(passing, *collation).to(x.dtype)
    table = [magnitude, lowest, highest, covered_by_row_class, row_class]
    computed: dict[str, torch.Tensor] = {"window_means": means}
    if "output" in wanted:
        (computed["output"],) = programs["suppress"]([x, *table, torch.tensor(smoothing_factor, dtype=x.dtype)])
    if "suppression_map" in wanted:
        (computed["suppression_map"],) = programs["suppression_map"](table)
    if "normalised_gradient" in wanted:
        computed["normalised_gradient"] = normalise_between(magnitude, lowest, highest)
    if "window_mask" in wanted:
        computed["window_mask"] = covered_by_row_class[:, row_class] > 0
    return {name: computed[name] for name in wanted}
