"""``lgs-gpu defend`` throughput against its I/O roof: the same pipeline with no defense.

Workload (default): 1,000 real 299 px JPEGs (quality 90), random crops of the bundled photographs
resized to 299 x 299, written once to a temporary folder. Both contenders run
:func:`lgs_gpu.app.defend.defend_files` with the same workers, threads, batch size and output
format; the roof uses the identity defense (spec ``none``: a copy), so it pays decode, grouping,
encode, atomic write and manifest exactly as LGS does. Runs alternate (roof, LGS, LGS, roof, ...)
so that drift in a shared machine's load hits both; each run writes a fresh output folder
(fsync'd files), deleted outside the timing. Reports images per second (median and every run),
the ratio LGS / roof three ways (of the medians; the median of neighbouring pairs, steadier under a
shared machine's load; and by CPU time per image, what a dedicated CPU-bound machine would see),
and the single-thread cost per image of each stage, to say what dominates.

Run: ``python benchmarks/defend_throughput.py [--count 1000] [--repeats 5] [--workers N]
[--batch-size 8] [--format png] [--png-level 6] [--defense lgs] [--device cpu] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torchvision.io import encode_jpeg
from torchvision.transforms.v2 import functional as TF

from lgs_gpu.app.defend import defend_files
from lgs_gpu.app.resources import default_workers
from lgs_gpu.core.files import atomic_write_bytes
from lgs_gpu.core.imageio import encode_image, read_image
from lgs_gpu.data import ALL_PHOTOGRAPHS, bundled_photographs
from lgs_gpu.defenses import get

SIZE = 299


def make_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` JPEGs of ``SIZE`` px: a random square crop (30-100% of the shorter side) of a random photograph, resized."""
    photographs = list(bundled_photographs(None, ALL_PHOTOGRAPHS).values())
    generator = torch.Generator().manual_seed(seed)
    paths = []
    for index in range(count):
        photo = photographs[int(torch.randint(len(photographs), (1,), generator=generator))]
        height, width = photo.shape[-2:]
        side = int(min(height, width) * (0.3 + 0.7 * float(torch.rand((), generator=generator))))
        top = int(torch.randint(height - side + 1, (1,), generator=generator))
        left = int(torch.randint(width - side + 1, (1,), generator=generator))
        crop = TF.resize(photo[:, top : top + side, left : left + side], [SIZE, SIZE], antialias=True)
        path = folder / f"{index:05d}.jpg"
        path.write_bytes(encode_jpeg(crop.contiguous(), quality=90).numpy().tobytes())
        paths.append(path)
    return paths


def cpu_seconds() -> float:
    """User + system CPU time of this process, its threads and its reaped children (the decoding workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_run(inputs: Path, output: Path, defense: str, args: argparse.Namespace) -> tuple[float, float]:
    """Images per second and CPU milliseconds per image of one ``defend_files`` run into a fresh ``output``."""
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start, cpu_start = time.perf_counter(), cpu_seconds()
    summary = defend_files(
        [inputs], output, defense=defense, device=args.device, output_format=args.format, progress=False,
        batch_size=args.batch_size, workers=args.workers, write_threads=args.write_threads,
        png_compression=args.png_level,
    )  # fmt: skip
    seconds = time.perf_counter() - start  # defend_files returns once every file is written and recorded
    cpu = cpu_seconds() - cpu_start  # the workers are reaped when the run's DataLoader ends
    if summary.skipped or len(summary.written) != args.count:
        raise RuntimeError(f"{defense}: wrote {len(summary.written)} of {args.count}, skipped {summary.skipped[:3]}")
    shutil.rmtree(output)
    return args.count / seconds, 1000 * cpu / args.count


def per_image(work: Callable[[], object], count: int, device: str) -> tuple[float, float]:
    """``(wall, CPU)`` milliseconds per image of ``work`` on ``count`` images."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - wall) / count, 1000 * (time.process_time() - cpu) / count


def stage_costs(paths: list[Path], args: argparse.Namespace, scratch: Path) -> dict[str, tuple[float, float]]:
    """``(wall, CPU)`` milliseconds per image of each stage, one thread, on a sample of the inputs.

    CPU time is what a loaded machine does not inflate; the write's wall time is mostly fsync's wait.
    """
    sample = paths[: min(32, len(paths))]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images = [read_image(path) for path in sample]  # warm
        costs = {"decode (Pillow)": per_image(lambda: [read_image(path) for path in sample], len(sample), args.device)}
        batch = torch.stack(images[: args.batch_size]).to(args.device)
        for name in ("none", args.defense):
            defense = get(name)
            defense(batch)  # warm-up
            runs = [per_image(lambda d=defense: d(batch), batch.shape[0], args.device) for _ in range(3)]
            costs[f"defense {name} (batch of {batch.shape[0]})"] = min(runs)
        suffix = f".{args.format}"
        encoded = [encode_image(image, suffix, png_compression=args.png_level) for image in images]
        encoding = f"encode {args.format}" + (f" level {args.png_level}" if args.format == "png" else "")
        costs[encoding] = per_image(
            lambda: [encode_image(image, suffix, png_compression=args.png_level) for image in images],
            len(sample),
            "cpu",
        )
        costs["atomic write (fsync)"] = per_image(
            lambda: [atomic_write_bytes(scratch / f"{i}{suffix}", data) for i, data in enumerate(encoded)],
            len(sample),
            "cpu",
        )
        shutil.rmtree(scratch)
        return costs
    finally:
        torch.set_num_threads(threads)


