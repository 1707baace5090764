"""How many programs of a compiled kernel a GPU runs at once, and the band height that fills its waves.

A grid whose programs exceed what the SMs hold runs in waves, and a partial last wave takes about as
long as a full one (``benchmarks/kernel_report.py`` models these waves). The launcher
(:mod:`.kernels`) asks :func:`footprint` of each image kernel, then :func:`fitted_band_rows`.
"""

from __future__ import annotations

import functools
import math

import torch
import triton

# Bands the launcher may fit, in rows: one compiled kernel serves the whole range.
BAND_ROWS_RANGE = (16, 128)
# Where the GPU is unknown (the interpreter, a compiler's trace): bands of this height.
UNFITTED_BAND_ROWS = 48
# A wave's fixed cost in row steps: round trips and epilogue (15-25 in kernel_report's H100 model).
WAVE_OVERHEAD_ROWS = 20
# What an SM of sm_80 / sm_90 holds at most (sm_86 / sm_89 hold 48 warps: the slots are then a bound).
_WARPS_PER_SM, _PROGRAMS_PER_SM, _REGISTER_UNIT = 64, 32, 256

_footprints: dict[tuple, tuple[int, int] | None] = {}


def footprint(kernel: triton.JITFunction, args: tuple, options: dict, device: torch.device) -> tuple[int, int] | None:
    """``(slots, local_bytes)`` of ``kernel`` compiled for ``args`` and the launch ``options``: the
    programs the GPU runs at once (resident per SM, from registers, warps and shared memory, x SMs)
    and the local memory each thread spills to.

    None where unknown: tensors on the CPU (the interpreter), or a build Triton cannot load (the launch
    then says why). Kept per kernel, device and options: later calls cost a dictionary lookup.
    """
    if device.type not in ("cuda", "meta"):
        return None
    try:
        driver = triton.runtime.driver.active
        target = (driver.get_current_device(), str(driver.get_current_target()))
    except Exception:  # noqa: BLE001 - no GPU driver: nothing to measure
        return None
    # What Triton specialises a build on: tensors' types and strides, integers equal to 1 or divisible by 16.
    signature = tuple((a.dtype, a.stride()) if isinstance(a, torch.Tensor) else (a == 1, a % 16 == 0) for a in args)
    key = (kernel, str(device), target, signature, tuple(sorted(options.items())))
    if key not in _footprints:
        _footprints[key] = _measured(kernel, args, options, driver)
    return _footprints[key]


def _measured(kernel: triton.JITFunction, args: tuple, options: dict, driver) -> tuple[int, int] | None:
    try:
        properties = driver.utils.get_device_properties(driver.get_current_device())
        compiled = kernel.warmup(*args, grid=(1,), **options)
        compiled._init_handles()  # Triton's loader reads the registers (a private call: guarded)
        registers, spilled = compiled.n_regs, compiled.n_spills
        warps, shared = compiled.metadata.num_warps, compiled.metadata.shared
    except Exception:  # noqa: BLE001 - a figure for the tiling, never a reason to fail a launch
        return None
    per_warp = math.ceil(max(registers, 1) * 32 / _REGISTER_UNIT) * _REGISTER_UNIT
    limits = (properties["max_num_regs"] // (per_warp * warps), _WARPS_PER_SM // warps, _PROGRAMS_PER_SM)
    resident = min(*limits, properties["max_shared_mem"] // shared if shared else _PROGRAMS_PER_SM)
    return max(resident, 1) * properties["multiprocessor_count"], 4 * spilled  # Triton counts 4-byte words


@functools.lru_cache(maxsize=1024)
def fitted_band_rows(height: int, tiles_per_band: int, slots: tuple[int, ...], band_range: tuple[int, int]) -> int:
    """The band height in ``band_range`` (``(shortest, longest)``) whose grid runs each kernel in the
    fewest, fullest waves.

    ``tiles_per_band``: programs per band of rows (strips x images); ``slots``: each kernel's
    :func:`footprint`. A wave costs its band's rows plus :data:`WAVE_OVERHEAD_ROWS`, a partial
    wave as much as a full one; of equal costs, the fewest programs.

    Example:
        >>> fitted_band_rows(299, 64 * 10, (16 * 132, 21 * 132), (16, 128))  # 64 x 3 x 299², strips of 32: one wave
        100
        >>> fitted_band_rows(299, 64 * 10, (21 * 132, 25 * 132), (16, 128))  # more slots: shorter bands
        75
        >>> fitted_band_rows(299, 10, (21 * 132, 25 * 132), (16, 128))  # one image: as many programs as fit
        16
    """
    low, high = band_range
    best_cost, best_rows = math.inf, min(high, height)
    for bands in range(math.ceil(height / high), math.ceil(height / low) + 1):
        rows = max(math.ceil(height / bands), min(low, height))  # the shortest band giving this many
        programs = math.ceil(height / rows) * tiles_per_band
        cost = sum(math.ceil(programs / count) for count in slots) * (rows + WAVE_OVERHEAD_ROWS)
        if cost < best_cost:
            best_cost, best_rows = cost, rows
    return best_rows
