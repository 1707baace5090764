"""The traffic model, the occupancy arithmetic and the peak-memory meters behind `lgs-gpu bench`."""

import numpy as np
import pytest
import torch

from lgs_gpu import roofline
from lgs_gpu.peak_memory import peak_numpy_bytes, peak_torch_bytes
from lgs_gpu.windows import axis_windows


@pytest.mark.parametrize("length", [15, 64, 299, 1024])
def test_region_overlap_counts_each_program_region(length):
    windows = axis_windows(length, 15, 5)
    reads = torch.zeros(length)
    for group in range(0, windows.count, 16):  # one _window_sums_kernel program per 16 windows
        last = min(group + 16, windows.count) - 1
        reads[windows.starts[group] : windows.starts[last] + windows.extent] += 1
    assert reads.min() >= 1
    assert roofline.region_overlap(length) == pytest.approx(reads.mean().item())


def test_bytes_follow_the_passes():
    copy, triton = roofline.traffic(299, 299)[:2]
    pixels = 64 * 299 * 299
    assert copy.bytes(64, 3, 299, 299) == 2 * pixels * 3 * 4
    # The GPU target: at most 3 reads + 1 write of the image per pixel.
    assert triton.bytes(64, 3, 299, 299) <= 4 * pixels * 3 * 4
    rows = roofline.predicted_table(64, 299)
    assert rows[0]["path"] == "copy_ (roof)" and rows[0]["times_copy"] == 1
    assert rows[0]["predicted_microseconds"] == pytest.approx(copy.bytes(64, 3, 299, 299) / 3.35e12 * 1e6)
    assert "lgs compiled" not in {row["path"] for row in rows}  # CPU only: no GPU prediction
    assert "lgs compiled" in {row["path"] for row in roofline.predicted_table(64, 299, gpu_only=False)}


@pytest.mark.parametrize(
    "registers, warps, shared, expected",
    [(64, 4, 0, 32), (96, 4, 3072, 20), (32, 4, 16, 64), (255, 4, 0, 8), (128, 8, 0, 16), (40, 4, 100 * 1024, 8)],
)
def test_resident_warps_per_sm(registers, warps, shared, expected):
    assert roofline.resident_warps(registers, warps, shared) == expected


def test_kernel_table_reads_sm90_fp32_reports():
    reports = [
        {"kernel": "_window_sums_kernel", "variant": "float32", "arch": 90, "registers": 96, "spill_bytes": 0,
         "shared_bytes": 3072, "warps": 4},
        {"kernel": "_window_sums_kernel", "variant": "float32", "arch": 80, "registers": 128, "spill_bytes": 0,
         "shared_bytes": 3072, "warps": 4},
        {"kernel": "_suppress_kernel", "variant": "float32 output", "arch": 90, "registers": 64, "spill_bytes": 0,
         "shared_bytes": 0, "warps": 4},
        {"kernel": "_suppress_kernel", "variant": "uint8 output", "arch": 90, "registers": 60, "spill_bytes": 0,
         "shared_bytes": 0, "warps": 4},
    ]  # fmt: skip
    rows = roofline.kernel_table(reports, 64, 299)
    assert [row["kernel"] for row in rows] == ["_window_sums_kernel", "_suppress_kernel"]
    assert rows[0]["resident_warps"] == 20 and rows[1]["resident_warps"] == 32
    assert rows[1]["megabytes"] > rows[0]["megabytes"] > 0  # suppress reads and writes; sums only read
    assert "Predicted, not measured" in roofline.markdown(64, 299, reports)


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
