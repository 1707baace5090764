"""Fused Triton kernels for Local Gradients Smoothing, each beside its launcher.

Three launches, two of which touch the image (symbols as in :mod:`lgs_gpu.parameters`):

1. ``_window_sums_kernel`` — one program per block of ``WINDOWS_PER_PROGRAM`` x
   ``WINDOWS_PER_PROGRAM`` windows of one image. It walks the union of its windows in pixel
   tiles, computes the gradient magnitude ``m`` on the fly (Sobel with clamped, i.e. replicate,
   neighbour indices) and accumulates every window's sum of ``m`` as two 0/1 matrix products
   (``rows @ m @ cols``, exact in float32 with ``input_precision="ieee"``), plus the region's min
   and max of ``m``. It writes ``n_rows x n_cols`` window sums per image (about 1% of the
   pixels), never a full-size intermediate, and reads x once (the 3x3 halo and the thin overlap
   between neighbouring programs are served from cache).
2. ``_image_range_kernel`` — one program per image reduces the per-program minima / maxima to
   the image's min and max of ``m`` (the global reduction that forbids a single pass). Windows
   cover every pixel, so their regions see every pixel.
3. ``_suppress_kernel`` — one program per tile of pixels recomputes ``m``, normalises it to
   ``g`` with the image's min and max, decides the windows covering each pixel from their sums
   (``mean g = (sum m / area - min) / (max - min)``), and writes whichever of
   ``x * (1 - clip(λ ĝ, 0, 1))``, ``ĝ``, ``g`` and the window mask is asked for. Reads x once
   and writes the output once.

DRAM traffic: x read twice and the output written once, plus ``n_rows x n_cols`` floats per
image (counted in :func:`lgs_gpu.tooling.roofline.traffic`). Offsets are int64, so batches of 8192x8192 images address correctly. Inputs of any
strides (non-contiguous, channels_last) are read in place; float16/bfloat16/uint8 are converted
on load and computed in float32, float64 in float64.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..._validate import compute_dtype
from ...parameters import STAGES
from ...windows import axis_windows, covering_tensors, starts_tensor

# 2**23: adding then subtracting it rounds a float32 in [0, 2**22) half-to-even (torch.round).
_ROUND_MAGIC = tl.constexpr(8388608.0)


@triton.jit
def _gradient_magnitude(
    image_ptr, rows, cols, mask, channels, height, width, stride_c, stride_h, stride_w,
    IS_UINT8: tl.constexpr, COMPUTE_F64: tl.constexpr,
):
    """``m`` (eq. 5) at ``rows[:, None] x cols[None, :]``: Sobel with replicate (clamped) borders."""
    rows = tl.minimum(rows, height - 1)  # masked lanes beyond the image stay in bounds
    cols = tl.minimum(cols, width - 1)
    up = (tl.maximum(rows - 1, 0).to(tl.int64) * stride_h)[:, None]
    mid = (rows.to(tl.int64) * stride_h)[:, None]
    down = (tl.minimum(rows + 1, height - 1).to(tl.int64) * stride_h)[:, None]
    left = (tl.maximum(cols - 1, 0).to(tl.int64) * stride_w)[None, :]
    centre = (cols.to(tl.int64) * stride_w)[None, :]
    right = (tl.minimum(cols + 1, width - 1).to(tl.int64) * stride_w)[None, :]
    dtype = tl.float64 if COMPUTE_F64 else tl.float32
    scale = 255.0 if IS_UINT8 else 1.0  # uint8 is divided by 255 on load, as in the torch paths
    squared = tl.zeros(mask.shape, dtype=dtype)
    for channel in range(channels):
        plane = image_ptr + tl.cast(channel, tl.int64) * stride_c
        # Loads written out inline: the interpreter pays dearly for every nested jit call.
        up_left = tl.load(plane + up + left, mask=mask, other=0).to(dtype) / scale
        up_centre = tl.load(plane + up + centre, mask=mask, other=0).to(dtype) / scale
        up_right = tl.load(plane + up + right, mask=mask, other=0).to(dtype) / scale
        mid_left = tl.load(plane + mid + left, mask=mask, other=0).to(dtype) / scale
        mid_right = tl.load(plane + mid + right, mask=mask, other=0).to(dtype) / scale
        down_left = tl.load(plane + down + left, mask=mask, other=0).to(dtype) / scale
        down_centre = tl.load(plane + down + centre, mask=mask, other=0).to(dtype) / scale
        down_right = tl.load(plane + down + right, mask=mask, other=0).to(dtype) / scale
        sobel_x = (up_right - up_left) + 2 * (mid_right - mid_left) + (down_right - down_left)
        sobel_y = (down_left - up_left) + 2 * (down_centre - up_centre) + (down_right - up_right)
        squared += sobel_x * sobel_x + sobel_y * sobel_y
    # sqrt(0) is 0; the where keeps masked lanes at exactly 0.
    return tl.where(mask, tl.sqrt(squared), 0.0)


@triton.jit
def _window_sums_kernel(
    x_ptr,  # *T [B, C, H, W] input, any strides
    window_sums_ptr,  # *f32|f64 [B, n_row_windows, n_col_windows] out: sum of m per window
    block_min_ptr,  # *f32|f64 [B, n_row_groups, n_col_groups] out: min of m over each program's region
    block_max_ptr,  # *f32|f64 [B, n_row_groups, n_col_groups] out: max of m over each program's region
    row_starts_ptr,  # *i32 [n_row_windows] first row of each window
    col_starts_ptr,  # *i32 [n_col_windows] first column of each window
    channels, height, width,  # C, H, W
    n_row_windows, n_col_windows,
    window_height, window_width,  # extent of every window: min(window_size, H or W)
    stride_b, stride_c, stride_h, stride_w,  # strides of x in elements
    IS_UINT8: tl.constexpr, COMPUTE_F64: tl.constexpr,
    WINDOWS_PER_PROGRAM: tl.constexpr,  # windows per axis summed by one program (>= 16 for tl.dot)
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,  # pixel tile walked over the program's region
):
    row_group = tl.program_id(0)
    col_group = tl.program_id(1)
    image = tl.program_id(2).to(tl.int64)
    image_ptr = x_ptr + image * stride_b
    dtype = tl.float64 if COMPUTE_F64 else tl.float32

    row_window = row_group * WINDOWS_PER_PROGRAM + tl.arange(0, WINDOWS_PER_PROGRAM)
    col_window = col_group * WINDOWS_PER_PROGRAM + tl.arange(0, WINDOWS_PER_PROGRAM)
    row_window_valid = row_window < n_row_windows
    col_window_valid = col_window < n_col_windows
    window_top = tl.load(row_starts_ptr + row_window, mask=row_window_valid, other=0)
    window_left = tl.load(col_starts_ptr + col_window, mask=col_window_valid, other=0)
    # The program's region is the union of its windows: from the first start to the last end.
    region_top = tl.load(row_starts_ptr + row_group * WINDOWS_PER_PROGRAM)
    region_left = tl.load(col_starts_ptr + col_group * WINDOWS_PER_PROGRAM)
    last_row = tl.minimum(row_group * WINDOWS_PER_PROGRAM + WINDOWS_PER_PROGRAM, n_row_windows) - 1
    last_col = tl.minimum(col_group * WINDOWS_PER_PROGRAM + WINDOWS_PER_PROGRAM, n_col_windows) - 1
    region_bottom = tl.load(row_starts_ptr + last_row) + window_height
    region_right = tl.load(col_starts_ptr + last_col) + window_width

    sums = tl.zeros([WINDOWS_PER_PROGRAM, WINDOWS_PER_PROGRAM], dtype=dtype)
    lowest = tl.full([BLOCK_H, BLOCK_W], float("inf"), dtype=dtype)
    highest = tl.full([BLOCK_H, BLOCK_W], float("-inf"), dtype=dtype)
    for row0 in range(region_top, region_bottom, BLOCK_H):
        rows = row0 + tl.arange(0, BLOCK_H)
        # [windows, BLOCK_H]: 1 where a row lies in a window of this program, else 0
        row_member = (
            row_window_valid[:, None]
            & (rows[None, :] >= window_top[:, None])
            & (rows[None, :] < window_top[:, None] + window_height)
        ).to(dtype)
        for col0 in range(region_left, region_right, BLOCK_W):
            cols = col0 + tl.arange(0, BLOCK_W)
            mask = (rows < region_bottom)[:, None] & (cols < region_right)[None, :]
            magnitude = _gradient_magnitude(
                image_ptr, rows, cols, mask, channels, height, width,
                stride_c, stride_h, stride_w, IS_UINT8, COMPUTE_F64,
            )
            lowest = tl.minimum(lowest, tl.where(mask, magnitude, float("inf")))
            highest = tl.maximum(highest, tl.where(mask, magnitude, float("-inf")))
            # [BLOCK_W, windows]: 1 where a column lies in a window of this program
            col_member = (
                col_window_valid[None, :]
                & (cols[:, None] >= window_left[None, :])
                & (cols[:, None] < window_left[None, :] + window_width)
            ).to(dtype)
            # Window sums as two 0/1 matrix products; "ieee" keeps float32 exact (no TF32).
            band = tl.dot(row_member, magnitude, input_precision="ieee")
            sums += tl.dot(band, col_member, input_precision="ieee")

    window_offsets = (image * n_row_windows + row_window[:, None]) * n_col_windows + col_window[None, :]
    tl.store(window_sums_ptr + window_offsets, sums, mask=row_window_valid[:, None] & col_window_valid[None, :])
    block = (image * tl.num_programs(0) + row_group) * tl.num_programs(1) + col_group
    tl.store(block_min_ptr + block, tl.min(tl.min(lowest, axis=1), axis=0))
    tl.store(block_max_ptr + block, tl.max(tl.max(highest, axis=1), axis=0))


@triton.jit
def _image_range_kernel(
    block_min_ptr,  # *f32|f64 [B, n_blocks] minima of m per window-sums program
    block_max_ptr,  # *f32|f64 [B, n_blocks] maxima of m per window-sums program
    stats_ptr,  # *f32|f64 [B, 2] out: (min m, max m) per image
    n_blocks,
    BLOCK: tl.constexpr,
):
    image = tl.program_id(0).to(tl.int64)
    lowest = tl.full([BLOCK], float("inf"), dtype=stats_ptr.dtype.element_ty)
    highest = tl.full([BLOCK], float("-inf"), dtype=stats_ptr.dtype.element_ty)
    for start in range(0, n_blocks, BLOCK):
        index = start + tl.arange(0, BLOCK)
        valid = index < n_blocks
        lowest = tl.minimum(lowest, tl.load(block_min_ptr + image * n_blocks + index, mask=valid, other=float("inf")))
        highest = tl.maximum(highest, tl.load(block_max_ptr + image * n_blocks + index, mask=valid, other=float("-inf")))
    tl.store(stats_ptr + image * 2, tl.min(lowest, axis=0))
    tl.store(stats_ptr + image * 2 + 1, tl.max(highest, axis=0))


@triton.jit
def _suppress_kernel(
    x_ptr,  # *T [B, C, H, W] input, any strides
    out_ptr,  # *T [B, C, H, W] output, any strides (unused unless WRITE_OUTPUT)
    map_ptr,  # *f32|f64 [B, H, W] out: ĝ (unused unless WRITE_MAP)
    normalised_ptr,  # *f32|f64 [B, H, W] out: g (unused unless WRITE_NORMALISED)
    mask_ptr,  # *u8 [B, H, W] out: 1 inside a passing window (unused unless WRITE_MASK)
    window_sums_ptr,  # *f32|f64 [B, n_row_windows, n_col_windows] sum of m per window
    stats_ptr,  # *f32|f64 [B, 2] (min m, max m) per image
    params_ptr,  # *f32|f64 [2] (threshold γ, smoothing_factor λ) in the compute dtype
    row_first_ptr, row_count_ptr,  # *i32 [H] first window covering each row, and how many do
    col_first_ptr, col_count_ptr,  # *i32 [W] the same for columns
    channels, height, width,
    n_row_windows, n_col_windows, n_col_tiles,
    max_row_cover, max_col_cover,  # the most windows covering one row / column
    window_area,  # pixels per window
    stride_b, stride_c, stride_h, stride_w,  # x strides in elements
    out_stride_b, out_stride_c, out_stride_h, out_stride_w,  # output strides in elements
    IS_UINT8: tl.constexpr, COMPUTE_F64: tl.constexpr,
    WRITE_OUTPUT: tl.constexpr, WRITE_MAP: tl.constexpr,
    WRITE_NORMALISED: tl.constexpr, WRITE_MASK: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    tile = tl.program_id(0)
    image = tl.program_id(1).to(tl.int64)
    rows = (tile // n_col_tiles) * BLOCK_H + tl.arange(0, BLOCK_H)
    cols = (tile % n_col_tiles) * BLOCK_W + tl.arange(0, BLOCK_W)
    row_valid = rows < height
    col_valid = cols < width
    mask = row_valid[:, None] & col_valid[None, :]

    magnitude = _gradient_magnitude(
        x_ptr + image * stride_b, rows, cols, mask, channels, height, width,
        stride_c, stride_h, stride_w, IS_UINT8, COMPUTE_F64,
    )
    lowest = tl.load(stats_ptr + image * 2)
    value_range = tl.load(stats_ptr + image * 2 + 1) - lowest
    varies = value_range > 0
    safe_range = tl.where(varies, value_range, 1.0)
    normalised = tl.where(varies, (magnitude - lowest) / safe_range, 0.0)
    threshold = tl.load(params_ptr)
    smoothing_factor = tl.load(params_ptr + 1)

    # Windows covering a pixel form a contiguous run per axis: test each (row run x column run) pair.
    row_first = tl.load(row_first_ptr + rows, mask=row_valid, other=0)
    row_count = tl.load(row_count_ptr + rows, mask=row_valid, other=0)
    col_first = tl.load(col_first_ptr + cols, mask=col_valid, other=0)
    col_count = tl.load(col_count_ptr + cols, mask=col_valid, other=0)
    image_sums_ptr = window_sums_ptr + image * n_row_windows * n_col_windows
    covered = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.int1)
    for row_step in range(0, max_row_cover):
        for col_step in range(0, max_col_cover):
            candidate = mask & (row_step < row_count)[:, None] & (col_step < col_count)[None, :]
            window = (row_first + row_step)[:, None] * n_col_windows + (col_first + col_step)[None, :]
            window_sum = tl.load(image_sums_ptr + window, mask=candidate, other=0.0)
            mean_normalised = tl.where(varies, (window_sum / window_area - lowest) / safe_range, 0.0)
            covered = covered | (candidate & (mean_normalised > threshold))
    suppressed = tl.where(covered, normalised, 0.0)

    plane_offsets = image * height * width + rows.to(tl.int64)[:, None] * width + cols[None, :]
    if WRITE_MAP:
        tl.store(map_ptr + plane_offsets, suppressed, mask=mask)
    if WRITE_NORMALISED:
        tl.store(normalised_ptr + plane_offsets, normalised, mask=mask)
    if WRITE_MASK:
        tl.store(mask_ptr + plane_offsets, covered.to(tl.uint8), mask=mask)
    if WRITE_OUTPUT:
        factor = 1 - tl.minimum(tl.maximum(smoothing_factor * suppressed, 0.0), 1.0)
        in_offsets = image * stride_b + rows.to(tl.int64)[:, None] * stride_h + cols.to(tl.int64)[None, :] * stride_w
        out_offsets = (
            image * out_stride_b + rows.to(tl.int64)[:, None] * out_stride_h + cols.to(tl.int64)[None, :] * out_stride_w
        )
        for channel in range(channels):
            value = tl.load(x_ptr + in_offsets + tl.cast(channel, tl.int64) * stride_c, mask=mask, other=0)
            value = value.to(normalised.dtype) / (255.0 if IS_UINT8 else 1.0)
            result = value * factor
            if IS_UINT8:
                scaled = tl.minimum(tl.maximum(result * 255.0, 0.0), 255.0)
                result = (scaled + _ROUND_MAGIC) - _ROUND_MAGIC
            tl.store(
                out_ptr + out_offsets + tl.cast(channel, tl.int64) * out_stride_c,
                result.to(out_ptr.dtype.element_ty),
                mask=mask,
            )


@dataclass(frozen=True)
class LaunchConfig:
    """Block sizes of one LGS launch, all powers of two; ``None`` takes :data:`DEFAULT_CONFIG`'s.

    Tests under ``TRITON_INTERPRET=1`` pass large blocks: the interpreter pays per program.
    """

    windows_per_program: int | None = None  # window-sums kernel: windows per axis per program (>= 16)
    sum_block_h: int | None = None  # window-sums kernel: pixel tile rows (>= 16)
    sum_block_w: int | None = None  # window-sums kernel: pixel tile columns (>= 16)
    block_h: int | None = None  # suppress kernel: tile rows
    block_w: int | None = None  # suppress kernel: tile columns

    def resolved(self) -> LaunchConfig:
        """This config with every ``None`` replaced by the default, checked."""
        values = {
            name: getattr(DEFAULT_CONFIG, name) if value is None else value for name, value in vars(self).items()
        }
        for name, value in values.items():
            if not isinstance(value, int) or value < 1 or value & (value - 1):
                raise ValueError(f"LaunchConfig.{name} must be a power of two. Got {value}")
        for name in ("windows_per_program", "sum_block_h", "sum_block_w"):
            if values[name] < 16:
                raise ValueError(f"LaunchConfig.{name} must be >= 16 (tl.dot needs it). Got {values[name]}")
        return LaunchConfig(**values)


# The block sizes a launcher uses unless told otherwise; the AOT check compiles exactly these.
DEFAULT_CONFIG = LaunchConfig(windows_per_program=16, sum_block_h=16, sum_block_w=16, block_h=8, block_w=32)
RANGE_BLOCK = 256
# CUDA caps grid dimensions 1 and 2 at 65535: larger batches are launched in chunks.
MAX_GRID_BATCH = 65535


def lgs_triton(
    x: torch.Tensor,
    smoothing_factor: float,
    threshold: float,
    window_size: int,
    overlap: int,
    write_output: bool = True,
    write_map: bool = False,
    config: LaunchConfig | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Run LGS on ``[B, C, H, W]`` images with the Triton kernels.

    ``x`` is any accepted dtype (uint8, float16, bfloat16, float32, float64) and any strides;
    parameters are already validated by :mod:`lgs_gpu.lgs`. Returns ``(output, map)``: the
    defended images in ``x``'s dtype and memory format, and ``ĝ`` as ``[B, H, W]`` in the
    compute dtype; each is ``None`` unless asked for.

    Example:
        >>> out, _ = lgs_triton(images.cuda(), 2.3, 0.1, 15, 5)  # doctest: +SKIP
    """
    wanted = ("output",) * write_output + ("suppression_map",) * write_map
    computed = stages(x, smoothing_factor, threshold, window_size, overlap, wanted, config)
    return computed.get("output"), computed.get("suppression_map")


