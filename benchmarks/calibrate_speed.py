"""How much a sweep saves: 100 (λ, γ) settings at one window size through `lgs_sweep` vs 100 `lgs` calls.

Two ratios, from one run:

* defense side: the sweep vs the calls, LGS alone (interleaved rounds, the best of each);
* end to end: each setting's images then classified by the offline model (what ``lgs-gpu
  calibrate`` does per setting). Both ways classify the same 100 batches of the same shape, so the
  model's share is timed once (the best of ``--model-rounds`` passes over 100 batches) and added
  to each side: timing the two 100-forward loops separately on a shared machine measured mostly
  the machine's noise.

Usage: ``python benchmarks/calibrate_speed.py [--images 16] [--rounds 5] [--model-rounds 2]
[--threads 1] [--backend auto] [-o out.json]`` (the bundled photographs at the model's 224 px,
repeated to ``--images``).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lgs_gpu import backend_info, lgs, lgs_sweep
from lgs_gpu.data import bundled
from lgs_gpu.models import load_model

SMOOTHING_FACTORS = [0.5 + 0.5 * i for i in range(10)]
THRESHOLDS = [0.025 * (i + 1) for i in range(10)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model-rounds", type=int, default=2)
    parser.add_argument("--backend", default="auto", help="LGS backend of both sides (default auto)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("-o", "--output")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model()
    photographs = bundled(model.input_size).images
    images = photographs.repeat((args.images + len(photographs) - 1) // len(photographs), 1, 1, 1)[: args.images]

    def calls() -> None:
        for threshold in THRESHOLDS:
            for smoothing_factor in SMOOTHING_FACTORS:
                lgs(images, smoothing_factor, threshold, backend=args.backend)

    def sweep() -> None:
        for _ in lgs_sweep(images, SMOOTHING_FACTORS, THRESHOLDS, backend=args.backend):
            pass

    def classify() -> None:
        for _ in range(len(SMOOTHING_FACTORS) * len(THRESHOLDS)):
            model.predict(images)

    lgs(images, backend=args.backend), model.predict(images)  # programs loaded, model warm
    best: dict[str, float] = {}
    for round_ in range(max(args.rounds, args.model_rounds)):
        for name, run in (("calls", calls), ("sweep", sweep), ("model", classify)):
            if round_ >= (args.model_rounds if name == "model" else args.rounds):
                continue
            started = time.perf_counter()
            run()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
    backend = backend_info("cpu")["auto"] if args.backend == "auto" else args.backend
    report = {
        "settings": len(SMOOTHING_FACTORS) * len(THRESHOLDS), "images": args.images, "size": model.input_size,
        "threads": args.threads, "lgs_backend": backend, "seconds": best,
        "defense_side_speedup": best["calls"] / best["sweep"],
        "end_to_end_speedup": (best["calls"] + best["model"]) / (best["sweep"] + best["model"]),
    }  # fmt: skip
    print(json.dumps(report, indent=1))
    if args.output:
        with open(args.output, "w") as stream:
            json.dump(report, stream, indent=1)


if __name__ == "__main__":
    main()
