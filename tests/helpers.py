"""Comparison helpers and interpreter-friendly launch configs shared by the tests."""

from __future__ import annotations

import contextlib

import pytest
import torch

from lgs_gpu.core.windows import axis_windows

# Largest |difference| accepted between two paths, per output dtype. float32/float64 results
# agree to rounding; float16/bfloat16/uint8 results are the same float32 value rounded, so two
# paths may land one step of the output dtype apart.
TOLERANCE = {
    torch.float64: 1e-12,
    torch.float32: 1e-5,
    torch.float16: 2**-10,
    torch.bfloat16: 2**-7,
    torch.uint8: 1,
}
# Window means within rounding of γ may pass in one float32 path and fail in another: such a
# tie flips a whole window. Bound the pixels it may touch.
MAX_TIE_FLIP_FRACTION = 1e-3


def triton_or_skip() -> None:
    """Skip the calling test when the Triton path cannot run on CPU tensors here (triton is an optional extra)."""
    from lgs_gpu.smoothing.backends.triton_path import interpreting, triton_import_error

    error = triton_import_error()
    if error is not None:
        pytest.skip(f"the Triton path is unavailable: {error}")
    if not interpreting():
        pytest.skip("Triton runs on CPU tensors only under TRITON_INTERPRET=1")


def interpreter_config(height: int, width: int):
    """A launch config with one tile per image (fast to interpret: the interpreter pays per program).

    One strip is a border strip: tests of the unclamped interior walk use the default config or
    :data:`SMALL_TILES` on images wider than three strips.
    """
    triton = pytest.importorskip("triton")
    from lgs_gpu.smoothing.backends.triton_path.kernels import LaunchConfig

    return LaunchConfig(band_rows=max(1, height), strip_width=max(16, triton.next_power_of_2(width)), num_warps=1)


def lgs_triton(x, smoothing_factor, threshold, window_size, overlap, write_output=True, write_map=False, config=None):
    """The Triton kernels' ``(output, ĝ)`` (each ``None`` unless asked for), from their launcher ``stages``."""
    pytest.importorskip("triton")
    from lgs_gpu.smoothing.backends.triton_path import kernels

    wanted = ("output",) * write_output + ("suppression_map",) * write_map
    computed = kernels.stages(x, smoothing_factor, threshold, window_size, overlap, wanted, config)
    return computed.get("output"), computed.get("suppression_map")


def small_tiles():
    """Many small tiles: bands of 7 rows x strips of 16 columns, so a 40-px-wide image has interior strips."""
    pytest.importorskip("triton")
    from lgs_gpu.smoothing.backends.triton_path.kernels import LaunchConfig

    return LaunchConfig(band_rows=7, strip_width=16, num_warps=1)


@contextlib.contextmanager
def every_access_inside_the_arguments():
    """Interpreted Triton: fail on any load or store (of a lane not masked off) outside every tensor
    the running kernel was handed. NaN canaries miss reads whose values a kernel then discards
    (lanes past an image's edge); this sees the addresses themselves."""
    pytest.importorskip("triton")
    import numpy as np
    from triton.runtime import interpreter

    spans: list[tuple[int, int]] = []
    run, load, store = interpreter.GridExecutor.__call__, interpreter.InterpreterBuilder.create_masked_load, \
        interpreter.InterpreterBuilder.create_masked_store

    def tensors(values):
        return [value for value in values if isinstance(value, torch.Tensor)]

    def running(self, *args, **kwargs):
        for tensor in tensors([*args, *kwargs.values()]):
            extent = sum((size - 1) * abs(stride) for size, stride in zip(tensor.shape, tensor.stride(), strict=True)) + 1
            spans.append((tensor.data_ptr(), tensor.data_ptr() + extent * tensor.element_size()))
        try:
            return run(self, *args, **kwargs)
        finally:
            spans.clear()

    def check(pointers, mask, kind):
        addresses = pointers.data[mask.data.astype(bool)]
        inside = np.zeros(addresses.shape, dtype=bool)
        for low, high in spans:
            inside |= (addresses >= low) & (addresses < high)
        if not inside.all():
            raise AssertionError(f"a {kind} outside every tensor the kernel was given: {addresses[~inside][:4]}")

    def checked_load(self, pointers, mask, *args):
        check(pointers, mask, "load")
        return load(self, pointers, mask, *args)

    def checked_store(self, pointers, value, mask, *args):
        check(pointers, mask, "store")
        return store(self, pointers, value, mask, *args)

    interpreter.GridExecutor.__call__ = running
    interpreter.InterpreterBuilder.create_masked_load = checked_load
    interpreter.InterpreterBuilder.create_masked_store = checked_store
    try:
        yield
    finally:
        interpreter.GridExecutor.__call__ = run
        interpreter.InterpreterBuilder.create_masked_load = load
        interpreter.InterpreterBuilder.create_masked_store = store


def mismatch_fraction(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Fraction of pixels (over B, H, W) where any channel differs by more than the dtype's tolerance."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (actual.shape, expected.shape)
    difference = (actual.double() - expected.double()).abs()
    if difference.dim() == 4:
        difference = difference.amax(dim=1)
    bad = ~(difference <= TOLERANCE[actual.dtype])  # NaN counts as a mismatch
    return bad.double().mean().item() if bad.numel() else 0.0


def assert_lgs_close(actual: torch.Tensor, expected: torch.Tensor, max_flip_fraction: float = MAX_TIE_FLIP_FRACTION):
    """Equal within the dtype's tolerance except on at most ``max_flip_fraction`` of the pixels."""
    fraction = mismatch_fraction(actual, expected)
    if fraction > max_flip_fraction:
        difference = (actual.double() - expected.double()).abs()
        where = torch.nonzero(~(difference <= TOLERANCE[actual.dtype]))[:5].tolist()
        raise AssertionError(
            f"{fraction:.4%} of pixels differ (allowed {max_flip_fraction:.4%}); "
            f"max |diff| {difference.nan_to_num(float('inf')).max().item():.3g}; first at {where}"
        )


def membership_matrix(length: int, window_size: int, overlap: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``[n_windows, length]``: 1 where a window of ``axis_windows`` covers a pixel, else 0 (an oracle for the tests)."""
    windows = axis_windows(length, window_size, overlap)
    pixels = torch.arange(length)
    starts = torch.tensor(windows.starts)[:, None]
    return ((pixels >= starts) & (pixels < starts + windows.extent)).to(dtype)