def stages(
    x: torch.Tensor,
    smoothing_factor: float,
    threshold: float,
    window_size: int,
    overlap: int,
    wanted: tuple[str, ...] = STAGES,
    config: LaunchConfig | None = None,
) -> dict[str, torch.Tensor]:
    """The ``wanted`` stages of LGS (names in :data:`STAGES`) from one launch of each kernel.

    ``output`` ``[B, C, H, W]`` in ``x``'s dtype and memory format; ``normalised_gradient`` and
    ``suppression_map`` ``[B, H, W]`` in the compute dtype; ``window_mask`` ``[B, H, W]`` bool;
    ``window_means`` ``[B, n_rows, n_cols]``. The suppress kernel writes only what is asked for.
    """
    if x.dim() != 4:
        raise ValueError(f"lgs_triton expects [B, C, H, W] images. Got shape {tuple(x.shape)}")
    unknown = set(wanted) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown LGS stage(s) {sorted(unknown)}; accepted: {', '.join(STAGES)}")
    config = (config or LaunchConfig()).resolved()
    if x.shape[0] > MAX_GRID_BATCH:
        parts = [
            stages(x[start : start + MAX_GRID_BATCH], smoothing_factor, threshold, window_size, overlap, wanted, config)
            for start in range(0, x.shape[0], MAX_GRID_BATCH)
        ]
        return {name: torch.cat([part[name] for part in parts]) for name in wanted}
    # Launch on the tensor's GPU, not on whichever is current.
    on_device = torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()
    with on_device:
        return _launch(x, smoothing_factor, threshold, window_size, overlap, frozenset(wanted), config)


