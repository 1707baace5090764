"""The first `lgs` call of a new process on CPU: with the program cache in place, and (``--cold``) without.

Each sample is a fresh ``python`` process that imports ``lgs_gpu`` and times its first
``lgs(x)`` (``backend="auto"``) on a ``[B, 3, S, S]`` float32 batch, then its second call. Import time
is reported apart: it is paid whatever the backend.

Usage: ``python benchmarks/first_call.py [--batch 32] [--size 299] [--processes 5] [--cold]``.
``--cold`` first runs one process against an empty cache folder (the one-off build).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
started = time.perf_counter()
import torch, lgs_gpu
imported = time.perf_counter() - started
x = torch.rand({batch}, 3, {size}, {size})
started = time.perf_counter(); lgs_gpu.lgs(x); first = time.perf_counter() - started
started = time.perf_counter(); lgs_gpu.lgs(x); second = time.perf_counter() - started
print(json.dumps({{"import": imported, "first": first, "second": second, "auto": lgs_gpu.backend_info()["auto"]}}))
"""


def sample(batch: int, size: int, environment: dict) -> dict:
    finished = subprocess.run([sys.executable, "-c", CHILD.format(batch=batch, size=size)], env=environment,
                              capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="also time one process with an empty cache folder")
    args = parser.parse_args()
    report: dict = {"batch": args.batch, "size": args.size}
    if args.cold:
        with tempfile.TemporaryDirectory() as folder:
            report["cold"] = sample(args.batch, args.size, {**os.environ, "LGS_GPU_CACHE_DIR": folder})
    samples = [sample(args.batch, args.size, dict(os.environ)) for _ in range(args.processes)]
    report["warm_cache"] = {key: statistics.median(s[key] for s in samples) for key in ("import", "first", "second")}
    report["auto"] = samples[0]["auto"]
    report["samples"] = samples
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
