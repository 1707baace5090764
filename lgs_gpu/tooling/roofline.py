"""Bytes each LGS path moves, and what that predicts at a GPU's memory-bandwidth limit.

A one-pass image transform can go no faster than reading and writing the image once; LGS needs
a per-image reduction (min / max of the gradient) before it can write anything, so the best a
GPU path can do is read the image twice and write it once. This module counts the full-size
traffic of each path from its structure (:func:`traffic`), turns bytes into a predicted time at a
given bandwidth (the H100 SXM's 3.35 TB/s by default), and joins the ahead-of-time cubin report
of each Triton kernel (:mod:`lgs_gpu.paths.triton_path.aot`: registers, spills, shared memory, resident
warps) into the roofline table of the README. Everything here is **predicted**, not measured:
``lgs-gpu bench`` on a CUDA machine measures the same quantities with ``triton.testing.do_bench``.

Run ``python -m lgs_gpu.tooling.roofline [--batch 64] [--size 299]`` (with ``TRITON_INTERPRET`` unset; it
compiles every kernel for sm_90 first, or reads ``--aot-json`` written by ``lgs_gpu.paths.triton_path.aot``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass

import torch

from ..parameters import DEFAULT_OVERLAP, DEFAULT_WINDOW_SIZE
from ..windows import axis_windows

H100_BANDWIDTH = 3.35e12  # bytes/s: H100 SXM5 80 GB, HBM3 (NVIDIA datasheet)
# sm_90 limits per SM used for the resident-warp column (CUDA occupancy rules).
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


def region_overlap(length: int, window_size: int = DEFAULT_WINDOW_SIZE, overlap: int = DEFAULT_OVERLAP,
                   windows_per_program: int = 16) -> float:  # fmt: skip
    """How many times ``_window_sums_kernel`` reads each pixel along one axis (its regions overlap)."""
    windows = axis_windows(length, window_size, overlap)
    covered = 0
    for group in range(0, windows.count, windows_per_program):
        last = min(group + windows_per_program, windows.count) - 1
        covered += windows.starts[last] + windows.extent - windows.starts[group]
    return covered / length


def traffic(height: int, width: int, element_bytes: int = 4) -> list[Traffic]:
    """The traffic model of every path for ``H x W`` images (default LGS geometry)."""
    reread = region_overlap(height) * region_overlap(width)
    row_rereads = axis_windows(height, DEFAULT_WINDOW_SIZE, DEFAULT_OVERLAP).extent / (DEFAULT_WINDOW_SIZE - DEFAULT_OVERLAP)
    return [
        Traffic("copy_ (roof)", 1, 1, 0, "read + write the image once"),
        Traffic(
            "lgs triton", 1 + reread, 1, 0,
            f"window sums read x ({reread:.3f}x: program regions overlap), suppress reads x and writes out; "
            "per-window sums and per-image ranges are < 1% of a pass",
        ),
        Traffic(
            "lgs compiled", 2, 1, element_bytes * (1 + 1 + row_rereads + 1),
            "reads x twice, writes out; m written once and read by min/max, the row windows "
            f"({row_rereads:.1f}x, they overlap) and the suppression (CPU only)", gpu=False,
        ),
        Traffic(
            "lgs torch", 18, 12, element_bytes * 15,
            "approximate: about 30 unfused full-size passes (see lgs_gpu/paths/torch_path.py)",
        ),
    ]


def peak_bandwidth(device: torch.device) -> float | None:
    """The device's theoretical memory bandwidth in bytes/s (DDR: two transfers per clock), or None off CUDA."""
    if device.type != "cuda":
        return None
    properties = torch.cuda.get_device_properties(device)
    return 2 * properties.memory_clock_rate * 1e3 * properties.memory_bus_width / 8


def resident_warps(registers: int, warps: int, shared_bytes: int) -> int:
    """Warps of one kernel resident per sm_90 SM, from its registers, warps per block and shared memory."""
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


def kernel_table(reports: list[dict], batch: int, size: int, channels: int = 3,
                 bandwidth: float = H100_BANDWIDTH) -> list[dict]:  # fmt: skip
    """Per Triton kernel (sm_90, float32 input, writing the output): resources and predicted time."""
    pixels = batch * size * size
    image = pixels * channels * 4
    windows = axis_windows(size, DEFAULT_WINDOW_SIZE, DEFAULT_OVERLAP).count ** 2 * batch * 4
    moved = {  # full-size bytes each kernel moves
        "_window_sums_kernel": image * region_overlap(size) ** 2 + windows,
        "_image_range_kernel": 0.0,
        "_suppress_kernel": 2 * image + windows,
    }
    wanted = {"_window_sums_kernel": "float32", "_image_range_kernel": "fp32", "_suppress_kernel": "float32 output"}
    rows = []
    for report in reports:
        if report["arch"] != 90 or wanted.get(report["kernel"]) != report["variant"]:
            continue
        rows.append({
            "kernel": report["kernel"], "registers": report["registers"], "spill_bytes": report["spill_bytes"],
            "shared_bytes": report["shared_bytes"], "warps": report["warps"],
            "resident_warps": resident_warps(report["registers"], report["warps"], report["shared_bytes"]),
            "megabytes": moved[report["kernel"]] / 1e6,
            "predicted_microseconds": moved[report["kernel"]] / bandwidth * 1e6,
        })  # fmt: skip
    return rows


def markdown(batch: int, size: int, reports: list[dict] | None) -> str:
    lines = [
        f"Predicted, not measured: {batch}x3x{size}x{size} float32 at {H100_BANDWIDTH / 1e12:.2f} TB/s (H100 SXM).",
        "",
        "| path | bytes / pixel | MB per batch | predicted µs | x copy | what moves |",
        "|---|---|---|---|---|---|",
    ]
    for row in predicted_table(batch, size):
        lines.append(f"| {row['path']} | {row['bytes_per_pixel']:.1f} | {row['megabytes']:.1f} | "
                     f"{row['predicted_microseconds']:.1f} | {row['times_copy']:.2f} | {row['note']} |")  # fmt: skip
    if reports:
        lines += ["", "| Triton kernel (sm_90, fp32) | registers | spills | shared B | warps | resident warps / SM | "
                  "MB moved | predicted µs |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in kernel_table(reports, batch, size):
            lines.append(f"| `{row['kernel']}` | {row['registers']} | {row['spill_bytes']} | {row['shared_bytes']} | "
                         f"{row['warps']} | {row['resident_warps']} of {MAX_WARPS_PER_SM} | {row['megabytes']:.1f} | "
                         f"{row['predicted_microseconds']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--aot-json", help="kernel reports from `python -m lgs_gpu.paths.triton_path.aot --json` (else compiled now)")
    parser.add_argument("--no-kernels", action="store_true", help="only the traffic model, no compilation")
    args = parser.parse_args(argv)
    reports = None
    if args.aot_json:
        with open(args.aot_json, encoding="utf-8") as handle:
            reports = json.load(handle)
    elif not args.no_kernels:
        from dataclasses import asdict

        from ..paths.triton_path.aot import compile_all

        reports = [asdict(report) for report in compile_all((90,))]
    print(markdown(args.batch, args.size, reports), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
