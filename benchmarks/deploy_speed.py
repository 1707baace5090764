"""LGS deployed: ``torch.compile`` of LGS and of a defended model against eager, and the operator's overhead.

All in one process, medians of ``--repeats`` calls after a warm-up, at the threads given:

* LGS alone at ``[B, 3, S, S]`` float32: a copy of the batch (the memory roof's stand-in), eager
  ``lgs`` (``backend="auto"``: the compiled CPU programs), ``torch.compile`` of the module as
  deployed (``backend="auto"``: the operator stays one opaque node running those programs),
  ``torch.compile`` of the decomposition (``backend="torch"``: Inductor compiles the traced form
  with the rest of the graph), and eager torch;
* an AOTInductor package of LGS alone (dynamic batch, height and width), loaded and called;
* the offline classifier (EfficientNet-Lite0) with LGS in front, eager against compiled;
* at B = 1: the front ``lgs(x)``, the operator ``torch.ops.lgs_gpu.lgs(x, ...)`` and the path it
  runs (``routing.compute``) called directly: the operator's own cost is the difference.

On CUDA (``--device cuda``) the same, with the Triton kernels inside the compiled graph.

Usage: ``python benchmarks/deploy_speed.py [--batch 32] [--size 299] [--threads 1] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import lgs_gpu.smoothing.operators  # noqa: F401  (registers torch.ops.lgs_gpu.*, timed here directly)


def median_seconds(call, repeats: int, device: torch.device) -> float:
    def synchronise():
        if device.type == "cuda":
            torch.cuda.synchronize()

    call()
    synchronise()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        synchronise()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-model", action="store_true", help="skip the defended classifier")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # Compile afresh: Inductor's caches key a graph by its ops, not by what an operator's Python
    # implementation decomposes into, so a cached graph from another version would be timed.
    torch._inductor.config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False

    from lgs_gpu import LocalGradientsSmoothing, lgs
    from lgs_gpu.core.parameters import (
        DEFAULT_OVERLAP,
        DEFAULT_SMOOTHING_FACTOR,
        DEFAULT_THRESHOLD,
        DEFAULT_WINDOW_SIZE,
    )
    from lgs_gpu.smoothing import routing

    parameters = (DEFAULT_SMOOTHING_FACTOR, DEFAULT_THRESHOLD, DEFAULT_WINDOW_SIZE, DEFAULT_OVERLAP)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device, generator=None)
    results: dict = {"device": str(device), "threads": args.threads, "batch": args.batch, "size": args.size}
    timings: dict[str, float] = {}
    first_calls: dict[str, float] = {}

    def compiled(module):
        torch._dynamo.reset()
        function = torch.compile(module, fullgraph=True)
        started = time.perf_counter()
        function(x)
        first_calls[getattr(module, "label", type(module).__name__)] = time.perf_counter() - started
        return function

    with torch.no_grad():
        copy_target = torch.empty_like(x)
        timings["copy"] = median_seconds(lambda: copy_target.copy_(x), args.repeats, device)
        deployed = LocalGradientsSmoothing().eval()
        timings["eager lgs (auto)"] = median_seconds(lambda: deployed(x), args.repeats, device)
        timings["eager lgs (torch)"] = median_seconds(lambda: lgs(x, backend="torch"), args.repeats, device)
        deployed.label = "auto"
        function = compiled(deployed)
        timings["torch.compile lgs (auto)"] = median_seconds(lambda: function(x), args.repeats, device)
        results["compile_error_auto"] = float((function(x) - deployed(x)).abs().max())
        decomposed = LocalGradientsSmoothing(backend="torch").eval()
        decomposed.label = "torch"
        function = compiled(decomposed)
        timings["torch.compile lgs (torch)"] = median_seconds(lambda: function(x), args.repeats, device)
        results["compile_error_torch"] = float((function(x) - deployed(x)).abs().max())

        # An AOTInductor package of LGS alone (any batch, height and width): on CPU it holds the
        # traced form, so that it loads without lgs_gpu (docs/deploy.md).
        import tempfile

        from torch.export import Dim

        program = torch.export.export(deployed, (x[:2],), dynamic_shapes=({0: Dim("b"), 2: Dim("h"), 3: Dim("w")},))
        with tempfile.TemporaryDirectory() as folder:
            package = torch._inductor.aoti_compile_and_package(program, package_path=f"{folder}/lgs.pt2")
            loaded = torch._inductor.aoti_load_package(package)
        timings["AOTInductor package of lgs"] = median_seconds(lambda: loaded(x), args.repeats, device)
        results["aoti_error"] = float((loaded(x) - deployed(x)).abs().max())

        if not args.no_model:
            from lgs_gpu.models import load_model

            network = load_model(device=device).eval()
            defended = torch.nn.Sequential(LocalGradientsSmoothing(), network).eval()
            defended.label = "defended model"
            timings["eager defended model"] = median_seconds(lambda: defended(x), args.repeats, device)
            function = compiled(defended)
            timings["torch.compile defended model"] = median_seconds(lambda: function(x), args.repeats, device)
            results["model_logit_difference"] = float((function(x) - defended(x)).abs().max())

        one = x[:1].clone()
        overhead_repeats = max(50, args.repeats)
        timings["B=1 lgs(x)"] = median_seconds(lambda: lgs(one), overhead_repeats, device)
        timings["B=1 torch.ops.lgs_gpu.lgs"] = median_seconds(
            lambda: torch.ops.lgs_gpu.lgs(one, *parameters), overhead_repeats, device
        )
        timings["B=1 routing.compute"] = median_seconds(
            lambda: routing.compute(one, *parameters, "auto", ("output",)), overhead_repeats, device
        )
    results["milliseconds"] = {name: round(seconds * 1e3, 3) for name, seconds in timings.items()}
    results["first_call_seconds"] = {name: round(seconds, 1) for name, seconds in first_calls.items()}
    results["operator_overhead_microseconds"] = round(
        (timings["B=1 torch.ops.lgs_gpu.lgs"] - timings["B=1 routing.compute"]) * 1e6, 1
    )
    width = max(map(len, timings))
    for name, seconds in timings.items():
        print(f"{name:<{width}}  {seconds * 1e3:9.3f} ms  {seconds / timings['copy']:7.1f}x copy")
    print(json.dumps({key: value for key, value in results.items() if key != "milliseconds"}))
    return results


if __name__ == "__main__":
    main()
