"""``lgs-gpu defend`` against an independent roof: plain Pillow doing the same file work in every core.

Workload (default): 200 real 299 px JPEGs (quality 90; :func:`defend_throughput.make_jpegs`),
written to PNG at zlib level 6 (``--png-level``). The roof decodes each file with Pillow and
encodes and saves it as PNG at the same level, in ``os.cpu_count()`` processes
(``multiprocessing.Pool``, fork) that share the files: no defense, no batching, no manifest, no
fsync, no torch. ``defend`` runs :func:`lgs_gpu.app.defend.defend_files` in this process with
the CLI's defaults (its workers, write threads and torch threads) and ``--defense`` (LGS by
default). Runs alternate (roof, defend, defend, roof, ...) into fresh folders, deleted outside the
timing; the pool's and the DataLoader's process start are inside it. Prints images per second of
every run and the ratio of the medians (target: defend at least 80% of the roof), then the two PNG
encoders on 32 of the images decoded: milliseconds per image on one thread (torch at 1 thread),
images per second on 2 threads, and the mean file size.

Run: ``python benchmarks/defend_vs_pillow.py [--count 200] [--repeats 3] [--png-level 6]
[--defense lgs] [--workers N] [--write-threads N] [--threads N]``.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import PIL.Image
import torch
from defend_throughput import make_jpegs
from torchvision.io import encode_png

from lgs_gpu.app.defend import defend_files
from lgs_gpu.app.resources import default_workers
from lgs_gpu.core.imageio import read_image


def _pillow_one(job: tuple[str, str, int]) -> None:
    source, target, level = job
    with PIL.Image.open(source) as image:
        image.convert("RGB").save(target, format="PNG", compress_level=level)


def pillow_roof(paths: list[Path], output: Path, level: int) -> float:
    """Images per second of plain Pillow decoding and PNG-encoding ``paths`` in one process per core."""
    output.mkdir()
    jobs = [(str(path), str(output / f"{path.stem}.png"), level) for path in paths]
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
        pool.map(_pillow_one, jobs, chunksize=4)
    return len(paths) / (time.perf_counter() - start)


def defend_run(inputs: Path, output: Path, args: argparse.Namespace) -> float:
    start = time.perf_counter()
    summary = defend_files([inputs], output, defense=args.defense, progress=False, png_compression=args.png_level,
                           workers=default_workers() if args.workers is None else args.workers,
                           write_threads=args.write_threads, threads=args.threads)  # fmt: skip
    seconds = time.perf_counter() - start
    if summary.skipped or len(summary.written) != args.count:
        raise RuntimeError(f"wrote {len(summary.written)} of {args.count}, skipped {summary.skipped[:3]}")
    return args.count / seconds


def png_encoders(paths: list[Path], level: int) -> None:
    """Pillow's and torchvision's PNG encoders on the same decoded images: one thread, then two."""
    images = [read_image(path) for path in paths[:32]]

    def pillow(image: torch.Tensor) -> int:
        buffer = io.BytesIO()
        PIL.Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="PNG", compress_level=level)
        return buffer.tell()

    def torchvision(image: torch.Tensor) -> int:
        return encode_png(image, compression_level=level).numel()

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, encode in (("Pillow", pillow), ("torchvision encode_png", torchvision)):
            start = time.process_time()
            sizes = [encode(image) for image in images]
            one = 1000 * (time.process_time() - start) / len(images)
            start = time.perf_counter()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(encode, images))
            two = len(images) / (time.perf_counter() - start)
            print(f"PNG level {level}, {name}: {one:.1f} ms/image on 1 thread, {two:.1f} images/s on 2 threads, "
                  f"{sum(sizes) / len(sizes) / 1000:.0f} KB")  # fmt: skip
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--png-level", type=int, default=6)
    parser.add_argument("--defense", default="lgs")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--write-threads", type=int)
    parser.add_argument("--threads", type=int, help="torch threads of the main process (default: defend's choice)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lgs-defend-pillow-") as scratch:
        root = Path(scratch)
        (root / "in").mkdir()
        paths = make_jpegs(root / "in", args.count)
        defend_run(root / "in", root / "warm", args)  # programs loaded, caches warm
        shutil.rmtree(root / "warm")
        runs: dict[str, list[float]] = {"pillow": [], "defend": []}
        order = ["pillow", "defend", "defend", "pillow"] * ((args.repeats + 1) // 2)
        for number, kind in enumerate(order[: 2 * args.repeats]):
            output = root / f"out{number}"
            speed = pillow_roof(paths, output, args.png_level) if kind == "pillow" else defend_run(root / "in", output, args)
            runs[kind].append(speed)
            shutil.rmtree(output)
        roof, defended = statistics.median(runs["pillow"]), statistics.median(runs["defend"])
        print(f"{args.count} JPEGs of 299 px -> PNG level {args.png_level}, {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
        print(f"plain Pillow, {os.cpu_count()} processes: {roof:.1f} images/s "
              f"({', '.join(f'{r:.1f}' for r in runs['pillow'])})")  # fmt: skip
        print(f"defend {args.defense}: {defended:.1f} images/s ({', '.join(f'{r:.1f}' for r in runs['defend'])})")
        print(f"defend / roof: {defended / roof:.1%} (target >= 80%)")
        png_encoders(paths, args.png_level)


if __name__ == "__main__":
    main()
