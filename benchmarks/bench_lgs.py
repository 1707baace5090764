"""Time the LGS paths against the copy roof on this machine's CPU (and CUDA when present).

Usage: ``python benchmarks/bench_lgs.py [--batch 32] [--size 299] [--repeats 5]``. Contenders are
interleaved in every round and medians reported with ratios to ``out.copy_(x)`` (read + write of
the batch: the least any one-pass image transform can cost). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from lgs_gpu import lgs


def _timer(device: torch.device):
    def measure(function) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reference", action="store_true", help="also time the (slow) literal reference")
    args = parser.parse_args()
    device = torch.device(args.device)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    out = torch.empty_like(x)
    contenders = {"copy_ (roof)": lambda: out.copy_(x), "clone": lambda: x.clone(), "lgs torch": lambda: lgs(x, backend="torch")}
    if device.type == "cuda":
        contenders["lgs triton"] = lambda: lgs(x, backend="triton")
    if args.reference:
        contenders["lgs reference"] = lambda: lgs(x, backend="reference")
    measure = _timer(device)
    for function in contenders.values():  # warm-up (allocator, kernel compilation)
        function()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, function in contenders.items():
            times[name].append(measure(function))
    roof = statistics.median(times["copy_ (roof)"])
    print(f"{args.batch}x3x{args.size}x{args.size} float32 on {device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})")
    print("| path | median ms | images/s | x copy |\n|---|---|---|---|")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"| {name} | {median * 1e3:.1f} | {args.batch / median:.0f} | {median / roof:.1f} |")


if __name__ == "__main__":
    main()
