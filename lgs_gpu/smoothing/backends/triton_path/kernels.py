"""Fused Triton kernels for Local Gradients Smoothing, each beside its launcher.

Two launches read the image (symbols as in :mod:`lgs_gpu.core.parameters`); both tile each image into
bands of ``band_rows`` rows x strips of ``BLOCK_W`` columns, one program per tile, and walk the
tile's rows. The band height is a launch argument: the launcher fits it to what the GPU holds at
once (:mod:`.occupancy`), so that the grid runs in as few and as full waves as it can.

1. ``_statistics_kernel`` computes the gradient magnitude ``m`` of each row once, keeps a
   per-lane sum of ``m`` over each run of rows covered by the same row windows, adds each finished
   run into the open row windows' per-lane sums, and as a row window ends (or the band does) sums its
   lanes over each column window: the tile's part of the sum of ``m`` over every window meeting it;
   and the tile's min / max of ``m``. A window's sum is split over the (at most MAX_BANDS x
   MAX_STRIPS) tiles it meets and added up later in a fixed order: deterministic, no atomics.
2. ``_suppress_kernel`` first turns the statistics into what it needs (the global reduction that
   forbids a single pass, done per program: no launch of its own): the image's min / max of
   ``m``, and each window over its tile passing γ or not (``mean g = (sum m / area - min) /
   (max - min) > γ``), kept in a per-program scratch table. Then it walks its rows, recomputes
   ``m``, normalises it, ORs the pass flags of the windows covering each pixel and writes
   whichever of ``x * (1 - clip(λ ĝ, 0, 1))``, ``ĝ``, ``g`` and the window mask is asked for.
3. ``_means_kernel`` (only for the ``window_means`` stage) writes every window's mean of ``g``.

The gradient walk: each lane holds two adjacent columns ``c`` and ``c + 1`` (``[BLOCK_W // 2, 2]``
tensors), so each row of each channel is loaded once, at ``c - 1`` to ``c + 2`` (four loads for two
pixels; PREFETCH_ROWS rows ahead of its use, so a load has that many row steps to arrive), and
reduced to its difference ``x[c+1] - x[c-1]`` and smoothing ``x[c-1] + 2 x[c] + x[c+1]``; Sobel x and
y of row ``r`` are then ``d[r-1] + 2 d[r] + d[r+1]`` and ``s[r+1] - s[r-1]``, from rows carried in
registers (images of up to :data:`MAX_CARRIED_CHANNELS` channels; more channels reload the three rows
per channel). A carried uint8 walk steps as many rows per iteration as it has in flight (``UNROLL``:
its registers rotate without moves), the last one's rows past the band computed but not used. Strips
away from the image's first and last column address all four loads from one register; strips at the
border clamp each lane's columns (replicate padding). uint8 images stay exact integers (their Sobel
sums in int32, then float32) and are computed in units of 1/255 (the normalisation is scale-free);
float16 / bfloat16 / float32 in float32; float64 in float64.

DRAM traffic: x read twice and the output written once, plus the tiles' statistics (about 0.25
byte per pixel; ``traffic`` in ``benchmarks/roofline.py``). No launch copies anything to or from
the host or synchronises, so a call can be captured in a CUDA graph. Window geometry is
computed in the kernels from three integers per axis and the stride (:func:`lgs_gpu.core.windows.axis_geometry`),
and the parameters travel as kernel arguments (float64 ones as their bits). Offsets inside an
image are int32 on an int64 image base (int64 throughout for an image of 2**31 elements or more).
``benchmarks/kernel_report.py`` reads the compiled code of every launch; the ``# report:`` tags
on loops, branches and call sites below are how it weights each instruction.
"""

from __future__ import annotations

import contextlib
import math
import struct
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ....core.parameters import STAGES
from ....core.validate import compute_dtype, is_integer
from ....core.windows import axis_geometry, max_cover
from .occupancy import BAND_ROWS_RANGE, UNFITTED_BAND_ROWS, fitted_band_rows, footprint

# 2**23 as float32, and its bits: for an integer 0 <= v < 2**23, the bits plus v read as a float32 are
# 2**23 + v exactly (an integer add and a float add: not the slow integer-to-float unit); for a float
# 0 <= v < 2**23, adding it leaves round-half-even(v) in the low mantissa bits.
_MAGIC = tl.constexpr(8388608.0)
_MAGIC_BITS = tl.constexpr(0x4B000000)
# Images with at most this many channels keep the gradient walk's per-channel state in registers.
MAX_CARRIED_CHANNELS = 4
# How many rows below the current one the walk keeps loaded or in flight (see _step_channel): while a
# step computes, the loads of the next PREFETCH_ROWS rows of every carried channel are on their way.
PREFETCH_ROWS = 3


@triton.jit
def _load_row(row_ptr, offsets):
    """One row of one channel: each lane's pair ``(c, c + 1)`` and its neighbours as ``(x[c - 1], x[c]),
    (x[c], x[c + 1]), (x[c + 1], x[c + 2])``, from four loads (all in bounds: no mask).

    ``offsets``: see :func:`_column_offsets`. Converted on load: uint8 to int32 (its Sobel sums stay
    integers: see :func:`_terms`), the others to the compute dtype.
    """
    left, centre, right, far = offsets
    lane_ptr = row_ptr + centre
    a, b, c, d = tl.load(lane_ptr + left), tl.load(lane_ptr), tl.load(lane_ptr + right), tl.load(lane_ptr + far)
    element = row_ptr.dtype.element_ty
    loaded: tl.constexpr = tl.int32 if element == tl.uint8 else tl.float64 if element == tl.float64 else tl.float32
    a, b, c, d = a.to(loaded), b.to(loaded), c.to(loaded), d.to(loaded)
    return tl.join(a, b), tl.join(b, c), tl.join(c, d)


@triton.jit
def _as_float32(value):
    """An int32 tensor of values in ``[0, 2**23)`` as float32, exactly (see ``_MAGIC``)."""
    return (value + _MAGIC_BITS).to(tl.float32, bitcast=True) - _MAGIC


@triton.jit
def _terms(low, mid, high):
    """A row's Sobel terms: ``(x[c+1] - x[c-1], x[c-1] + 2 x[c] + x[c+1], x[c])`` (of a uint8 row, integers:
    its Sobel sums stay exact and convert once, as ``Σ_c (Sx² + Sy²) <= 4 * 2 * 1020² < 2**23``)."""
    return high - low, low + 2 * mid + high, mid


@triton.jit
def _squared_sobel(up_difference, difference, down_difference, up_smoothing, down_smoothing):
    """``Sx² + Sy²`` of one channel from its three rows' terms (see :func:`_terms`)."""
    sobel_x = up_difference + 2 * difference + down_difference
    sobel_y = down_smoothing - up_smoothing
    return sobel_x * sobel_x + sobel_y * sobel_y


@triton.jit
def _step_channel(plane, ahead, offsets, state):
    """One row step of one channel: ``Sx² + Sy²`` of the current row, its values, and the state one row down.

    The row below arrived; the row one below those in flight (offset ``ahead``) is loaded now, as many
    steps before its use as there are rows in flight.
    """
    terms, loaded = state
    up_d, up_s, d, s, x = terms
    low, middle, high = loaded[0]
    down_d, down_s, down_x = _terms(low, middle, high)
    stepped = ()
    for below in tl.static_range(1, len(loaded)):
        stepped = stepped + (loaded[below],)
    stepped = stepped + (_load_row(plane + ahead, offsets),)
    return _squared_sobel(up_d, d, down_d, up_s, down_s), x, ((d, s, down_d, down_s, down_x), stepped)


