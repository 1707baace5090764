"""Peak memory of each registry defense per pixel of a batch, as ``lgs-gpu defend`` runs it.

Each defense runs in a fresh process (the peak resident size, ``ru_maxrss``, only grows): it is
warmed on a small image (so that compiled programs are built), then applied once to a
``[1, 3, S, S]`` uint8 image through ``defend_batch``; the growth of the peak, divided by S², is
what one pixel of a batch costs. ``lgs_gpu.app.resources.BYTES_PER_PIXEL`` sizes defend's batches
from the largest of these.

Usage: ``python benchmarks/defense_memory.py [--size 2048] [--threads 1] [SPEC ...]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

DEFAULT_SPECS = ("lgs", "lgs:2.3,backend=torch", "lgs+median:3", "median:3", "median:5", "gaussian:5", "bilateral:5",
                 "jpeg:75", "tvm:0.03", "bitdepth:3")  # fmt: skip

PROBE = """
import resource, sys, torch
torch.set_num_threads({threads})
from lgs_gpu.app.defend import defend_batch
from lgs_gpu.defenses import get
defense = get({spec!r})
maps = {spec!r}.startswith("lgs")
defend_batch(defense, torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8), maps)
image = torch.randint(0, 256, (1, 3, {size}, {size}), dtype=torch.uint8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
defend_batch(defense, image, maps)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 / {size} ** 2)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", default=list(DEFAULT_SPECS))
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from lgs_gpu.app.resources import BYTES_PER_PIXEL

    print(f"| defense | bytes per pixel ({args.size}², {args.threads} thread(s)) |\n|---|---:|")
    largest = 0.0
    for spec in args.specs:
        probe = PROBE.format(spec=spec, size=args.size, threads=args.threads)
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        per_pixel = float(result.stdout.strip().splitlines()[-1])
        largest = max(largest, per_pixel)
        print(f"| `{spec}` | {per_pixel:.0f} |")
    print(f"\nlargest {largest:.0f}; defend sizes batches with BYTES_PER_PIXEL = {BYTES_PER_PIXEL}")


if __name__ == "__main__":
    main()