def _launch(
    x: torch.Tensor,
    smoothing_factor: float,
    threshold: float,
    window_size: int,
    overlap: int,
    wanted: frozenset[str],
    config: LaunchConfig,
) -> dict[str, torch.Tensor]:
    """Allocate, compute the grids and launch the three kernels for at most MAX_GRID_BATCH images."""
    batch, channels, height, width = x.shape
    device = x.device
    accumulate = compute_dtype(x.dtype)
    rows = axis_windows(height, window_size, overlap)
    cols = axis_windows(width, window_size, overlap)
    per_program = config.windows_per_program
    n_row_groups = triton.cdiv(rows.count, per_program)
    n_col_groups = triton.cdiv(cols.count, per_program)

    # Small statistics only: window sums (~1% of the pixels) and per-program minima / maxima.
    window_sums = torch.empty((batch, rows.count, cols.count), dtype=accumulate, device=device)
    block_min = torch.empty((batch, n_row_groups, n_col_groups), dtype=accumulate, device=device)
    block_max = torch.empty_like(block_min)
    stats = torch.empty((batch, 2), dtype=accumulate, device=device)
    params = torch.tensor([threshold, smoothing_factor], dtype=accumulate, device=device)
    is_uint8 = x.dtype == torch.uint8
    compute_f64 = accumulate == torch.float64

    _window_sums_kernel[(n_row_groups, n_col_groups, batch)](
        x, window_sums, block_min, block_max,
        starts_tensor(height, window_size, overlap, device), starts_tensor(width, window_size, overlap, device),
        channels, height, width, rows.count, cols.count, rows.extent, cols.extent,
        *x.stride(),
        IS_UINT8=is_uint8, COMPUTE_F64=compute_f64, WINDOWS_PER_PROGRAM=per_program,
        BLOCK_H=config.sum_block_h, BLOCK_W=config.sum_block_w,
    )
    _image_range_kernel[(batch,)](block_min, block_max, stats, n_row_groups * n_col_groups, BLOCK=RANGE_BLOCK)

    computed: dict[str, torch.Tensor] = {}
    if "output" in wanted:
        computed["output"] = torch.empty_like(x)
    for name in ("suppression_map", "normalised_gradient"):
        if name in wanted:
            computed[name] = torch.empty((batch, height, width), dtype=accumulate, device=device)
    if "window_mask" in wanted:
        computed["window_mask"] = torch.empty((batch, height, width), dtype=torch.uint8, device=device)
    if wanted - {"window_means"}:
        n_col_tiles = triton.cdiv(width, config.block_w)
        row_first, row_count = covering_tensors(height, window_size, overlap, device)
        col_first, col_count = covering_tensors(width, window_size, overlap, device)
        output = computed.get("output", x)  # unused pointers point at a tensor that is never written
        _suppress_kernel[(triton.cdiv(height, config.block_h) * n_col_tiles, batch)](
            x, output, computed.get("suppression_map", window_sums), computed.get("normalised_gradient", window_sums),
            computed.get("window_mask", window_sums), window_sums, stats, params,
            row_first, row_count, col_first, col_count,
            channels, height, width, rows.count, cols.count, n_col_tiles,
            rows.max_cover, cols.max_cover, rows.extent * cols.extent,
            *x.stride(), *output.stride(),
            IS_UINT8=is_uint8, COMPUTE_F64=compute_f64,
            WRITE_OUTPUT="output" in wanted, WRITE_MAP="suppression_map" in wanted,
            WRITE_NORMALISED="normalised_gradient" in wanted, WRITE_MASK="window_mask" in wanted,
            BLOCK_H=config.block_h, BLOCK_W=config.block_w,
        )
    if "window_mask" in wanted:
        computed["window_mask"] = computed["window_mask"].view(torch.bool)
    if "window_means" in wanted:
        # The kernel's own formula: mean g = (sum m / area - min m) / (max m - min m), 0 for a flat image.
        lowest, highest = stats[:, 0, None, None], stats[:, 1, None, None]
        value_range = highest - lowest
        varies = value_range > 0
        means = (window_sums / (rows.extent * cols.extent) - lowest) / torch.where(varies, value_range, 1)
        computed["window_means"] = torch.where(varies, means, 0)
    return {name: computed[name] for name in wanted}
