"""The model forward of evaluate / certify / calibrate under each allocator setting: one process, five batches.

EfficientNet-Lite0 (the offline model) on ``[50, 3, 224, 224]`` float32 batches, ``torch.no_grad()``,
2 intra-op threads; the process applies ``--allocator`` as the commands do (``lgs_gpu.app.allocator``)
and prints seconds per batch, its minor page faults and its peak RSS. Time it as a whole process, A
against B, so user and system time come from the kernel's own accounting::

    farm-bench -n 3 --timeout 600 --vs 'python benchmarks/allocator_forward.py --allocator system' \\
        -- python benchmarks/allocator_forward.py --allocator tuned
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allocator", choices=("tuned", "system"), default="tuned")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from lgs_gpu.app import allocator

    setting = allocator.configure(args.allocator)  # before torch allocates anything, as the commands do
    import torch

    from lgs_gpu.models import load_model

    torch.set_num_threads(args.threads)
    model = load_model("efficientnet_lite0")
    images = torch.rand(args.batch, 3, 224, 224)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    with torch.no_grad():
        for _ in range(args.batches):
            model(images)
    seconds = (time.perf_counter() - started) / args.batches
    print(json.dumps({"allocator": setting, "seconds_per_batch": round(seconds, 3),
                      "minor_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))  # fmt: skip


if __name__ == "__main__":
    main()
