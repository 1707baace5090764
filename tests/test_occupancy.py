"""The Triton launcher's grid fitting (``triton_path/occupancy.py``): bands whose grid fills the GPU's waves.

What a compiled kernel's registers say about the GPU is checked compile-only in
``tests/test_kernel_report.py`` (the headline launch runs in one wave); here, the choice itself.
"""

import math

import pytest
import torch

pytest.importorskip("triton")

from lgs_gpu.smoothing.backends.triton_path import occupancy  # noqa: E402
from lgs_gpu.smoothing.backends.triton_path.occupancy import BAND_ROWS_RANGE, fitted_band_rows  # noqa: E402


def cost(height: int, rows: int, tiles_per_band: int, slots: tuple[int, ...]) -> int:
    programs = math.ceil(height / rows) * tiles_per_band
    return sum(math.ceil(programs / count) for count in slots) * (rows + occupancy.WAVE_OVERHEAD_ROWS)


@pytest.mark.parametrize(
    "height, tiles_per_band, slots",
    [
        (299, 640, (16 * 132, 21 * 132)),  # 64 x 3 x 299², strips of 32, float32 on an H100
        (299, 640, (15 * 132, 25 * 132)),  # uint8
        (299, 10, (16 * 132, 21 * 132)),  # one image
        (224, 64 * 7, (10 * 108, 16 * 108)),  # an A100, fewer slots
        (1024, 256 * 32, (16 * 132, 21 * 132)),  # many waves whatever the band
        (4096, 1, (132, 132)),
        (17, 5, (100, 100)),
        (5, 3, (100, 100)),  # shorter than the shortest band
    ],
)
def test_the_band_is_the_cheapest_of_every_height_in_range(height, tiles_per_band, slots):
    low, high = BAND_ROWS_RANGE
    rows = fitted_band_rows(height, tiles_per_band, slots, BAND_ROWS_RANGE)
    # Never shorter than the range allows (the kernels' tables assume it), unless the image is.
    assert min(low, height) <= rows <= high
    candidates = range(min(low, height), high + 1)
    assert cost(height, rows, tiles_per_band, slots) == min(cost(height, r, tiles_per_band, slots) for r in candidates)


def test_one_wave_when_one_exists_and_the_most_programs_that_fit():
    slots = (16 * 132, 21 * 132)
    rows = fitted_band_rows(299, 64 * 10, slots, BAND_ROWS_RANGE)
    assert math.ceil(299 / rows) * 64 * 10 <= min(slots)  # one wave of each kernel
    assert fitted_band_rows(299, 10, slots, BAND_ROWS_RANGE) == BAND_ROWS_RANGE[0]  # one image: short bands, more SMs busy


def test_no_figure_for_tensors_the_gpu_does_not_hold():
    from lgs_gpu.smoothing.backends.triton_path.kernels import _statistics_kernel

    assert occupancy.footprint(_statistics_kernel, (torch.zeros(1),), {}, torch.device("cpu")) is None


def test_a_kernel_triton_cannot_load_gives_no_figure(monkeypatch):
    class Unbuildable:
        def warmup(self, *args, **kwargs):
            raise RuntimeError("no GPU")

    monkeypatch.setattr(occupancy, "_footprints", {})
    assert occupancy.footprint(Unbuildable(), (), {}, torch.device("meta")) is None


def test_a_narrow_range_is_kept_and_small_strides_narrow_it():
    from lgs_gpu.smoothing.backends.triton_path.kernels import _band_range, _slot_rows

    low, high = _band_range(15, 14, None)  # a stride of 1: long bands would meet over a hundred windows
    assert (low, high) == (BAND_ROWS_RANGE[0], 17)
    assert low <= fitted_band_rows(299, 64 * 10, (16 * 132, 21 * 132), (low, high)) <= high
    # The closed form is the longest band whose window table is no larger than the shortest band's.
    for window_size in range(1, 41):
        for overlap in range(window_size):
            limit = _slot_rows(window_size, overlap, low)
            longest = max(r for r in range(low, BAND_ROWS_RANGE[1] + 1) if _slot_rows(window_size, overlap, r) <= limit)
            assert _band_range(window_size, overlap, None) == (low, longest), (window_size, overlap)
