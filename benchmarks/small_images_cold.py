"""``lgs-gpu defend`` on many small images of mixed sizes, on a cold and then a warm program cache.

Writes ``--count`` PNG crops of the bundled photographs, each side drawn from 6..59 px (most are
smaller than LGS's 15 px window in at least one axis), then runs ``lgs-gpu defend --workers 0``
twice in fresh processes with ``LGS_GPU_CACHE_DIR`` set to a new folder: the first builds the
compiled CPU programs, the second loads them. Prints both wall times and the programs built.

Usage: ``python benchmarks/small_images_cold.py [--count 120]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=120)
    args = parser.parse_args()
    from lgs_gpu.data import bundled_photographs

    photos = list(bundled_photographs().values())
    generator = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="lgs-small-") as scratch:
        root = Path(scratch)
        (root / "in").mkdir()
        for index in range(args.count):
            height, width = generator.integers(6, 60, 2)
            crop = photos[index % len(photos)][:, :height, :width].permute(1, 2, 0).numpy()
            PIL.Image.fromarray(crop).save(root / "in" / f"{index:03}.png")
        environment = dict(os.environ, LGS_GPU_CACHE_DIR=str(root / "cache"))
        for run in ("cold", "warm"):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "lgs_gpu", "defend", str(root / "in"), "-o", str(root / run),
                            "--workers", "0"], env=environment, check=True, capture_output=True)  # fmt: skip
            print(f"{run}: {time.perf_counter() - started:.1f} s for {args.count} images")
        print("programs built:", ", ".join(sorted(path.stem for path in (root / "cache").rglob("*.pt2"))))


if __name__ == "__main__":
    main()
