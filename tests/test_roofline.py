"""The traffic model, the occupancy arithmetic and the peak-memory meters behind `benchmarks/bench.py`."""

import numpy as np
import pytest
import roofline
import torch
from peak_memory import peak_numpy_bytes, peak_torch_bytes


def test_bytes_follow_the_passes():
    copy, triton = roofline.traffic(299, 299)[:2]
    image_bytes = 64 * 3 * 299 * 299 * 4  # 68,659,968: one float32 pass over the batch
    assert copy.bytes(64, 3, 299, 299) == 2 * image_bytes
    # Triton: the statistics pass reads x, the suppress pass reads x and writes the output, and the
    # tiles' window statistics (0.25 byte per pixel written and read: 2% of a float32 pass) travel too.
    moved = triton.bytes(64, 3, 299, 299)
    assert 3 * image_bytes < moved < 3.03 * image_bytes
    rows = roofline.predicted_table(64, 299)
    assert rows[0]["path"] == "copy_ (roof)" and rows[0]["times_copy"] == 1
    assert rows[0]["megabytes"] == pytest.approx(137.319936)
    assert rows[0]["predicted_microseconds"] == pytest.approx(40.991026, rel=1e-6)  # 137.3 MB at 3.35 TB/s
    assert rows[1]["times_copy"] == pytest.approx(moved / (2 * image_bytes))
    assert "lgs compiled" not in {row["path"] for row in rows}  # CPU only: no GPU prediction
    assert "lgs compiled" in {row["path"] for row in roofline.predicted_table(64, 299, gpu_only=False)}
    assert "Predicted, not measured" in roofline.markdown(64, 299)


def test_statistics_bytes_count_each_tile_table():
    # 299 px, 50-row bands x 64-column strips: 6 x 5 tiles; a band meets at most 50 // 10 + 3 = 8
    # row windows and a strip 64 // 10 + 3 = 9 column windows; each slot holds a float32 sum and a
    # one-byte flag, each tile its (min, max); written once, read once.
    tiles, slots = 6 * 5, 8 * 9
    expected = 2 * tiles * (slots * 5 + 8) / (299 * 299)
    assert roofline.statistics_bytes_per_pixel(299, 299) == pytest.approx(expected)


@pytest.mark.parametrize(
    "registers, warps, shared, expected",
    [(64, 4, 0, 32), (96, 4, 3072, 20), (32, 4, 16, 64), (255, 4, 0, 8), (128, 8, 0, 16), (40, 4, 100 * 1024, 8)],
)
def test_resident_warps_per_sm(registers, warps, shared, expected):
    assert roofline.resident_warps(registers, warps, shared) == expected


def test_peak_torch_bytes_counts_what_is_alive_at_once():
    def two_temporaries():
        first = torch.ones(250_000)  # 1 MB, freed before the second is made
        del first
        second = torch.ones(250_000)
        return second

    peak = peak_torch_bytes(two_temporaries, torch.device("cpu"))
    assert 1_000_000 <= peak < 1_500_000
    assert peak_torch_bytes(lambda: torch.ones(500_000) + 1, torch.device("cpu")) >= 4_000_000  # two alive at once


def test_peak_numpy_bytes():
    assert 8_000_000 <= peak_numpy_bytes(lambda: np.ones(1_000_000)) < 9_000_000
