"""Local Gradients Smoothing compiled ahead of time for the CPU: the default CPU path.

Implements the contract of :mod:`lgs_gpu.smoothing.front` for inference (no autograd) on contiguous CPU
tensors of the compute dtype. The torch path's stages are exported (``torch.export``, dynamic
batch, channels, height and width) and compiled by AOTInductor into one vectorised C++/OpenMP
program each, kept in the per-machine cache of :mod:`.package_cache`: built once (tens of seconds,
on first use or by ``lgs-gpu warmup``) by a Python process of its own (:mod:`.compiled_build`: a
compiler that crashes ends that process, not the caller's, which falls back to eager torch with the
reason), then loaded by every new process in milliseconds.
The stages are separate programs because one graph lets Inductor fuse the per-image reduction
into every consumer and recompute the gradient many times over.

Full-size traffic per pixel of a ``C``-channel image (the copy roof moves C in and C out; the
bytes are counted in ``traffic`` in ``benchmarks/roofline.py``):

1. :class:`.compiled_graphs.GradientProgram`: read C, write 1 (``m`` on inner pixels, in place, from shifted
   slices); the one-pixel frame from two-pixel strips (eager, tiny).
2. :class:`.compiled_graphs.WindowTestProgram`: read ``m`` about 2.5 times (min/max, then the overlapping
   windows), write the ``n_rows x n_cols`` means and pass flags. One program per window size:
   the window's extents are the only sizes that are compiled in, so one program serves every
   image at least a window tall and wide. On an image smaller than the window in either axis
   (the extent is then ``min(window_size, H)``, see :func:`lgs_gpu.core.windows.axis_windows`) the
   window test runs eagerly: a program per small size cost tens of seconds each on a cold cache.
3. :func:`.torch_path.collate_by_row_class` (eager): the mask as a small table, one row per class
   of rows (about ``2 * n_rows`` of them), no full-size mask.
4. :class:`.compiled_graphs.SuppressProgram`: read C + 1 (``m``) and the table's row for each pixel row, write C.

When only the output is wanted (``lgs(x)``, the module's forward), the hand-written kernel of
:mod:`.fused_cpu` runs instead, in three passes and no eager step (read C twice and ``m`` twice,
write ``m`` and C); the programs run the other stages, and the output where that kernel did not
build or an image holds a non-finite value.

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

from ...core.package_cache import PackageCache, UntrustedCache, cache_folder, compiler_missing_reason
from ...core.parameters import STAGES
from ...core.validate import UINT8_MAX, compute_dtype
from ...core.workspace import Workspace
from . import fused_cpu, torch_path
from .compiled_graphs import MIN_SIDE as MIN_SIDE  # routing reads it here
from .compiled_graphs import Program, WindowTestProgram
from .torch_path import (
    collate_by_row_class,
    collation_geometry,
    magnitude_of_padded,
    normalise_between,
    window_geometry,
)

# The graphs below and the torch path's functions they trace: a change to either rebuilds.
# The intermediates of calls, reused per thread (see .workspace).
WORKSPACE = Workspace()
_PACKAGES = PackageCache(
    "cpu-kernels",
    tuple(Path(__file__).with_name(name) for name in ("compiled_path.py", "compiled_graphs.py", "compiled_build.py"))
    + (Path(torch_path.__file__),),
)
# (cache folder, program name) -> why its build failed there (not retried in this process; another
# folder, e.g. after LGS_GPU_CACHE_DIR changed, is tried afresh).
_build_failures: dict[tuple[str, str], str] = {}


_LOG = logging.getLogger("lgs_gpu")
_said: set[str] = set()  # the untrusted-cache warnings already logged in this process


class ProgramBuildError(RuntimeError):
    """A CPU program could not be built (no working compiler, an unwritable cache folder ...)."""


def _frame(x: torch.Tensor, magnitude: torch.Tensor) -> None:
    """``m`` on the first / last row and column, from replicate-padded two-pixel strips.

    Eager, on two-pixel strips: compiled, as a program of its own or inside the gradient's, it was
    slower (docs/kernels.md).
    """
    magnitude[:, :1] = magnitude_of_padded(F.pad(x[..., :2, :], (1, 1, 1, 0), mode="replicate"))
    magnitude[:, -1:] = magnitude_of_padded(F.pad(x[..., -2:, :], (1, 1, 0, 1), mode="replicate"))
    magnitude[:, 1:-1, :1] = magnitude_of_padded(F.pad(x[..., :2], (1, 0, 0, 0), mode="replicate"))
    magnitude[:, 1:-1, -1:] = magnitude_of_padded(F.pad(x[..., -2:], (0, 1, 0, 0), mode="replicate"))


def _program(program: Program):
    return _programs([program])[0]


def _programs(programs: list[Program]) -> list:
    """The ``programs``, loaded; those missing from the cache are built first, together."""
    keys = [program.key for program in programs]
    folder = str(cache_folder())
    for key in keys:
        if (folder, key) in _build_failures:
            raise ProgramBuildError(
                f"building the CPU program {key} failed earlier in this process: {_build_failures[folder, key]}"
            )
    by_key = dict(zip(keys, programs, strict=True))

    def build(targets: dict[str, Path]) -> None:
        build_in_child([(*by_key[key].fields(), str(path)) for key, path in targets.items()])

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


# Seconds a build process may take before it counts as failed (a cold build takes tens of seconds).
BUILD_TIMEOUT_SECONDS = 1800


def child_command() -> list[str]:
    """The command that builds programs in a process of its own (:mod:`.compiled_build`)."""
    return [sys.executable, "-m", "lgs_gpu.smoothing.backends.compiled_build"]


def build_in_child(requests: list[list]) -> None:
    """Export and compile programs in a new Python process: each request is a :meth:`Program.fields`
    list followed by the package's path.

    A process of its own, not a thread: an exporter or compiler that crashes (torch 2.11 segfaults
    in ``torch.export`` in the second thread that exports) ends that process with a reason here,
    never the caller's; and none of the caller's dispatch modes, grad mode or compile contexts (a
    first call from inside a ``torch.compile``'d model) reach the export.
    """
    if not sys.executable:
        raise ProgramBuildError("no Python executable to build in (sys.executable is empty)")
    package_root = str(Path(__file__).resolve().parents[3])  # runs from a checkout that is not installed too
    search_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    try:
        # cwd: the folder holding this package, which `python -m` puts first on sys.path (another checkout in the
        # caller's folder must not build programs under this version's fingerprint).
        result = subprocess.run(
            [*child_command(), json.dumps(requests)],
            env={**os.environ, "PYTHONPATH": search_path},
            cwd=package_root,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
        )
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
    fused = fused_cpu.unavailable_reason()
    fused = (
        f"; the fused kernel: {'built' if fused_cpu.built() else 'not built yet'}"
        if fused is None
        else f"; no fused kernel: {fused}"
    )
    return f"{folder} ({', '.join(built) if built else 'nothing built yet'}){fused}"


def warmup(
    dtypes: tuple[torch.dtype, ...] = (torch.float32,),
    window_sizes: tuple[int, ...] = (15,),
    stages: tuple[str, ...] = ("output", "suppression_map"),
    channels: tuple[int, ...] = (3,),
) -> list[str]:
    """Build (or load) the programs for ``dtypes``, ``window_sizes`` and image ``channels`` now; returns their names.

    Every image needs only these (images smaller than a window test their windows eagerly).
    """
    names = ["gradient", *(program for stage, program in _STAGE_PROGRAMS.items() if stage in stages)]
    programs = [
        Program(name, dtype, channels=count if name in _IMAGE_PROGRAMS else None)
        for dtype in dtypes
        for name in names
        for count in (channels if name in _IMAGE_PROGRAMS else (None,))
    ]
    programs += [
        Program("window_test", dtype, (window_size, window_size)) for dtype in dtypes for window_size in window_sizes
    ]
    _programs(programs)  # one build process for every missing program
    names = [program.key for program in programs]
    if "output" in stages and fused_cpu.kernels() is not None:
        names.append(fused_cpu.NAME)
    return names


# The full-size stages that have a program of their own (the others come from the gradient and the window test).
_STAGE_PROGRAMS = {"output": "suppress", "suppression_map": "suppression_map"}
# The programs that read the images, compiled per channel count.
_IMAGE_PROGRAMS = ("gradient", "suppress")


@torch.no_grad()
def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Eq. 5 on contiguous ``[B, C, H, W]`` images with ``H, W >= MIN_SIDE``. Returns ``[B, H, W]``."""
    batch, _, height, width = x.shape
    magnitude = x.new_empty(batch, height, width)
    _program(Program("gradient", x.dtype, channels=x.shape[1]))([x, magnitude])
    _frame(x, magnitude)
    return magnitude


@torch.no_grad()
def stages(
    batch: torch.Tensor,
    smoothing_factor: float,
    threshold: float,
    window_size: int,
    overlap: int,
    wanted: tuple[str, ...] = STAGES,
    out: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The ``wanted`` stages (see :func:`.torch_path.stages`) of validated CPU images, ``H, W >= MIN_SIDE``.

    ``batch`` is the caller's ``[B, C, H, W]`` (any accepted dtype and layout); ``output`` comes back
    in its dtype and memory format, written into ``out`` when given (same shape and dtype, any
    strides, not overlapping ``batch`` unless it is ``batch``). The intermediates live in
    :data:`WORKSPACE`: with a contiguous ``out`` a call allocates no full-size image tensor.
    """
    dtype = compute_dtype(batch.dtype)
    batch_size, channels, height, width = batch.shape
    x = batch.detach()
    if x.dtype != dtype or not x.is_contiguous():  # the programs take contiguous images of the compute dtype
        x = WORKSPACE.buffer("images", tuple(batch.shape), dtype).copy_(batch)
        if batch.dtype == torch.uint8:
            x.div_(UINT8_MAX)
    if tuple(wanted) == ("output",):  # lgs(x): the fused kernel, when it is built here and the images are finite
        target = _output_target(batch, x, out)
        if fused_cpu.lgs_output(x, target, smoothing_factor, threshold, window_size, overlap, WORKSPACE):
            return {"output": _delivered(target, batch, out)}
    row_starts, col_starts, row_extent, col_extent = window_geometry(height, width, window_size, overlap, x.device)
    # Every program this call runs, built together when missing (one build process, not one each).
    whole_windows = (row_extent, col_extent) == (window_size, window_size)
    requests = [Program("gradient", dtype, channels=channels)]
    requests += [Program("window_test", dtype, (window_size, window_size))] * whole_windows
    requests += [
        Program(name, dtype, channels=channels if name in _IMAGE_PROGRAMS else None)
        for stage, name in _STAGE_PROGRAMS.items()
        if stage in wanted
    ]
    programs = dict(zip((program.name for program in requests), _programs(requests), strict=True))
    magnitude = WORKSPACE.buffer("magnitude", (batch_size, height, width), dtype)
    programs["gradient"]([x, magnitude])
    _frame(x, magnitude)
    window_inputs = (magnitude, row_starts, col_starts, torch.tensor(threshold, dtype=dtype))
    if whole_windows:
        passing, means, lowest, highest = programs["window_test"](list(window_inputs))
    else:  # an image smaller than the window: the same graph eagerly (cheap there), not a program per small size
        passing, means, lowest, highest = WindowTestProgram(row_extent, col_extent)(*window_inputs)
    # Collation works on small tables, eagerly: compiled, Inductor's bool loops made it slower.
    row_class, *collation = collation_geometry(height, width, window_size, overlap, x.device)
    covered_by_row_class = collate_by_row_class(passing, *collation).to(dtype)
    table = [magnitude, lowest, highest, covered_by_row_class, row_class]
    computed: dict[str, torch.Tensor] = {"window_means": means}
    if "output" in wanted:
        computed["output"] = _suppress(programs["suppress"], batch, x, table, smoothing_factor, out)
    if "suppression_map" in wanted:
        (computed["suppression_map"],) = programs["suppression_map"](table)
    if "normalised_gradient" in wanted:
        computed["normalised_gradient"] = normalise_between(magnitude, lowest, highest)
    if "window_mask" in wanted:
        computed["window_mask"] = covered_by_row_class[:, row_class] > 0
    return {name: computed[name] for name in wanted}


def _output_target(batch: torch.Tensor, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """Where eq. 7 is written: ``out``, or a new tensor like ``batch``, straight where the layout and dtype allow,
    else a reused float buffer (:func:`_delivered` then converts it)."""
    fits = x.dtype == batch.dtype and batch.is_contiguous()  # the program's output has the caller's dtype and layout
    if out is not None and fits and out.is_contiguous() and out.data_ptr() != batch.data_ptr():
        return out
    if out is None and fits:
        return torch.empty_like(x)
    return WORKSPACE.buffer("output", tuple(x.shape), x.dtype)  # a conversion (uint8, half), another layout, in place


def _delivered(target: torch.Tensor, batch: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """The output in the caller's dtype and memory format (in ``out`` when given), from what was written to ``target``."""
    fits = target.dtype == batch.dtype and batch.is_contiguous()
    if target is out or out is None and fits:
        return target
    out = torch.empty_like(batch) if out is None else out
    if out.dtype == torch.uint8:  # rounded half-to-even and clamped in the buffer, as from_unit_float does
        target.mul_(UINT8_MAX).round_().clamp_(0, UINT8_MAX)
    return out.copy_(target)


def _suppress(
    program, batch: torch.Tensor, x: torch.Tensor, table: list, smoothing_factor: float, out: torch.Tensor | None
) -> torch.Tensor:
    """Eq. 7 by the suppress program into ``out``, or into a new tensor like ``batch``."""
    target = _output_target(batch, x, out)
    program([x, *table, torch.tensor(smoothing_factor, dtype=x.dtype), target])
    return _delivered(target, batch, out)
