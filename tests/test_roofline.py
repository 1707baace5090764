"""The traffic model, the occupancy arithmetic and the peak-memory meters behind `lgs-gpu bench`."""

import numpy as np
import pytest
import torch

from lgs_gpu.tooling import roofline
from lgs_gpu.tooling.peak_memory import peak_numpy_bytes, peak_torch_bytes


# Hand-counted (window 15, overlap 5, 16 windows per program): the pixels each program's region
# spans along one axis, summed, over the axis length.
# 15: one window [0, 15).  64: starts 0, 10, .., 40, 49 -> one program over [0, 64).
# 299: starts 0, 10, .., 280, 284 (30 windows) -> [0, 165) + [160, 299) = 165 + 139 = 304.
# 1024: starts 0, 10, .., 1000, 1009 (102 windows) -> six programs of 165 px + [960, 1024) = 1054.
@pytest.mark.parametrize("length, expected", [(15, 1.0), (64, 1.0), (299, 304 / 299), (1024, 1054 / 1024)])
def test_region_overlap_counts_each_program_region(length, expected):
    assert roofline.region_overlap(length) == pytest.approx(expected)


def test_bytes_follow_the_passes():
    copy, triton = roofline.traffic(299, 299)[:2]
    image_bytes = 64 * 3 * 299 * 299 * 4  # 68,659,968: one float32 pass over the batch
    assert copy.bytes(64, 3, 299, 299) == 2 * image_bytes
    # Triton: the window-sums pass reads x over the overlapping regions (304/299 per axis), the
    # suppress pass reads x once and writes the output once.
    assert triton.bytes(64, 3, 299, 299) == pytest.approx(image_bytes * ((304 / 299) ** 2 + 1 + 1))
    rows = roofline.predicted_table(64, 299)
    assert rows[0]["path"] == "copy_ (roof)" and rows[0]["times_copy"] == 1
    assert rows[0]["megabytes"] == pytest.approx(137.319936)
    assert rows[0]["predicted_microseconds"] == pytest.approx(40.991026, rel=1e-6)  # 137.3 MB at 3.35 TB/s
    assert rows[1]["times_copy"] == pytest.approx(((304 / 299) ** 2 + 2) / 2)
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
