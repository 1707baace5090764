"""The measuring steps of ``benchmarks/gpu_check.py``, one per process: ``python gpu_measurements.py STEP -o DIR``.

Each step writes ``DIR/STEP.json`` after every measurement (so a step stopped at its time
limit still leaves what it measured) and ``DIR/STEP.md`` (its table) at the end. Run through
``gpu_check.py``, which sets up the environment (this checkout first, compiled Triton).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT), str(Path(__file__).resolve().parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import torch  # noqa: E402

KERNEL_SHAPE = (64, 3, 299, 299)
SWEEP_DTYPES = ("float32", "uint8", "float16")
SWEEP_SIZES = (224, 299, 512, 1024)
SWEEP_BATCHES = (1, 8, 64, 256)
NCU_METRICS = ("gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum",
               "dram__throughput.avg.pct_of_peak_sustained_elapsed", "sm__throughput.avg.pct_of_peak_sustained_elapsed")  # fmt: skip


class Results:
    """A JSON file rewritten atomically after every measurement."""

    def __init__(self, folder: Path, step: str) -> None:
        self.path = folder / f"{step}.json"
        self.data: dict = {}

    def set(self, key: str, value) -> None:
        self.data[key] = value
        self.flush()

    def append(self, key: str, value) -> None:
        self.data.setdefault(key, []).append(value)
        self.flush()

    def flush(self) -> None:
        temporary = self.path.with_suffix(".json.part")
        temporary.write_text(json.dumps(self.data, indent=1, default=str), encoding="utf-8")
        os.replace(temporary, self.path)


def images(shape: tuple[int, ...], dtype: str, seed: int = 0) -> torch.Tensor:
    """Smooth random scenes with noise patches on the GPU (some windows pass, some do not)."""
    generator = torch.Generator(device="cuda").manual_seed(seed)
    batch, channels, height, width = shape
    coarse = torch.rand(batch, channels, max(1, height // 24), max(1, width // 24), device="cuda", generator=generator)
    x = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    size = max(1, min(height, width) // 5)
    x[:, :, :size, :size] = torch.rand(batch, channels, size, size, device="cuda", generator=generator)
    if dtype == "uint8":
        return (x * 255).round().to(torch.uint8)
    return x.to(getattr(torch, dtype))


def device_facts() -> dict:
    """Name, shape and clocks of the GPU (Triton's driver has the clocks torch does not expose)."""
    import triton
    from roofline import peak_bandwidth

    properties = torch.cuda.get_device_properties(0)
    facts = {
        "name": properties.name, "capability": f"{properties.major}.{properties.minor}",
        "multiprocessors": properties.multi_processor_count, "memory_gib": round(properties.total_memory / 2**30, 1),
        "l2_bytes": getattr(properties, "L2_cache_size", None), "torch": torch.__version__, "triton": triton.__version__,
        "cuda": torch.version.cuda, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    try:
        utils = triton.runtime.driver.active.utils.get_device_properties(0)
        facts["clock_hz"] = utils["max_clock_rate"] * 1e3
        facts["peak_bandwidth"] = 2 * utils["mem_clock_rate"] * 1e3 * utils["mem_bus_width"] / 8
    except Exception:  # noqa: BLE001 - another Triton's driver: torch's properties instead
        facts["peak_bandwidth"] = peak_bandwidth(torch.device("cuda"))
    return facts


def copy_bandwidth(nbytes: int = 2 * 2**30) -> float:
    """Bytes per second a device-to-device copy moves (read + write), on ``nbytes`` of float32."""
    from triton.testing import do_bench

    source = torch.empty(nbytes // 4, device="cuda")
    target = torch.empty_like(source)
    milliseconds = do_bench(lambda: target.copy_(source), warmup=25, rep=100, return_mode="median")
    return 2 * nbytes / (milliseconds / 1e3)


def _compile_one(config: dict) -> str:
    from triton_aot import compile_stages

    launches = compile_stages(**config)
    return f"{config['dtype']} {'x'.join(map(str, config['shape']))}: {len(launches)} launches"


def precompile_configurations() -> list[dict]:
    """The launches the later steps make, so that they find them in Triton's cache (the key of a
    compile-only build of a shape is the key of a real launch of it)."""
    stages_all = ("output", "normalised_gradient", "window_mask", "suppression_map", "window_means")
    configs = [dict(shape=(batch, 3, size, size), dtype=dtype, stages=("output",), arch=90)
               for dtype in SWEEP_DTYPES for size in SWEEP_SIZES for batch in (1, 8)]  # fmt: skip
    configs += [dict(shape=KERNEL_SHAPE, dtype=dtype, stages=("output",), arch=90)
                for dtype in ("float32", "uint8", "float16")]  # fmt: skip
    configs += [dict(shape=(4, 3, 299, 299), dtype=dtype, stages=stages_all, arch=90)
                for dtype in ("float32", "float16", "bfloat16", "uint8", "float64")]  # fmt: skip
    return configs


def step_compile(folder: Path) -> str:
    """Build the kernels of the later steps in parallel, compile-only (Triton's disk cache keeps them)."""
    from concurrent.futures import ProcessPoolExecutor

    results = Results(folder, "compile")
    configs = precompile_configurations()
    started = time.perf_counter()
    workers = max(1, min(len(configs), (os.cpu_count() or 2) - 1))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for line in pool.map(_compile_one, configs):
            results.append("compiled", line)
    seconds = time.perf_counter() - started
    results.set("seconds", seconds)
    return f"{len(configs)} configurations compiled in {seconds:.0f} s on {workers} processes (Triton's cache)"


def step_device(folder: Path) -> str:
    results = Results(folder, "device")
    facts = device_facts()
    results.set("device", facts)
    facts["copy_bandwidth"] = copy_bandwidth()
    results.set("device", facts)
    lines = [f"- {key}: {value}" for key, value in facts.items()]
    return "\n".join(lines)


def kernel_times(x: torch.Tensor, calls: int = 20) -> dict[str, float]:
    """Mean device microseconds per launch of each Triton kernel of ``lgs(x)`` (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    from lgs_gpu import lgs

    for _ in range(3):
        lgs(x, backend="triton")
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        for _ in range(calls):
            lgs(x, backend="triton")
        torch.cuda.synchronize()
    return {event.key: event.device_time_total / event.count for event in trace.key_averages()
            if event.key.startswith("_") and "kernel" in event.key}  # fmt: skip


def step_kernels(folder: Path) -> str:
    """Measured kernel times beside the prediction for this device; B = 1 overhead; a CUDA graph."""
    import kernel_report

    from lgs_gpu import lgs

    results = Results(folder, "kernels")
    facts = device_facts()
    arch = int(facts["capability"].replace(".", ""))
    here = {"name": facts["name"], "multiprocessors": facts["multiprocessors"],
            "clock_hz": facts.get("clock_hz", kernel_report.DEVICE["clock_hz"]),
            "bandwidth": facts.get("peak_bandwidth") or kernel_report.DEVICE["bandwidth"]}  # fmt: skip
    lines = [f"Measured on {facts['name']} (torch.profiler, 20 calls) beside benchmarks/kernel_report.py's prediction "
             f"for it ({here['multiprocessors']} SMs, {here['bandwidth'] / 1e12:.2f} TB/s).", "",
             "| dtype | kernel | measured µs | predicted µs (800 ns) | 600 ns | predicted limit | previous model µs |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for dtype in ("float32", "uint8", "float16"):
        measured = kernel_times(images(KERNEL_SHAPE, dtype))
        predicted = kernel_report.report(arch, *KERNEL_SHAPE[:1], KERNEL_SHAPE[2], dtype, device=here)
        rows = []
        for kernel in predicted["kernels"]:
            name = kernel["name"]
            prediction = kernel["prediction"]
            row = {"dtype": dtype, "kernel": name, "measured_us": measured.get(name),
                   "predicted_us": prediction["predicted_us"], "limit": prediction["limit"],
                   "predicted_us_600ns": prediction["at_latency"]["600ns"]["predicted_us"],
                   "previous_model_us": kernel["prediction_previous"]["predicted_us"],
                   "bounds_us": prediction["bounds_us"], "waves": kernel["waves"],
                   "resident_programs_per_sm": kernel["resident_programs_per_sm"],
                   "bytes_in_flight_per_sm": kernel["bytes_in_flight_per_sm"]}  # fmt: skip
            rows.append(row)
            results.append("kernels", row)
            lines.append(f"| {dtype} | `{name}` | {row['measured_us'] or float('nan'):.1f} | "
                         f"{row['predicted_us']:.1f} | {row['predicted_us_600ns']:.1f} | {row['limit']} | "
                         f"{row['previous_model_us']:.1f} |")  # fmt: skip
        results.append("predicted_calls", {"dtype": dtype, "predicted_us": predicted["predicted_us"],
                                           "predicted_fraction_of_peak": predicted["predicted_fraction_of_peak"],
                                           "at_latency": predicted["at_latency"],
                                           "previous_model": predicted["previous_model"]})  # fmt: skip

    # B = 1: what the front adds above its kernels (validation, allocation, launches).
    one = images((1, 3, 299, 299), "float32")
    for _ in range(20):
        lgs(one)
    torch.cuda.synchronize()
    started, repeats = time.perf_counter(), 300
    for _ in range(repeats):
        lgs(one)
    torch.cuda.synchronize()
    wall_us = (time.perf_counter() - started) / repeats * 1e6
    kernels_us = sum(kernel_times(one).values())
    results.set("batch_1", {"wall_us": wall_us, "kernels_us": kernels_us, "host_overhead_us": wall_us - kernels_us})
    lines += ["", f"B = 1 (1x3x299² float32): {wall_us:.1f} µs per call, kernels {kernels_us:.1f} µs: "
              f"{wall_us - kernels_us:.1f} µs of host overhead above them."]  # fmt: skip

    # A CUDA graph of one lgs call, replayed: equal to eager, and its time per replay.
    for batch in (1, 64):
        x = images((batch, 3, 299, 299), "float32", seed=batch)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                lgs(x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = lgs(x)
        graph.replay()
        torch.cuda.synchronize()
        equal = torch.equal(captured, lgs(x))
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(100):
            graph.replay()
        end.record()
        torch.cuda.synchronize()
        replay_us = start.elapsed_time(end) / 100 * 1e3
        results.append("cuda_graph", {"batch": batch, "replay_us": replay_us, "equals_eager": equal})
        lines.append(f"CUDA graph, B = {batch}: {replay_us:.1f} µs per replay; equals eager: {equal}.")
    return "\n".join(lines)


def step_sweep(folder: Path) -> str:
    """lgs against the device's peak and a copy of the same batch, over dtypes, sizes and batches."""
    from triton.testing import do_bench

    from lgs_gpu import lgs

    results = Results(folder, "sweep")
    peak = device_facts().get("peak_bandwidth")
    lines = ["| dtype | size | batch | lgs ms | copy ms | x copy | GB/s (2 reads + 1 write) | of peak |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for dtype in SWEEP_DTYPES:
        for size in SWEEP_SIZES:
            for batch in SWEEP_BATCHES:
                x = images((batch, 3, size, size), dtype)
                out = torch.empty_like(x)
                lgs_ms = do_bench(lambda x=x: lgs(x), warmup=10, rep=40, return_mode="median")
                copy_ms = do_bench(lambda x=x, out=out: out.copy_(x), warmup=10, rep=40, return_mode="median")
                rate = 3 * x.nbytes / (lgs_ms / 1e3)
                row = {"dtype": dtype, "size": size, "batch": batch, "lgs_ms": lgs_ms, "copy_ms": copy_ms,
                       "times_copy": lgs_ms / copy_ms, "gigabytes_per_second": rate / 1e9,
                       "fraction_of_peak": rate / peak if peak else None}  # fmt: skip
                results.append("rows", row)
                fraction = f"{row['fraction_of_peak']:.0%}" if peak else "?"
                lines.append(f"| {dtype} | {size} | {batch} | {lgs_ms:.3f} | {copy_ms:.3f} | {lgs_ms / copy_ms:.2f} | "
                             f"{rate / 1e9:.0f} | {fraction} |")  # fmt: skip
                del x, out
    return "\n".join(lines)


def _target() -> None:
    """What the sanitizer and ncu run: a warm-up call, then the calls they look at."""
    from lgs_gpu import lgs, lgs_stages

    x = images(KERNEL_SHAPE, "float32")
    lgs(x)
    torch.cuda.synchronize()
    lgs(x)
    if os.environ.get("LGS_GPU_CHECK_TARGET") == "sanitizer":
        lgs(images((4, 3, 299, 299), "uint8").to(memory_format=torch.channels_last))
        buffer = torch.full((5, 5, 307, 307), float("nan"), device="cuda")
        view = buffer[:4, 1:4, 3:302, 3:302]
        view.copy_(images((4, 3, 299, 299), "float32"))
        lgs_stages(view)
    torch.cuda.synchronize()


def step_sanitizer(folder: Path) -> str:
    from gpu_check import find_tool

    results = Results(folder, "sanitizer")
    tool = find_tool("compute-sanitizer")
    env = {**os.environ, "LGS_GPU_CHECK_TARGET": "sanitizer"}
    command = [tool, "--tool", "memcheck", "--print-limit", "20", sys.executable, __file__, "target"]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=40)
    output = finished.stdout + finished.stderr
    (folder / "sanitizer-output.txt").write_text(output)
    summary = re.search(r"ERROR SUMMARY: (\d+) error", output)
    if summary is None:
        results.set("skipped", f"compute-sanitizer refused (exit {finished.returncode}): {output.strip()[-300:]}")
        return f"skipped: compute-sanitizer refused (exit {finished.returncode}); see sanitizer-output.txt"
    errors = int(summary.group(1))
    results.set("errors", errors)
    if errors:
        raise SystemExit(f"memcheck found {errors} errors; see sanitizer-output.txt")
    return "memcheck: 0 errors over lgs on 64x3x299² float32, a channels_last uint8 batch and a view in a NaN buffer"


def step_ncu(folder: Path) -> str:
    from gpu_check import find_tool

    results = Results(folder, "ncu")
    tool = find_tool("ncu")
    command = [tool, "--clock-control", "none", "--csv", "--page", "raw", "--metrics", ",".join(NCU_METRICS),
               "--launch-skip", "2", "--launch-count", "2", "-k", "regex:_statistics_kernel|_suppress_kernel",
               sys.executable, __file__, "target"]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=40)
    (folder / "ncu-output.txt").write_text(finished.stdout + finished.stderr)
    rows = [row for row in csv.DictReader(io.StringIO(finished.stdout[finished.stdout.find('"ID"'):]))
            if row.get("Kernel Name")] if '"ID"' in finished.stdout else []  # fmt: skip
    if not rows:
        reason = (finished.stdout + finished.stderr).strip()[-300:]
        results.set("skipped", f"ncu gave no metrics (exit {finished.returncode}): {reason}")
        return f"skipped: ncu gave no metrics (exit {finished.returncode}); see ncu-output.txt"
    lines = ["| kernel | µs | DRAM read MB | DRAM write MB | achieved GB/s | DRAM % of peak | SM % of peak |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip

    def number(row: dict, name: str) -> float:
        return float(str(row.get(name, "nan")).replace(",", "") or "nan")

    for row in rows:
        seconds = number(row, "gpu__time_duration.sum") * 1e-9
        read, write = number(row, "dram__bytes_read.sum"), number(row, "dram__bytes_write.sum")
        entry = {"kernel": row["Kernel Name"], "microseconds": seconds * 1e6, "dram_read_bytes": read,
                 "dram_write_bytes": write, "achieved_bytes_per_second": (read + write) / seconds if seconds else None,
                 "dram_pct_of_peak": number(row, NCU_METRICS[3]), "sm_pct_of_peak": number(row, NCU_METRICS[4])}  # fmt: skip
        results.append("kernels", entry)
        lines.append(f"| `{entry['kernel']}` | {entry['microseconds']:.1f} | {read / 1e6:.1f} | {write / 1e6:.1f} | "
                     f"{(entry['achieved_bytes_per_second'] or 0) / 1e9:.0f} | {entry['dram_pct_of_peak']:.0f} | "
                     f"{entry['sm_pct_of_peak']:.0f} |")  # fmt: skip
    return "\n".join(lines)


STEPS = {"device": step_device, "compile": step_compile, "kernels": step_kernels, "sweep": step_sweep, "sanitizer": step_sanitizer,
         "ncu": step_ncu}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=[*STEPS, "target"])
    parser.add_argument("-o", "--output-dir", default=".")
    args = parser.parse_args(argv)
    if args.step == "target":
        _target()
        return 0
    # Every step measures or compiles real kernels (and the compile step's workers inherit this);
    # popped here, not at import, so importing this module (the preflight tests do) changes nothing.
    os.environ.pop("TRITON_INTERPRET", None)
    folder = Path(args.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    table = STEPS[args.step](folder)
    (folder / f"{args.step}.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
