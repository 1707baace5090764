"""The CPU default (``backend="auto"``: the compiled programs) against a copy into a preallocated tensor.

For each thread count, a fresh process with glibc's default allocator (the library never changes
it) times, in one run, medians of ``--repeats`` calls of: ``y.copy_(x)`` into a preallocated ``y``
(the roof: every byte read and written once), ``lgs(x)`` (which allocates its output) and
``lgs(x, out=y)`` (which allocates no full-size image tensor: its intermediates are reused), with the
minor page faults per call. The program cache must be warm (``lgs-gpu warmup``).

Usage: ``python benchmarks/cpu_default.py [--batch 32] [--size 299] [--threads 1,2] [--repeats 15]``;
``--without-out`` leaves ``out=`` out, to run the same measure on a checkout from before it
(``PYTHONPATH=<that checkout> python benchmarks/cpu_default.py --without-out``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, statistics, sys, time, torch
torch.set_num_threads({threads})
from lgs_gpu import backend_info, lgs
x = torch.rand({batch}, 3, {size}, {size}); y = torch.empty_like(x)
lgs(x); y.copy_(x)
with_out = {with_out}
if with_out:
    lgs(x, out=y)

def timed(call):
    seconds, faults = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range({repeats}):
        started = time.perf_counter(); call(); seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / {repeats}

copy, copy_faults = timed(lambda: y.copy_(x))
fresh, fresh_faults = timed(lambda: lgs(x))
into, into_faults = timed(lambda: lgs(x, out=y)) if with_out else (float("nan"), float("nan"))
print(json.dumps({{"threads": {threads}, "auto": backend_info()["auto"], "copy_ms": copy * 1e3, "lgs_ms": fresh * 1e3,
                   "lgs_out_ms": into * 1e3, "lgs_over_copy": fresh / copy, "lgs_out_over_copy": into / copy,
                   "faults_per_call": {{"copy": copy_faults, "lgs": fresh_faults, "lgs_out": into_faults}}}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--without-out", action="store_true", help="time copy_ and lgs(x) only (older checkouts)")
    args = parser.parse_args()
    print("| threads | copy_ (ms) | lgs(x) (ms) | ratio | lgs(x, out=y) (ms) | ratio | faults per call (copy / lgs / out=) |")
    print("|---|---|---|---|---|---|---|")
    for threads in (int(value) for value in args.threads.split(",")):
        code = CHILD.format(threads=threads, batch=args.batch, size=args.size, repeats=args.repeats,
                            with_out=not args.without_out)  # fmt: skip
        result = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                            .stdout.strip().splitlines()[-1])  # fmt: skip
        faults = result["faults_per_call"]
        print(f"| {threads} | {result['copy_ms']:.2f} | {result['lgs_ms']:.2f} | {result['lgs_over_copy']:.1f}x | "
              f"{result['lgs_out_ms']:.2f} | {result['lgs_out_over_copy']:.1f}x | "
              f"{faults['copy']:.0f} / {faults['lgs']:.0f} / {faults['lgs_out']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
