"""Peak memory of ``lgs-gpu evaluate`` against the number of images: it must not grow with them.

Builds folders of ``N`` images as hard links of a labelled sample (each link named
``<synset>_<number>.JPEG`` after its source, so the labels still come from the names; no pixel is
copied), then runs, in a fresh process per count under ``/usr/bin/time -v``, an evaluation of
clean accuracy with and without one defense (``--attacks ''``), and prints wall, user and system
time and the peak resident memory of the evaluate process (its decoding workers are processes of
their own, each holding two batches at most).

Usage::

    python benchmarks/evaluate_memory.py ../shared/data/imagenet-sample /tmp/links --counts 1000,50000 \\
        [--model mobilenet_v3_small --weights none] [--defense lgs@efficientnet_lite0] [--batch-size 50]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path


def linked_folder(sample: Path, root: Path, count: int) -> Path:
    """``root/<count>``: ``count`` hard links cycling over the sample's files, 1,000 per subfolder."""
    folder = root / str(count)
    if folder.is_dir() and sum(1 for _ in folder.rglob("*.JPEG")) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    sources = sorted(path for path in sample.iterdir() if path.suffix.lower() in (".jpeg", ".jpg", ".png"))
    for number in range(count):
        source = sources[number % len(sources)]
        synset = source.name.split("_")[0]
        link = folder / f"{number // 1000:03d}" / f"{synset}_{number:06d}{source.suffix}"
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, link)
        except OSError:  # another file system: a symbolic link reads the same
            link.symlink_to(source.resolve())
    return folder


def measure(folder: Path, output: Path, args: argparse.Namespace) -> dict:
    shutil.rmtree(output, ignore_errors=True)
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "lgs_gpu", "evaluate", "--data", str(folder), "--imagenet",
               "--attacks", "", "--defenses", f"none;{args.defense}", "--model", args.model, "--weights", args.weights,
               "--batch-size", str(args.batch_size), "--threads", str(args.threads), "-o", str(output)]  # fmt: skip
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"evaluate failed on {folder}:\n{finished.stderr[-3000:]}")

    def field(name: str) -> float:
        return float(re.search(rf"{re.escape(name)}: ([\d.]+)", finished.stderr).group(1))

    return {"wall": wall, "user": field("User time (seconds)"), "system": field("System time (seconds)"),
            "peak_mib": field("Maximum resident set size (kbytes)") / 1024}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sample", type=Path, help="a labelled image folder (synset-prefixed names)")
    parser.add_argument("root", type=Path, help="where the folders of links and the runs' outputs go")
    parser.add_argument("--counts", default="1000,50000")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--weights", default="default")
    parser.add_argument("--defense", default="lgs@efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for count in (int(value) for value in args.counts.split(",")):
        folder = linked_folder(args.sample, args.root, count)
        rows.append((count, measure(folder, args.root / f"run-{count}", args)))
        print(f"{count} images: {rows[-1][1]}", flush=True)
    first = rows[0][1]["peak_mib"]
    print(f"\n{args.model} ({args.weights}), defenses none and {args.defense}, batch {args.batch_size}, "
          f"{args.threads} threads\n")  # fmt: skip
    print("| images | wall (s) | user (s) | system (s) | peak RSS (MiB) | peak / first |")
    print("|---:|---:|---:|---:|---:|---:|")
    for count, row in rows:
        print(f"| {count:,} | {row['wall']:.0f} | {row['user']:.0f} | {row['system']:.0f} | {row['peak_mib']:.0f} | "
              f"{row['peak_mib'] / first:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