@triton.jit
def _reloaded_squares(image, row, offsets, WIDE: tl.constexpr):
    """``Σ_c (Sx² + Sy²)`` of row ``row`` for any number of channels, loading its three rows anew."""
    image_ptr, channels, height, width, stride_c, stride_h, stride_w = image
    index_type = tl.int64 if WIDE else tl.int32
    up = tl.cast(tl.maximum(row - 1, 0), index_type) * stride_h
    mid = tl.cast(row, index_type) * stride_h
    down = tl.cast(tl.minimum(row + 1, height - 1), index_type) * stride_h
    accumulate: tl.constexpr = tl.float64 if image_ptr.dtype.element_ty == tl.float64 else tl.float32
    squares = tl.zeros([offsets[1].shape[0], 2], dtype=accumulate)
    for channel in range(channels):  # report: channels
        plane = image_ptr + tl.cast(channel, index_type) * stride_c
        low, middle, high = _load_row(plane + up, offsets)
        up_d, up_s, _ = _terms(low, middle, high)
        low, middle, high = _load_row(plane + mid, offsets)
        mid_d, _, _ = _terms(low, middle, high)
        low, middle, high = _load_row(plane + down, offsets)
        down_d, down_s, _ = _terms(low, middle, high)
        more = _squared_sobel(up_d, mid_d, down_d, up_s, down_s)
        squares += _as_float32(more) if image_ptr.dtype.element_ty == tl.uint8 else more.to(accumulate)
    return squares


@triton.jit
def _begin_walk(
    image,
    top,
    offsets,
    CHANNELS: tl.constexpr,
    PREFETCH: tl.constexpr,
    WIDE: tl.constexpr,
):
    """The walk's state at row ``top``: rows ``top - 1`` and ``top`` as terms, the PREFETCH below
    loaded (an empty tuple for images with more than MAX_CARRIED_CHANNELS channels, which reload their
    rows). ``image`` is ``(pointer, channels, height, width, stride_c, stride_h, stride_w)``."""
    image_ptr, channels, height, width, stride_c, stride_h, stride_w = image
    index_type: tl.constexpr = tl.int64 if WIDE else tl.int32
    rows = (tl.cast(tl.maximum(top - 1, 0), index_type) * stride_h,)
    for below in tl.static_range(PREFETCH + 1):
        rows = rows + (tl.cast(tl.minimum(top + below, height - 1), index_type) * stride_h,)
    states = ()
    for channel in tl.static_range(CHANNELS):
        plane = image_ptr + channel * stride_c
        low, middle, high = _load_row(plane + rows[0], offsets)
        up_d, up_s, _ = _terms(low, middle, high)
        low, middle, high = _load_row(plane + rows[1], offsets)
        d, s, x = _terms(low, middle, high)
        loaded = ()
        for below in tl.static_range(2, len(rows)):
            loaded = loaded + (_load_row(plane + rows[below], offsets),)
        states = states + (((up_d, up_s, d, s, x), loaded),)
    return states


@triton.jit
def _walk_row(
    image,
    row,
    states,
    offsets,
    CHANNELS: tl.constexpr,
    PREFETCH: tl.constexpr,
    WIDE: tl.constexpr,
):
    """``m`` of row ``row`` (eq. 5; uint8 in units of 1/255, which the normalisation does not see), the
    row's values of each carried channel (for the output), and the walk's state one row down."""
    image_ptr, channels, height, width, stride_c, stride_h, stride_w = image
    index_type: tl.constexpr = tl.int64 if WIDE else tl.int32
    accumulate: tl.constexpr = tl.float64 if image_ptr.dtype.element_ty == tl.float64 else tl.float32
    if CHANNELS > 0:
        ahead = tl.cast(tl.minimum(row + 1 + PREFETCH, height - 1), index_type) * stride_h
        stepped, centres = (), ()
        for channel in tl.static_range(CHANNELS):
            plane = image_ptr + channel * stride_c
            more, x, state = _step_channel(plane, ahead, offsets, states[channel])
            if channel == 0:
                squares = more
            else:
                squares += more
            centres = centres + (x,)
            stepped = stepped + (state,)
        states = stepped
        magnitude = tl.sqrt(_as_float32(squares) if image_ptr.dtype.element_ty == tl.uint8 else squares.to(accumulate))
    else:
        centres = ()
        magnitude = tl.sqrt(_reloaded_squares(image, row, offsets, WIDE))
    return magnitude, centres, states


