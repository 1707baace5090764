"""Comparison helpers and interpreter-friendly launch configs shared by the tests."""

from __future__ import annotations

import pytest
import torch

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
    from lgs_gpu.paths.triton_path import interpreting, triton_import_error

    error = triton_import_error()
    if error is not None:
        pytest.skip(f"the Triton path is unavailable: {error}")
    if not interpreting():
        pytest.skip("Triton runs on CPU tensors only under TRITON_INTERPRET=1")


def interpreter_config(height: int, width: int):
    """A launch config with one window-sums program and one suppress tile per image (fast to interpret)."""
    triton = pytest.importorskip("triton")
    from lgs_gpu.paths.triton_path.kernels import LaunchConfig

    rows, cols = max(16, triton.next_power_of_2(height)), max(16, triton.next_power_of_2(width))
    windows = max(16, triton.next_power_of_2(max(height, width) // 5 + 2))
    return LaunchConfig(windows_per_program=windows, sum_block_h=rows, sum_block_w=cols, block_h=rows, block_w=cols)


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