def machine(device: str) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parent).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "date": datetime.date.today().isoformat(),
        "commit": commit,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else f"{platform.machine()} CPU",
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="JPEGs to defend per run (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each contender, interleaved (default 5)")
    parser.add_argument(
        "--workers", type=int, default=default_workers(), help="decoding processes (default: the CLI's)"
    )
    parser.add_argument("--write-threads", type=int, help="encoding threads (default: one per CPU)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--format", choices=("png", "jpg"), default="png")
    parser.add_argument("--png-level", type=int, default=6)
    parser.add_argument("--defense", default="lgs", help="the defense against the identity roof (default lgs)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lgs-defend-bench-") as scratch:
        scratch = Path(scratch)
        inputs = scratch / "inputs"
        inputs.mkdir()
        start = time.perf_counter()
        paths = make_jpegs(inputs, args.count)
        print(f"made {args.count} JPEGs of {SIZE} px in {time.perf_counter() - start:.1f} s")
        costs = stage_costs(paths, args, scratch / "stages")
        for name in ("none", args.defense):  # warm-up: caches, kernels, the page cache of the inputs
            defend_files([inputs], scratch / "warm", defense=name, device=args.device, progress=False,
                         output_format=args.format, batch_size=args.batch_size, workers=0)  # fmt: skip
            shutil.rmtree(scratch / "warm")
        runs: dict[str, list[float]] = {"none": [], args.defense: []}
        cpu: dict[str, list[float]] = {"none": [], args.defense: []}
        for repeat in range(args.repeats):
            order = ("none", args.defense) if repeat % 2 == 0 else (args.defense, "none")
            for name in order:
                speed, cpu_ms = timed_run(inputs, scratch / f"out-{repeat}-{name}", name, args)
                runs[name].append(speed)
                cpu[name].append(cpu_ms)
                print(f"  run {repeat + 1}: {name:>10} {speed:7.1f} images/s, {cpu_ms:6.1f} CPU ms/image")

    roof, defended = statistics.median(runs["none"]), statistics.median(runs[args.defense])
    # Neighbouring runs share the machine's load: their ratio is steadier than the ratio of medians.
    paired = statistics.median(d / r for d, r in zip(runs[args.defense], runs["none"], strict=True))
    cpu_ratio = statistics.median(cpu["none"]) / statistics.median(cpu[args.defense])
    settings = {key: getattr(args, key) for key in ("count", "repeats", "workers", "write_threads", "batch_size",
                                                     "format", "png_level", "defense", "device")}  # fmt: skip
    report = {
        "machine": machine(args.device), "settings": settings, "images_per_second": runs, "cpu_ms_per_image": cpu,
        "median": {"none": roof, args.defense: defended}, "ratio_of_medians": defended / roof,
        "paired_ratio_median": paired, "cpu_time_ratio": cpu_ratio, "stage_ms_per_image": costs,
    }  # fmt: skip
    print(f"\n{json.dumps(report['machine'])}\n{json.dumps(settings)}\n")
    print("| pipeline | images/s (median) | runs | CPU ms / image (median) | vs roof |\n|---|---:|---|---:|---:|")
    for key, label in (("none", "no defense (I/O roof)"), (args.defense, args.defense)):
        speed = statistics.median(runs[key])
        print(f"| {label} | {speed:.1f} | {', '.join(f'{v:.1f}' for v in runs[key])} | "
              f"{statistics.median(cpu[key]):.1f} | {speed / roof:.1%} |")  # fmt: skip
    print(f"\nratio {args.defense} / roof: {defended / roof:.1%} of medians, {paired:.1%} median of paired runs, "
          f"{cpu_ratio:.1%} by CPU time per image")  # fmt: skip
    print("\n| stage (1 thread) | wall ms / image | CPU ms / image |\n|---|---:|---:|")
    for name, (wall, cpu_ms) in costs.items():
        print(f"| {name} | {wall:.2f} | {cpu_ms:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