@triton.jit
def _pair_columns(first, BLOCK_W: tl.constexpr):
    """A strip's columns ``first..first + BLOCK_W - 1`` as ``[BLOCK_W // 2, 2]``: each lane holds a pair."""
    even = first + 2 * tl.arange(0, BLOCK_W // 2)
    return tl.join(even, even + 1)


@triton.jit
def _load_pairs(pointers, mask, other):
    """``tl.load`` of ``[N, 2]`` pairs as two ``[N]`` loads: each lane keeps its pair, nothing moves between lanes."""
    first, second = tl.split(pointers)
    first_mask, second_mask = tl.split(mask)
    return tl.join(tl.load(first, mask=first_mask, other=other), tl.load(second, mask=second_mask, other=other))


@triton.jit
def _store_pairs(pointers, values, mask):
    """``tl.store`` of ``[N, 2]`` pairs as two ``[N]`` stores (see :func:`_load_pairs`)."""
    first, second = tl.split(pointers)
    first_value, second_value = tl.split(values)
    first_mask, second_mask = tl.split(mask)
    tl.store(first, first_value, mask=first_mask)
    tl.store(second, second_value, mask=second_mask)


@triton.jit
def _column_offsets(cols, width, stride_w, CLAMPED: tl.constexpr, index_type: tl.constexpr):
    """Each lane's offset of its pair's first column ``c``, and the steps from it to ``c - 1``, ``c + 1``
    and ``c + 2`` (see :func:`_load_row`).

    In strips at the image's border the four are clamped into the image (replicate padding;
    lanes past the image read its last column) and the steps are per lane; elsewhere the steps
    are ``-1, 1, 2`` times ``stride_w`` for every lane, which the compiler folds into the loads' addresses.
    """
    even, _ = tl.split(cols)
    if CLAMPED:
        column = tl.minimum(even, width - 1)
        centre = (column * stride_w).to(index_type)
        left = (tl.maximum(column - 1, 0) * stride_w).to(index_type) - centre
        right = (tl.minimum(even + 1, width - 1) * stride_w).to(index_type) - centre
        far = (tl.minimum(even + 2, width - 1) * stride_w).to(index_type) - centre
    else:
        centre = (even * stride_w).to(index_type)
        left = -stride_w
        right = stride_w
        far = 2 * stride_w
    return left, centre, right, far


@triton.jit
def _nan_minimum(a, b):
    """min that propagates NaN, as ``torch.amin`` does (an image with NaN gets a NaN range)."""
    return tl.minimum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _nan_maximum(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _window_start(index, step, last_start):
    """Start of window ``index`` on an axis (see :mod:`lgs_gpu.core.windows`): ``min(index * step, last_start)``."""
    return tl.minimum(index * step, last_start)


@triton.jit
def _first_covering(pixel, extent, step, count):
    """The first window (of ``count``) covering ``pixel``: the regular one ending after it, else the last."""
    return tl.minimum(tl.maximum(pixel - extent + step, 0) // step, count - 1)


@triton.jit
def _last_covering(pixel, step, last_start, count):
    """The last window covering ``pixel``: the clamped last window from ``last_start`` on, else ``pixel // step``."""
    return tl.where(pixel >= last_start, count - 1, pixel // step)


@triton.jit
def _run_boundary(next_start, next_end, bottom, height, n_windows, extent, step, last_start):
    """The row after the current run: where the next window starts or the oldest open one ends, or the band ends."""
    start_row = tl.where(next_start < n_windows, _window_start(next_start, step, last_start), height)
    end_row = _window_start(next_end, step, last_start) + extent
    return start_row, end_row, tl.minimum(tl.minimum(start_row, end_row), bottom)


@triton.jit
def _store_window(partial_row, total, cols, lane, col_windows, STEP: tl.constexpr, COL_SLOTS: tl.constexpr):
    """One row window's sums over each column window meeting the strip (``total``: its lanes' sums of ``m``),
    stored at ``partial_row[kc]``; a lane's NaN or infinity reaches only the windows holding it."""
    first_col_window, col_extent, col_last_start = col_windows
    for kc in range(COL_SLOTS):  # not static_range: Triton's coalescing pass is superlinear in the IR's size
        start = _window_start(first_col_window + kc, STEP, col_last_start)
        in_window = lane & (cols >= start) & (cols < start + col_extent)
        tl.store(partial_row + kc, tl.sum(tl.sum(tl.where(in_window, total, 0.0), axis=1), axis=0))


@triton.jit
def _statistics_walk(
    image,
    tile,
    row_windows,
    sums,
    STEP: tl.constexpr,
    CHANNELS: tl.constexpr,
    PREFETCH: tl.constexpr,
    UNROLL: tl.constexpr,
    WIDE: tl.constexpr,
    CLAMPED: tl.constexpr,
    ROW_COVER: tl.constexpr,
    COL_SLOTS: tl.constexpr,
):
    """Walk one tile's rows: store each row window's sums of ``m`` over the column windows (slot ``kr``:
    row window first covering the band's top + kr, at ``partial_base + kr * COL_SLOTS``); return the
    lanes' min / max of ``m``.

    ``image``: see :func:`_begin_walk`; ``tile``: ``(cols, lane, top, bottom)``; ``row_windows``:
    ``(n_row_windows, row_extent, row_last_start)``; ``sums``: ``(partial_base, col_windows)``, the
    latter as :func:`_store_window` takes them.
    """
    image_ptr, channels, height, width, stride_c, stride_h, stride_w = image
    partial_base, col_windows = sums
    cols, lane, top, bottom = tile
    n_row_windows, row_extent, row_last_start = row_windows
    index_type: tl.constexpr = tl.int64 if WIDE else tl.int32
    accumulate: tl.constexpr = partial_base.dtype.element_ty  # the tables hold the compute dtype
    offsets = _column_offsets(cols, width, stride_w, CLAMPED, index_type)
    # Windows [next_end, next_start) cover the current run of rows, at most ROW_COVER: window next_end + k
    # sums its runs in totals[k] from its first row to its last (or the band's), then stores them.
    first = _first_covering(top, row_extent, STEP, n_row_windows)
    next_end = first
    next_start = _last_covering(top, STEP, row_last_start, n_row_windows) + 1
    start_row, end_row, boundary = _run_boundary(
        next_start, next_end, bottom, height, n_row_windows, row_extent, STEP, row_last_start
    )
    run = tl.zeros(cols.shape, dtype=accumulate)
    totals = ()
    for _open in tl.static_range(ROW_COVER):
        totals = totals + (tl.zeros(cols.shape, dtype=accumulate),)
    lowest = tl.full(cols.shape, float("inf"), dtype=accumulate)
    highest = tl.full(cols.shape, float("-inf"), dtype=accumulate)
    states = _begin_walk(image, top, offsets, CHANNELS, PREFETCH, WIDE)
    for group in range(top, bottom, UNROLL):  # report: walk
        rows_left = bottom - group  # the group's steps from this one on are past the band's bottom
        for step in tl.static_range(UNROLL):
            row = group + step
            magnitude, _, states = _walk_row(image, row, states, offsets, CHANNELS, PREFETCH, WIDE)
            # min / max propagating NaN (as torch.amin / amax) over the lanes in the image and the rows in
            # the band. A row past the band's bottom adds to a run that never ends: no window gets it.
            counted = (lane & (step < rows_left) if step > 0 else lane) if CLAMPED else step < rows_left
            if CLAMPED or step > 0:
                lowest = _nan_minimum(lowest, tl.where(counted, magnitude, float("inf")))
                highest = _nan_maximum(highest, tl.where(counted, magnitude, float("-inf")))
            else:
                lowest = _nan_minimum(lowest, magnitude)
                highest = _nan_maximum(highest, magnitude)
            run += magnitude
            if row + 1 == boundary:  # report: run-end
                # The open windows take the run; the oldest is stored where it ends, every one at the
                # band's bottom; then the others move up a place.
                ended = row + 1 == end_row
                stepped = ()
                for k in tl.static_range(ROW_COVER):
                    total = tl.where(next_end + k < next_start, totals[k] + run, totals[k])
                    stored = ((row + 1 == bottom) | ended) if k == 0 else row + 1 == bottom
                    if (next_end + k < next_start) & stored:  # report: window-end
                        _store_window(
                            partial_base + (next_end + k - first) * COL_SLOTS,
                            total,
                            cols,
                            lane,
                            col_windows,
                            STEP,
                            COL_SLOTS,
                        )
                    stepped = stepped + (total,)
                totals = ()
                for k in tl.static_range(ROW_COVER):
                    moved = stepped[k + 1] if k + 1 < ROW_COVER else tl.zeros(cols.shape, dtype=accumulate)
                    totals = totals + (tl.where(ended, moved, stepped[k]),)
                run = tl.zeros(cols.shape, dtype=accumulate)
                next_start += (row + 1 == start_row).to(tl.int32)
                next_end += ended.to(tl.int32)
                start_row, end_row, boundary = _run_boundary(
                    next_start, next_end, bottom, height, n_row_windows, row_extent, STEP, row_last_start
                )
    return lowest, highest


@triton.jit(do_not_specialize=["band_rows"])  # one compiled kernel for every band height
def _statistics_kernel(
    x_ptr,  # *T [B, C, H, W] input, any strides
    partials_ptr,  # *f32|f64 [B, n_tiles, ROW_SLOTS, COL_SLOTS] out: each tile's part of each window's sum of m
    ranges_ptr,  # *f32|f64 [B, n_tiles, 2] out: (min m, max m) over each tile
    channels,
    height,
    width,  # C, H, W
    stride_b,
    stride_c,
    stride_h,
    stride_w,  # strides of x in elements
    n_row_windows,
    row_extent,
    row_last_start,  # row windows (see lgs_gpu.core.windows.axis_geometry)
    n_col_windows,
    col_extent,
    col_last_start,  # column windows
    n_strips,  # tiles: bands of band_rows rows x strips of BLOCK_W columns
    band_rows,  # rows per tile (a launch argument: the launcher fits the grid to the GPU)
    STEP: tl.constexpr,  # window_size - overlap: the windows' stride on both axes
    CHANNELS: tl.constexpr,  # C when <= MAX_CARRIED_CHANNELS (carried walk), else 0 (reloading walk)
    PREFETCH: tl.constexpr,  # rows a carried walk keeps in flight below the current one
    UNROLL: tl.constexpr,  # row steps per iteration of the walk (PREFETCH: no register moves; or 1)
    WIDE: tl.constexpr,  # int64 offsets inside an image (it has 2**31 elements or more)
    ROW_SLOTS: tl.constexpr,  # the most row windows meeting one band
    COL_SLOTS: tl.constexpr,  # the most column windows meeting one strip
    ROW_COVER: tl.constexpr,  # the most row windows covering one row
    BLOCK_W: tl.constexpr,  # columns per strip (a power of two, at least 16)
):
    tile = tl.program_id(0)
    image = tl.program_id(1).to(tl.int64)
    band = tile // n_strips
    strip = tile % n_strips
    top = band * band_rows
    bottom = tl.minimum(top + band_rows, height)
    cols = _pair_columns(strip * BLOCK_W, BLOCK_W)
    lane = cols < width
    n_tiles = tl.num_programs(0)
    source = (x_ptr + image * stride_b, channels, height, width, stride_c, stride_h, stride_w)
    walked = (cols, lane, top, bottom)
    row_windows = (n_row_windows, row_extent, row_last_start)
    # This tile's part of each window's sum: slot (kr, kc) for row window kr after the first covering the
    # band's top and column window kc after the first covering the strip's first column.
    partial_base = partials_ptr + (image * n_tiles + tile) * ROW_SLOTS * COL_SLOTS
    first_col_window = _first_covering(strip * BLOCK_W, col_extent, STEP, n_col_windows)
    sums = (partial_base, (first_col_window, col_extent, col_last_start))
    # Strips off the image's first and last column need no clamping: one address per row and channel.
    if (strip > 0) & ((strip + 1) * BLOCK_W < width):
        lowest, highest = _statistics_walk(  # report: interior
            source, walked, row_windows, sums, STEP, CHANNELS, PREFETCH, UNROLL, WIDE, False, ROW_COVER, COL_SLOTS
        )
    else:
        lowest, highest = _statistics_walk(  # report: border
            source, walked, row_windows, sums, STEP, CHANNELS, PREFETCH, UNROLL, WIDE, True, ROW_COVER, COL_SLOTS
        )
    range_ptr = ranges_ptr + (image * n_tiles + tile) * 2
    tl.store(range_ptr, tl.reduce(tl.reduce(lowest, 1, _nan_minimum), 0, _nan_minimum))
    tl.store(range_ptr + 1, tl.reduce(tl.reduce(highest, 1, _nan_maximum), 0, _nan_maximum))


@triton.jit
def _image_range(image_ranges, n_tiles, RANGE_BLOCK: tl.constexpr):
    """An image's (min m, max m) from its tiles' (NaN if any is NaN, as ``torch.amin`` / ``amax``)."""
    accumulate: tl.constexpr = image_ranges.dtype.element_ty
    lowest = tl.full([RANGE_BLOCK], float("inf"), dtype=accumulate)
    highest = tl.full([RANGE_BLOCK], float("-inf"), dtype=accumulate)
    for start in range(0, n_tiles, RANGE_BLOCK):  # report: tile-ranges
        index = start + tl.arange(0, RANGE_BLOCK)
        lowest = _nan_minimum(lowest, tl.load(image_ranges + index * 2, mask=index < n_tiles, other=float("inf")))
        highest = _nan_maximum(
            highest, tl.load(image_ranges + index * 2 + 1, mask=index < n_tiles, other=float("-inf"))
        )
    return tl.reduce(lowest, 0, _nan_minimum), tl.reduce(highest, 0, _nan_maximum)


@triton.jit
def _window_means(
    image_partials,
    row_window,
    col_window,
    valid,
    low,
    high,
    n_strips,
    window_area,
    row_windows,
    col_windows,
    band_rows,
    STEP: tl.constexpr,
    STRIP_WIDTH: tl.constexpr,
    ROW_SLOTS: tl.constexpr,
    COL_SLOTS: tl.constexpr,
    MAX_BANDS: tl.constexpr,
    MAX_STRIPS: tl.constexpr,
):
    """Mean of ``g`` over windows ``row_window[:, None] x col_window[None, :]`` from the tiles' partial sums.

    A window's sum is split over the bands and strips it meets (at most MAX_BANDS x MAX_STRIPS);
    mean g = (sum m / area - min m) / (max m - min m), and 0 for a flat image (or one with NaN).
    ``row_windows`` / ``col_windows``: ``(count, extent, last_start)`` of each axis.
    """
    n_row_windows, row_extent, row_last_start = row_windows
    n_col_windows, col_extent, col_last_start = col_windows
    accumulate: tl.constexpr = image_partials.dtype.element_ty
    row_start = _window_start(row_window, STEP, row_last_start)
    col_start = _window_start(col_window, STEP, col_last_start)
    first_band, last_band = row_start // band_rows, (row_start + row_extent - 1) // band_rows
    first_strip, last_strip = col_start // STRIP_WIDTH, (col_start + col_extent - 1) // STRIP_WIDTH
    window_sum = tl.zeros(valid.shape, dtype=accumulate)
    for b in tl.static_range(MAX_BANDS):
        band = first_band + b
        row_slot = row_window - _first_covering(band * band_rows, row_extent, STEP, n_row_windows)
        for s in tl.static_range(MAX_STRIPS):
            strip = first_strip + s
            col_slot = col_window - _first_covering(strip * STRIP_WIDTH, col_extent, STEP, n_col_windows)
            tile = band[:, None] * n_strips + strip[None, :]
            offset = (tile * ROW_SLOTS + row_slot[:, None]) * COL_SLOTS + col_slot[None, :]
            present = valid & (band <= last_band)[:, None] & (strip <= last_strip)[None, :]
            window_sum += tl.load(image_partials + offset, mask=present, other=0.0)
    value_range = high - low
    varies = value_range > 0  # False for a flat image, and for one with NaN (as the torch path)
    return tl.where(varies, (window_sum / window_area - low) / tl.where(varies, value_range, 1.0), 0.0)


@triton.jit(do_not_specialize=["band_rows"])
def _means_kernel(
    partials_ptr,  # *f32|f64 [B, n_tiles, ROW_SLOTS, COL_SLOTS] the statistics kernel's partial window sums
    ranges_ptr,  # *f32|f64 [B, n_tiles, 2] (min m, max m) per tile
    means_ptr,  # *f32|f64 [B, n_row_windows, n_col_windows] out: mean of g over each window
    n_tiles,
    n_strips,
    window_area,
    n_col_blocks,
    n_row_windows,
    row_extent,
    row_last_start,
    n_col_windows,
    col_extent,
    col_last_start,
    band_rows,  # the statistics kernel's tiles
    STEP: tl.constexpr,
    STRIP_WIDTH: tl.constexpr,
    ROW_SLOTS: tl.constexpr,
    COL_SLOTS: tl.constexpr,
    MAX_BANDS: tl.constexpr,
    MAX_STRIPS: tl.constexpr,  # the most bands / strips one window meets
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
    RANGE_BLOCK: tl.constexpr,
):
    image = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    low, high = _image_range(ranges_ptr + image * n_tiles * 2, n_tiles, RANGE_BLOCK)
    row_window = (block // n_col_blocks) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    col_window = (block % n_col_blocks) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    valid = (row_window < n_row_windows)[:, None] & (col_window < n_col_windows)[None, :]
    means = _window_means(
        partials_ptr + image * n_tiles * ROW_SLOTS * COL_SLOTS,
        row_window,
        col_window,
        valid,
        low,
        high,
        n_strips,
        window_area,
        (n_row_windows, row_extent, row_last_start),
        (n_col_windows, col_extent, col_last_start),
        band_rows,
        STEP,
        STRIP_WIDTH,
        ROW_SLOTS,
        COL_SLOTS,
        MAX_BANDS,
        MAX_STRIPS,
    )
    window = row_window[:, None] * n_col_windows + col_window[None, :]
    tl.store(means_ptr + image * n_row_windows * n_col_windows + window, means, mask=valid)


@triton.jit
def _covered(
    table,
    row_first,
    row_last,
    lane_windows,
    COL_SLOTS: tl.constexpr,
    MAX_ROW_COVER: tl.constexpr,
    MAX_COL_COVER: tl.constexpr,
):
    """Whether any window covering rows' windows ``row_first..row_last`` x each lane's columns passes.

    ``table`` is ``(passes_ptr, first_row_window, first_col_window)``: this program's table of its
    windows' pass flags (see :func:`_suppress_kernel`) and the windows of its first slot;
    ``lane_windows`` is ``(col_first, col_count)``, the windows covering each lane's column.
    """
    passes_ptr, first_row_window, first_col_window = table
    col_first, col_count = lane_windows
    covered = col_count < 0
    for a in range(MAX_ROW_COVER):  # not static_range: compile time (see _store_window)
        row_slot = row_first + a - first_row_window
        for b in tl.static_range(MAX_COL_COVER):
            valid = (row_first + a <= row_last) & (b < col_count)
            flag = _load_pairs(passes_ptr + row_slot * COL_SLOTS + col_first + b - first_col_window, valid, 0)
            covered = covered | (flag != 0)
    return covered


@triton.jit
def _next_cover_change(row_first, row_last, height, n_windows, extent, step, last_start):
    """The next row whose covering windows differ: where the first one ends or the next one starts."""
    ends = _window_start(row_first, step, last_start) + extent
    starts = tl.where(row_last + 1 < n_windows, _window_start(row_last + 1, step, last_start), height)
    return tl.minimum(ends, starts)


@triton.jit
def _store_row(out_row_ptr, out_col, value, factor, lane):
    """``value * factor`` into one output row (uint8, ``value`` as int32: rounded half-to-even without a
    conversion unit)."""
    if out_row_ptr.dtype.element_ty == tl.uint8:
        # value <= 255 and factor in [0, 1]: adding 2**23 leaves the rounded result in the low byte.
        scaled = _as_float32(value) * factor + _MAGIC
        result = scaled.to(tl.int32, bitcast=True).to(tl.uint8)
    else:
        result = (value * factor).to(out_row_ptr.dtype.element_ty)
    _store_pairs(out_row_ptr + out_col, result, lane)


@triton.jit
def _suppress_walk(
    image,
    out,
    planes,
    table,
    tile,
    normalisation,
    smoothing_factor,
    row_windows,
    col_windows,
    STEP: tl.constexpr,
    CHANNELS: tl.constexpr,
    PREFETCH: tl.constexpr,
    UNROLL: tl.constexpr,
    WIDE: tl.constexpr,
    CLAMPED: tl.constexpr,
    WRITE_OUTPUT: tl.constexpr,
    WRITE_MAP: tl.constexpr,
    WRITE_NORMALISED: tl.constexpr,
    WRITE_MASK: tl.constexpr,
    MAX_ROW_COVER: tl.constexpr,
    MAX_COL_COVER: tl.constexpr,
    COL_SLOTS: tl.constexpr,
):
    """Walk one tile's rows: recompute ``m``, normalise, collate the passing windows, write the stages.

    ``image``, ``tile``, ``row_windows``: as :func:`_statistics_walk`; ``out``: ``(pointer, stride_c,
    stride_h, stride_w)`` of the output image; ``planes``: ``(map_ptr, normalised_ptr, mask_ptr,
    offset of the image's plane)``; ``table``: see :func:`_covered`; ``normalisation``: ``(min m,
    1 / (max m - min m), whether the range is not empty)``.
    """
    image_ptr, channels, height, width, stride_c, stride_h, stride_w = image
    out_image_ptr, out_stride_c, out_stride_h, out_stride_w = out
    map_ptr, normalised_ptr, mask_ptr, plane_base = planes
    cols, lane, top, bottom = tile
    lowest, scale, varies = normalisation
    n_row_windows, row_extent, row_last_start = row_windows
    n_col_windows, col_extent, col_last_start = col_windows
    index_type: tl.constexpr = tl.int64 if WIDE else tl.int32
    offsets = _column_offsets(cols, width, stride_w, CLAMPED, index_type)
    out_col = (cols * out_stride_w).to(index_type)
    pixels = tl.join(offsets[1], offsets[1] + offsets[2])  # each lane's pair, for a reloading walk's output
    # The windows covering each lane's column, and each row's (a contiguous run of indices each).
    col_first = _first_covering(cols, col_extent, STEP, n_col_windows)
    lane_windows = (col_first, _last_covering(cols, STEP, col_last_start, n_col_windows) - col_first + 1)
    row_first = _first_covering(top, row_extent, STEP, n_row_windows)
    row_last = _last_covering(top, STEP, row_last_start, n_row_windows)
    change = _next_cover_change(row_first, row_last, height, n_row_windows, row_extent, STEP, row_last_start)
    covered = _covered(table, row_first, row_last, lane_windows, COL_SLOTS, MAX_ROW_COVER, MAX_COL_COVER)
    states = _begin_walk(image, top, offsets, CHANNELS, PREFETCH, WIDE)
    for group in range(top, bottom, UNROLL):  # report: walk
        rows_left = bottom - group  # the group's steps from this one on are past the band's bottom
        for step in tl.static_range(UNROLL):
            row = group + step
            written = lane & (step < rows_left) if step > 0 else lane  # past the bottom: computed, not written
            if (row == change) & (step < rows_left):  # report: cover-change
                # At most one window ends and one starts per row.
                row_first += (_window_start(row_first, STEP, row_last_start) + row_extent <= row).to(tl.int32)
                row_last += (
                    (row_last + 1 < n_row_windows) & (_window_start(row_last + 1, STEP, row_last_start) <= row)
                ).to(tl.int32)
                change = _next_cover_change(
                    row_first, row_last, height, n_row_windows, row_extent, STEP, row_last_start
                )
                covered = _covered(table, row_first, row_last, lane_windows, COL_SLOTS, MAX_ROW_COVER, MAX_COL_COVER)
            magnitude, centres, states = _walk_row(image, row, states, offsets, CHANNELS, PREFETCH, WIDE)
            normalised = tl.where(varies, (magnitude - lowest) * scale, 0.0)
            suppressed = tl.where(covered, normalised, 0.0)
            plane_offsets = plane_base + (tl.cast(row, index_type) * width + cols)
            if WRITE_MAP:
                _store_pairs(map_ptr + plane_offsets, suppressed, written)
            if WRITE_NORMALISED:
                _store_pairs(normalised_ptr + plane_offsets, normalised, written)
            if WRITE_MASK:
                _store_pairs(mask_ptr + plane_offsets, covered.to(tl.uint8), written)
            if WRITE_OUTPUT:
                factor = 1 - tl.minimum(tl.maximum(smoothing_factor * suppressed, 0.0), 1.0)
                out_row = out_image_ptr + tl.cast(row, index_type) * out_stride_h
                if CHANNELS > 0:
                    for channel in tl.static_range(CHANNELS):
                        _store_row(out_row + channel * out_stride_c, out_col, centres[channel], factor, written)
                else:
                    in_row = image_ptr + tl.cast(row, index_type) * stride_h
                    for channel in range(channels):  # report: output-channels
                        value = _load_pairs(in_row + tl.cast(channel, index_type) * stride_c + pixels, lane, 0)
                        value = value.to(tl.int32 if image_ptr.dtype.element_ty == tl.uint8 else lowest.dtype)
                        _store_row(
                            out_row + tl.cast(channel, index_type) * out_stride_c, out_col, value, factor, written
                        )


@triton.jit(do_not_specialize=["threshold", "smoothing_factor", "band_rows"])
def _suppress_kernel(
    x_ptr,  # *T [B, C, H, W] input, any strides
    out_ptr,  # *T [B, C, H, W] output, any strides (unused unless WRITE_OUTPUT)
    map_ptr,  # *f32|f64 [B, H, W] out: ĝ (unused unless WRITE_MAP)
    normalised_ptr,  # *f32|f64 [B, H, W] out: g (unused unless WRITE_NORMALISED)
    mask_ptr,  # *u8 [B, H, W] out: 1 inside a passing window (unused unless WRITE_MASK)
    partials_ptr,  # *f32|f64 [B, n_tiles, ROW_SLOTS, COL_SLOTS] the statistics kernel's partial window sums
    ranges_ptr,  # *f32|f64 [B, n_tiles, 2] (min m, max m) per tile
    passes_ptr,  # *u8 [B, n_tiles, ROW_SLOTS, COL_SLOTS] scratch: each program's windows' pass flags
    threshold,  # γ: a float (float32 compute) or the int64 bits of a float64
    smoothing_factor,  # λ: likewise
    channels,
    height,
    width,
    stride_b,
    stride_c,
    stride_h,
    stride_w,  # x strides in elements
    out_stride_b,
    out_stride_c,
    out_stride_h,
    out_stride_w,  # output strides in elements
    n_row_windows,
    row_extent,
    row_last_start,
    n_col_windows,
    col_extent,
    col_last_start,
    n_strips,
    band_rows,  # tiles: bands of band_rows rows x strips of BLOCK_W columns (the statistics kernel's)
    STEP: tl.constexpr,
    CHANNELS: tl.constexpr,
    PREFETCH: tl.constexpr,
    UNROLL: tl.constexpr,  # CHANNELS to WIDE: as the statistics kernel's
    WIDE: tl.constexpr,
    WRITE_OUTPUT: tl.constexpr,
    WRITE_MAP: tl.constexpr,
    WRITE_NORMALISED: tl.constexpr,
    WRITE_MASK: tl.constexpr,
    MAX_ROW_COVER: tl.constexpr,
    MAX_COL_COVER: tl.constexpr,  # the most windows covering one row / column
    ROW_SLOTS: tl.constexpr,
    COL_SLOTS: tl.constexpr,
    MAX_BANDS: tl.constexpr,
    MAX_STRIPS: tl.constexpr,
    RANGE_BLOCK: tl.constexpr,
    SLOT_COLUMNS: tl.constexpr,  # a power of two >= COL_SLOTS
    BLOCK_W: tl.constexpr,
):
    tile = tl.program_id(0)
    image = tl.program_id(1).to(tl.int64)
    n_tiles = tl.num_programs(0)
    if ranges_ptr.dtype.element_ty == tl.float64:  # float64 compute: λ and γ travel as their bits
        threshold = threshold.to(tl.int64).to(tl.float64, bitcast=True)
        smoothing_factor = smoothing_factor.to(tl.int64).to(tl.float64, bitcast=True)
    band = tile // n_strips
    strip = tile % n_strips
    top = band * band_rows
    bottom = tl.minimum(top + band_rows, height)
    cols = _pair_columns(strip * BLOCK_W, BLOCK_W)
    lane = cols < width

    # The image's range of m, and the pass flags of the windows over this tile (rows from the one
    # covering `top`, columns from the one covering the strip's first column), kept in a scratch
    # table the walk reads: the window test runs here, with no launch of its own.
    low, high = _image_range(ranges_ptr + image * n_tiles * 2, n_tiles, RANGE_BLOCK)
    row_windows = (n_row_windows, row_extent, row_last_start)
    col_windows = (n_col_windows, col_extent, col_last_start)
    first_row_window = _first_covering(top, row_extent, STEP, n_row_windows)
    first_col_window = _first_covering(strip * BLOCK_W, col_extent, STEP, n_col_windows)
    row_window = first_row_window + tl.arange(0, ROW_SLOTS)
    col_window = first_col_window + tl.arange(0, SLOT_COLUMNS)
    slot_valid = (row_window < n_row_windows)[:, None] & (col_window < n_col_windows)[None, :]
    slot_valid = slot_valid & (tl.arange(0, SLOT_COLUMNS) < COL_SLOTS)[None, :]
    means = _window_means(
        partials_ptr + image * n_tiles * ROW_SLOTS * COL_SLOTS,
        row_window,
        col_window,
        slot_valid,
        low,
        high,
        n_strips,
        row_extent * col_extent,
        row_windows,
        col_windows,
        band_rows,
        STEP,
        BLOCK_W,
        ROW_SLOTS,
        COL_SLOTS,
        MAX_BANDS,
        MAX_STRIPS,
    )
    tile_passes = passes_ptr + (image * n_tiles + tile) * ROW_SLOTS * COL_SLOTS
    slot = tl.arange(0, ROW_SLOTS)[:, None] * COL_SLOTS + tl.arange(0, SLOT_COLUMNS)[None, :]
    tl.store(tile_passes + slot, (means > threshold).to(tl.uint8), mask=slot_valid)
    tl.debug_barrier()  # the flags are read by other threads of this program

    value_range = high - low
    varies = value_range > 0
    normalisation = (low, 1 / tl.where(varies, value_range, 1.0), varies)
    source = (x_ptr + image * stride_b, channels, height, width, stride_c, stride_h, stride_w)
    out = (out_ptr + image * out_stride_b, out_stride_c, out_stride_h, out_stride_w)
    planes = (map_ptr, normalised_ptr, mask_ptr, image * height * width)
    table = (tile_passes, first_row_window, first_col_window)
    walked = (cols, lane, top, bottom)
    if (strip > 0) & ((strip + 1) * BLOCK_W < width):  # off the first and last column: no clamping
        _suppress_walk(  # report: interior
            source,
            out,
            planes,
            table,
            walked,
            normalisation,
            smoothing_factor,
            row_windows,
            col_windows,
            STEP,
            CHANNELS,
            PREFETCH,
            UNROLL,
            WIDE,
            False,
            WRITE_OUTPUT,
            WRITE_MAP,
            WRITE_NORMALISED,
            WRITE_MASK,
            MAX_ROW_COVER,
            MAX_COL_COVER,
            COL_SLOTS,
        )
    else:
        _suppress_walk(  # report: border
            source,
            out,
            planes,
            table,
            walked,
            normalisation,
            smoothing_factor,
            row_windows,
            col_windows,
            STEP,
            CHANNELS,
            PREFETCH,
            UNROLL,
            WIDE,
            True,
            WRITE_OUTPUT,
            WRITE_MAP,
            WRITE_NORMALISED,
            WRITE_MASK,
            MAX_ROW_COVER,
            MAX_COL_COVER,
            COL_SLOTS,
        )


def _tiling(window_size: int, overlap: int, tile: int) -> tuple[int, int, int]:
    """Bounds for tiles of ``tile`` pixels on any axis length: the most windows meeting one tile, the
    most tiles meeting one window, the most windows covering one pixel (the clamped last one included).

    Example:
        >>> _tiling(15, 5, 48), _tiling(15, 5, 64)
        ((8, 2, 3), (9, 2, 3))
    """
    step = window_size - overlap
    return (
        math.ceil((tile - 1 + window_size) / step) + 1,
        math.ceil((window_size - 1) / tile) + 1,
        max_cover(window_size, overlap),
    )


def _slot_rows(window_size: int, overlap: int, band_rows: int) -> int:
    """Rows of a tile's window table: a power of two, at least 16 (a 128-row band's at the default stride)."""
    return max(16, triton.next_power_of_2(_tiling(window_size, overlap, band_rows)[0]))


def _band_range(window_size: int, overlap: int, band_rows: int | None) -> tuple[int, int]:
    """The band heights a launch may take: ``band_rows`` if fixed, else those of :data:`BAND_ROWS_RANGE` whose
    window table (in registers) is no larger than the shortest band's: small strides meet many windows.

    Example:
        >>> _band_range(15, 5, None), _band_range(15, 14, None), _band_range(15, 5, 7)
        ((16, 128), (16, 17), (7, 7))
    """
    if band_rows is not None:
        return band_rows, band_rows
    (low, high), step = BAND_ROWS_RANGE, window_size - overlap
    limit = _slot_rows(window_size, overlap, low)  # _tiling's first bound, solved for the band
    return low, min(high, (limit - 1) * step + 1 - window_size)


@dataclass(frozen=True)
class LaunchConfig:
    """Tile sizes of one LGS launch; ``None`` takes :data:`DEFAULT_CONFIG`'s.

    ``band_rows=None`` fits the bands to the GPU (:func:`.occupancy.fitted_band_rows`). Tests under
    ``TRITON_INTERPRET=1`` pass large tiles: the interpreter pays per program and per row step.
    """

    band_rows: int | None = None  # rows per program (None: fitted to the GPU's waves)
    strip_width: int | None = None  # columns per program (a power of two)
    num_warps: int | None = None  # warps per program (a power of two)

    def resolved(self) -> LaunchConfig:
        """This config with every ``None`` but ``band_rows`` replaced by the default, checked."""
        values = {name: getattr(DEFAULT_CONFIG, name) if value is None else value for name, value in vars(self).items()}
        for name, value in values.items():
            if value is not None and (not is_integer(value) or value < 1):
                raise ValueError(f"LaunchConfig.{name} must be a positive int. Got {value!r}")
        for name, least in (("strip_width", 16), ("num_warps", 1)):
            if values[name] & (values[name] - 1) or values[name] < least:
                raise ValueError(f"LaunchConfig.{name} must be a power of two >= {least}. Got {values[name]}")
        return LaunchConfig(**values)


# The tile sizes a launcher uses unless told otherwise (chosen with benchmarks/kernel_report.py).
DEFAULT_CONFIG = LaunchConfig(band_rows=None, strip_width=64, num_warps=1)
MEANS_BLOCK = 32  # rows and columns of windows per program of the window-means kernel
RANGE_BLOCK = 128  # tile ranges reduced at once
# ptxas's register cap for the uint8 kernels, where each fits it without local memory: left to itself
# it takes a few more (sm_90: 141 and 150), which costs an SM resident programs.
UINT8_REGISTER_CAP = 128
# CUDA caps grid dimension 1 at 65535: larger batches are launched in chunks.
MAX_GRID_BATCH = 65535


def stages(
    x: torch.Tensor,
    smoothing_factor: float,
    threshold: float,
    window_size: int,
    overlap: int,
    wanted: tuple[str, ...] = STAGES,
    config: LaunchConfig | None = None,
    traced: bool = False,
) -> dict[str, torch.Tensor]:
    """The ``wanted`` stages of LGS (names in :data:`STAGES`) from one launch of each kernel.

    ``output`` ``[B, C, H, W]`` in ``x``'s dtype and memory format; ``normalised_gradient`` and
    ``suppression_map`` ``[B, H, W]`` in the compute dtype; ``window_mask`` ``[B, H, W]`` bool;
    ``window_means`` ``[B, n_rows, n_cols]``. The suppress kernel writes only what is asked for.
    ``traced``: a compiler traces the call (sizes may be symbolic): the kernels go through
    ``torch.library.wrap_triton`` so that it sees them. Nothing here depends on the image size but
    the grids and runtime arguments, so one traced graph serves every batch, height and width.
    """
    if x.dim() != 4:
        raise ValueError(f"the Triton kernels expect [B, C, H, W] images. Got shape {tuple(x.shape)}")
    unknown = set(wanted) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown LGS stage(s) {sorted(unknown)}; accepted: {', '.join(STAGES)}")
    config = (config or LaunchConfig()).resolved()
    if x.shape[0] > MAX_GRID_BATCH:
        rest = (smoothing_factor, threshold, window_size, overlap, wanted, config, traced)
        parts = [stages(x[start : start + MAX_GRID_BATCH], *rest) for start in range(0, x.shape[0], MAX_GRID_BATCH)]
        return {name: torch.cat([part[name] for part in parts]) for name in wanted}
    # Launch on the tensor's GPU, not on whichever is current (a tracer places the launches itself).
    on_device = torch.cuda.device(x.device) if x.is_cuda and not traced else contextlib.nullcontext()
    with on_device:
        return _launch(x, smoothing_factor, threshold, window_size, overlap, frozenset(wanted), config, traced)


def _scalar_argument(value: float, compute_f64: bool) -> float | int:
    """A parameter as a kernel argument: a float (passed as float32), or a float64's bits as an int."""
    return struct.unpack("<q", struct.pack("<d", value))[0] if compute_f64 else float(value)


def _needs_wide_offsets(x: torch.Tensor, out: torch.Tensor | None) -> bool:
    """Whether an offset inside one image (of x, of the output or of a ``[H, W]`` stage plane) can reach 2**31."""

    def extent(tensor: torch.Tensor) -> int:
        return sum((size - 1) * abs(stride) for size, stride in zip(tensor.shape[1:], tensor.stride()[1:], strict=True))

    largest = max(extent(x), extent(out) if out is not None else 0, x.shape[2] * x.shape[3])
    return largest >= 2**31


def _launch(
    x: torch.Tensor,
    smoothing_factor: float,
    threshold: float,
    window_size: int,
    overlap: int,
    wanted: frozenset[str],
    config: LaunchConfig,
    traced: bool,
) -> dict[str, torch.Tensor]:
    """Allocate, compute the grids and launch the kernels for at most MAX_GRID_BATCH images."""
    batch, channels, height, width = x.shape
    device = x.device
    accumulate = compute_dtype(x.dtype)
    compute_f64 = accumulate == torch.float64
    step = window_size - overlap
    row_arguments = axis_geometry(height, window_size, overlap)
    col_arguments = axis_geometry(width, window_size, overlap)
    (n_row_windows, row_extent, _), (n_col_windows, col_extent, _) = row_arguments, col_arguments
    if traced:
        from torch.library import wrap_triton

        statistics, means_kernel, suppress = (
            wrap_triton(kernel) for kernel in (_statistics_kernel, _means_kernel, _suppress_kernel)
        )
    else:
        statistics, means_kernel, suppress = _statistics_kernel, _means_kernel, _suppress_kernel
    computed: dict[str, torch.Tensor] = {}
    if "output" in wanted:
        computed["output"] = torch.empty_like(x)

    # One tiling for both image kernels: bands of rows x strips of columns; every constant from the
    # window parameters and the tiling's bounds, none from the image size.
    strip_width = config.strip_width
    band_range = _band_range(window_size, overlap, config.band_rows)
    n_strips = triton.cdiv(width, strip_width)
    row_slots = _slot_rows(window_size, overlap, band_range[1])
    max_bands, max_row_cover = _tiling(window_size, overlap, band_range[0])[1:]
    col_slots, max_strips, max_col_cover = _tiling(window_size, overlap, strip_width)
    # A carried uint8 walk steps as many rows per iteration as it keeps in flight: its registers rotate
    # without moves. Unrolled, a float walk's statistics take 128 registers and fewer programs fit.
    carried = channels <= MAX_CARRIED_CHANNELS
    common = dict(
        STEP=step,
        CHANNELS=channels if carried else 0,
        PREFETCH=PREFETCH_ROWS,
        UNROLL=PREFETCH_ROWS if carried and x.dtype == torch.uint8 else 1,
        WIDE=_needs_wide_offsets(x, computed.get("output")),
        BLOCK_W=strip_width,
        num_warps=min(config.num_warps, max(1, strip_width // 64)),
    )
    slots = dict(ROW_SLOTS=row_slots, COL_SLOTS=col_slots, MAX_BANDS=max_bands, MAX_STRIPS=max_strips)
    planes = {"suppression_map": accumulate, "normalised_gradient": accumulate, "window_mask": torch.uint8}
    for name in wanted & planes.keys():
        computed[name] = torch.empty((batch, height, width), dtype=planes[name], device=device)

    source = (channels, height, width, *x.stride())
    windows = (*row_arguments, *col_arguments, n_strips)
    output = computed.get("output", x)  # unused pointers point at a tensor that is never written
    parameters = (_scalar_argument(threshold, compute_f64), _scalar_argument(smoothing_factor, compute_f64))

    def arguments(partials: torch.Tensor, ranges: torch.Tensor, passes: torch.Tensor) -> tuple[tuple, tuple]:
        """The image kernels' arguments but the band height, around these tables."""
        maps = [computed.get(name, partials) for name in ("suppression_map", "normalised_gradient")]
        tables = (*maps, computed.get("window_mask", passes), partials, ranges, passes, *parameters)
        return (x, partials, ranges, *source, *windows), (x, output, *tables, *source, *output.stride(), *windows)

    statistics_options = dict(ROW_SLOTS=row_slots, COL_SLOTS=col_slots, ROW_COVER=max_row_cover, **common)
    suppress_options = dict(
        WRITE_OUTPUT="output" in wanted,
        WRITE_MAP="suppression_map" in wanted,
        WRITE_NORMALISED="normalised_gradient" in wanted,
        WRITE_MASK="window_mask" in wanted,
        MAX_ROW_COVER=max_row_cover,
        MAX_COL_COVER=max_col_cover,
        **slots,
        RANGE_BLOCK=RANGE_BLOCK,
        SLOT_COLUMNS=triton.next_power_of_2(col_slots),
        **common,
    )
    band_rows = config.band_rows or min(UNFITTED_BAND_ROWS, band_range[1])
    # What the GPU holds of each kernel, as compiled for empty tables of the same types: for the cap, the bands.
    if not traced and (x.dtype == torch.uint8 or config.band_rows is None):
        empty = x.new_empty((0,), dtype=accumulate)
        probes = [(*args, band_rows) for args in arguments(empty, empty, empty.to(torch.uint8))]
        for kernel, options, probe in (
            (_statistics_kernel, statistics_options, probes[0]),
            (_suppress_kernel, suppress_options, probes[1]),
        ):
            capped = {**options, "maxnreg": UINT8_REGISTER_CAP}  # where it needs no local memory
            if x.dtype == torch.uint8 and (footprint(kernel, probe, capped, device) or (0, 1))[1] == 0:
                options.update(maxnreg=UINT8_REGISTER_CAP)
        if config.band_rows is None:
            fits = (
                footprint(_statistics_kernel, probes[0], statistics_options, device),
                footprint(_suppress_kernel, probes[1], suppress_options, device),
            )
            if None not in fits:
                band_rows = fitted_band_rows(height, n_strips * batch, tuple(count for count, _ in fits), band_range)
    n_tiles = triton.cdiv(height, band_rows) * n_strips
    partials = torch.empty((batch, n_tiles, row_slots, col_slots), dtype=accumulate, device=device)
    ranges = torch.empty((batch, n_tiles, 2), dtype=accumulate, device=device)
    passes = torch.empty((batch, n_tiles, row_slots, col_slots), dtype=torch.uint8, device=device)
    statistics_args, suppress_args = arguments(partials, ranges, passes)
    statistics[(n_tiles, batch)](*statistics_args, band_rows, **statistics_options)
    if "window_means" in wanted:
        means = torch.empty((batch, n_row_windows, n_col_windows), dtype=accumulate, device=device)
        n_col_blocks = triton.cdiv(n_col_windows, MEANS_BLOCK)
        means_kernel[(batch, triton.cdiv(n_row_windows, MEANS_BLOCK) * n_col_blocks)](
            partials,
            ranges,
            means,
            n_tiles,
            n_strips,
            row_extent * col_extent,
            n_col_blocks,
            *row_arguments,
            *col_arguments,
            band_rows,
            **slots,
            STEP=step,
            STRIP_WIDTH=strip_width,
            BLOCK_ROWS=MEANS_BLOCK,
            BLOCK_COLS=MEANS_BLOCK,
            RANGE_BLOCK=RANGE_BLOCK,
            num_warps=4,
        )
        computed["window_means"] = means

    if wanted - {"window_means"}:
        suppress[(n_tiles, batch)](*suppress_args, band_rows, **suppress_options)
    if "window_mask" in wanted:
        computed["window_mask"] = computed["window_mask"].view(torch.bool)
    return {name: computed[name] for name in wanted}
