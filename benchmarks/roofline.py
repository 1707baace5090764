"""Bytes each LGS path moves, and what that predicts at a GPU's memory-bandwidth limit.

A one-pass image transform can go no faster than reading and writing the image once; LGS needs
a per-image reduction (min / max of the gradient) before it can write anything, so the best a
GPU path can do without holding whole images on chip is to read the image twice and write it
once. This module counts the full-size traffic of each path from its structure (:func:`traffic`)
and turns bytes into a predicted time at a given bandwidth (the H100 SXM's 3.35 TB/s by
default). Everything here is **predicted**, not measured: ``python benchmarks/bench.py`` and
``benchmarks/gpu_check.py`` measure the same quantities on a CUDA machine, and
``benchmarks/kernel_report.py`` adds what the compiled kernels' instructions predict.

Run ``python benchmarks/roofline.py [--batch 64] [--size 299]``.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import torch

from lgs_gpu.core.parameters import DEFAULT_OVERLAP, DEFAULT_WINDOW_SIZE
from lgs_gpu.core.windows import axis_windows

H100_BANDWIDTH = 3.35e12  # bytes/s: H100 SXM5 80 GB, HBM3 (NVIDIA datasheet)
H100_MULTIPROCESSORS = 132
H100_CLOCK_HZ = 1.98e9  # boost clock
# sm_90 limits per SM used for the resident-warp arithmetic (CUDA occupancy rules).
REGISTERS_PER_SM = 65536
MAX_WARPS_PER_SM = 64
MAX_BLOCKS_PER_SM = 32
SHARED_BYTES_PER_SM = 228 * 1024


@dataclass(frozen=True)
class Traffic:
    """Full-size bytes a path moves for one batch, split by what they are."""

    path: str
    image_reads: float  # passes reading the C-channel input
    image_writes: float  # passes writing a C-channel output
    plane_bytes_per_pixel: float  # one-channel intermediates (gradient, mask), read + written
    note: str
    gpu: bool = True  # False for CPU-only paths: no GPU prediction for them

    def bytes(self, batch: int, channels: int, height: int, width: int, element_bytes: int = 4) -> float:
        pixels = batch * height * width
        image = pixels * channels * element_bytes
        return image * (self.image_reads + self.image_writes) + pixels * self.plane_bytes_per_pixel


def statistics_bytes_per_pixel(height: int, width: int, band_rows: int = 50, strip_width: int = 64,
                               element_bytes: int = 4) -> float:  # fmt: skip
    """The Triton path's window statistics per pixel: each tile's partial window sums, its range
    and its pass flags, written once and read back (default geometry; the tiling the launcher fits to
    64 x 3 x 299² images on an H100, :mod:`lgs_gpu.smoothing.backends.triton_path.occupancy`)."""
    rows = axis_windows(height, DEFAULT_WINDOW_SIZE, DEFAULT_OVERLAP)
    cols = axis_windows(width, DEFAULT_WINDOW_SIZE, DEFAULT_OVERLAP)
    tiles = math.ceil(height / band_rows) * math.ceil(width / strip_width)
    per_tile_windows = min(rows.count, band_rows // (DEFAULT_WINDOW_SIZE - DEFAULT_OVERLAP) + 3) * min(
        cols.count, strip_width // (DEFAULT_WINDOW_SIZE - DEFAULT_OVERLAP) + 3
    )
    table = tiles * (per_tile_windows * (element_bytes + 1) + 2 * element_bytes)
    return 2 * table / (height * width)


def traffic(height: int, width: int, element_bytes: int = 4) -> list[Traffic]:
    """The traffic model of every path for ``H x W`` images (default LGS geometry)."""
    row_rereads = axis_windows(height, DEFAULT_WINDOW_SIZE, DEFAULT_OVERLAP).extent / (DEFAULT_WINDOW_SIZE - DEFAULT_OVERLAP)
    return [
        Traffic("copy_ (roof)", 1, 1, 0, "read + write the image once"),
        Traffic(
            "lgs triton", 2, 1, statistics_bytes_per_pixel(height, width, element_bytes=element_bytes),
            "statistics read x (halo rows come from cache), suppress reads x and writes out; the tiles' "
            "window statistics add about 0.25 byte per pixel (written and read once, if they left L2)",
        ),
        Traffic(
            "lgs compiled", 2, 1, element_bytes * (1 + 1 + row_rereads + 1),
            "reads x twice, writes out; m written once and read by min/max, the row windows "
            f"({row_rereads:.1f}x, they overlap) and the suppression (CPU only)", gpu=False,
        ),
        Traffic(
            "lgs torch", 18, 12, element_bytes * 15,
            "approximate: about 30 unfused full-size passes (see lgs_gpu/smoothing/backends/torch_path.py)",
        ),
    ]


def peak_bandwidth(device: torch.device) -> float | None:
    """The device's theoretical memory bandwidth in bytes/s (DDR: two transfers per clock), or None off CUDA."""
    if device.type != "cuda":
        return None
    properties = torch.cuda.get_device_properties(device)
    return 2 * properties.memory_clock_rate * 1e3 * properties.memory_bus_width / 8


def resident_warps(registers: int, warps: int, shared_bytes: int) -> int:
    """Warps of one kernel resident per sm_90 SM, from its registers, warps per program and shared memory."""
    registers_per_warp = math.ceil(registers * 32 / 256) * 256  # allocated per warp in units of 256
    blocks = min(
        REGISTERS_PER_SM // (registers_per_warp * warps),
        MAX_BLOCKS_PER_SM,
        SHARED_BYTES_PER_SM // shared_bytes if shared_bytes else MAX_BLOCKS_PER_SM,
        MAX_WARPS_PER_SM // warps,
    )
    return blocks * warps


def predicted_table(
    batch: int, size: int, channels: int = 3, bandwidth: float = H100_BANDWIDTH, gpu_only: bool = True
) -> list[dict]:
    """One row per path: bytes per pixel, MB per batch, time at ``bandwidth`` and its multiple of the copy."""
    rows = []
    for model in traffic(size, size):
        if gpu_only and not model.gpu:
            continue
        total = model.bytes(batch, channels, size, size)
        rows.append({
            "path": model.path, "bytes_per_pixel": total / (batch * size * size), "megabytes": total / 1e6,
            "predicted_microseconds": total / bandwidth * 1e6, "note": model.note,
        })  # fmt: skip
    copy = rows[0]["predicted_microseconds"]
    for row in rows:
        row["times_copy"] = row["predicted_microseconds"] / copy
    return rows


def markdown(batch: int, size: int) -> str:
    lines = [
        f"Predicted, not measured: {batch}x3x{size}x{size} float32 at {H100_BANDWIDTH / 1e12:.2f} TB/s (H100 SXM).",
        "",
        "| path | bytes / pixel | MB per batch | predicted µs | x copy | what moves |",
        "|---|---|---|---|---|---|",
    ]
    for row in predicted_table(batch, size):
        lines.append(f"| {row['path']} | {row['bytes_per_pixel']:.1f} | {row['megabytes']:.1f} | "
                     f"{row['predicted_microseconds']:.1f} | {row['times_copy']:.2f} | {row['note']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=299)
    args = parser.parse_args(argv)
    print(markdown(args.batch, args.size), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
