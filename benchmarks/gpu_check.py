"""The whole GPU story in one command: the CUDA test tier, then measurements, in at most ~4 minutes.

Steps (each writes its files into the output folder as soon as it finishes, so a run cut short
still brings back what it measured; ``summary.md`` grows step by step):

1. ``device``: the GPU, its theoretical memory bandwidth, torch / Triton versions (``device.json``).
2. ``tests``: the CUDA tier (``tests/test_cuda.py``) in its own pytest process with compiled
   Triton (``tests.txt``, ``tests.xml``).
3. ``kernels``: each Triton kernel's time under ``torch.profiler`` on 64x3x299x299 float32 beside
   the roofline's prediction; ``lgs`` at B = 1 against its kernels' own time (``kernels.json``).
4. ``bench``: ``lgs-gpu bench`` on CUDA (``do_bench`` times, GB/s against the device's peak and a
   device-to-device copy, every baseline, images/s at B = 1, 8, 32, 256 and 224, 299, 512, 1024 px,
   peak memory) into ``bench/``.

Run from the repository root: ``python benchmarks/gpu_check.py [-o gpu-check] [--only STEP]``.
``--dry-run`` prints the steps and exits 0 anywhere; without CUDA it says so in one line and exits 1.
Nothing is installed or downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("device", "tests", "kernels", "bench")
TIME_LIMITS = {"tests": 110, "bench": 100}  # seconds; the kernels step takes a few seconds


def _append_summary(folder: Path, title: str, body: str) -> None:
    with open(folder / "summary.md", "a", encoding="utf-8") as handle:
        handle.write(f"## {title}\n\n{body.rstrip()}\n\n")


def _write_json(path: Path, value) -> None:
    temporary = path.with_suffix(path.suffix + ".part")
    temporary.write_text(json.dumps(value, indent=1))
    os.replace(temporary, path)


def step_device(folder: Path) -> None:
    """the GPU, its peak bandwidth and the versions (device.json)"""
    import torch
    import triton

    from lgs_gpu.tooling.roofline import peak_bandwidth

    device = torch.device("cuda")
    properties = torch.cuda.get_device_properties(device)
    info = {
        "name": properties.name, "capability": f"{properties.major}.{properties.minor}",
        "memory_gib": round(properties.total_memory / 2**30, 1), "multiprocessors": properties.multi_processor_count,
        "peak_bandwidth_gb_s": round(peak_bandwidth(device) / 1e9, 1), "torch": torch.__version__,
        "triton": triton.__version__, "cuda": torch.version.cuda, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    _write_json(folder / "device.json", info)
    _append_summary(folder, "device", "\n".join(f"- {key}: {value}" for key, value in info.items()))


def step_tests(folder: Path) -> None:
    """the CUDA tier, compiled Triton, in its own pytest process (tests.txt, tests.xml)"""
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    environment["LGS_GPU_CUDA_TIER"] = "1"
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-q", "-rs",
               f"--junitxml={folder / 'tests.xml'}", "-p", "no:cacheprovider"]  # fmt: skip
    try:
        finished = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True,
                                  timeout=TIME_LIMITS["tests"])  # fmt: skip
        output, code = finished.stdout + finished.stderr, finished.returncode
    except subprocess.TimeoutExpired as error:
        output, code = f"{error.stdout or ''}\n... stopped after {TIME_LIMITS['tests']} s", "timeout"
    (folder / "tests.txt").write_text(output if isinstance(output, str) else output.decode())
    last = [line for line in str(output).splitlines() if line.strip()][-1:] or ["(no output)"]
    _append_summary(folder, "CUDA tier", f"exit {code}: {last[0]}\n\nFull output: tests.txt")


def step_kernels(folder: Path) -> None:
    """each Triton kernel's time beside the roofline's prediction; B = 1 overhead (kernels.json)"""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from lgs_gpu import lgs
    from lgs_gpu.tooling import roofline

    x = torch.rand(64, 3, 299, 299, device="cuda")
    for _ in range(3):
        lgs(x, backend="triton")
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        for _ in range(10):
            lgs(x, backend="triton")
        torch.cuda.synchronize()
    measured: dict[str, float] = {}
    for event in trace.key_averages():
        if event.key.startswith("_") and "kernel" in event.key:
            measured[event.key] = event.device_time_total / event.count  # microseconds per launch
    predicted = {row["kernel"]: row for row in roofline.kernel_table(_kernel_reports(), 64, 299,
                                                                      bandwidth=roofline.peak_bandwidth(x.device))}  # fmt: skip
    rows = [{"kernel": name, "measured_us": round(time_us, 2),
             "predicted_us": round(predicted[name]["predicted_microseconds"], 2) if name in predicted else None}
            for name, time_us in sorted(measured.items())]  # fmt: skip
    # B = 1: what the front adds above its kernels (launches, allocation, validation).
    one = x[:1].contiguous()
    for _ in range(20):
        lgs(one, backend="triton")
    torch.cuda.synchronize()
    start, repeats = time.perf_counter(), 200
    for _ in range(repeats):
        lgs(one, backend="triton")
    torch.cuda.synchronize()
    wall_us = (time.perf_counter() - start) / repeats * 1e6
    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        lgs(one, backend="triton")
        torch.cuda.synchronize()
    kernels_us = sum(event.device_time_total for event in trace.key_averages() if "kernel" in event.key)
    result = {"batch_64_299": rows, "batch_1_wall_us": round(wall_us, 1), "batch_1_kernels_us": round(kernels_us, 1)}
    _write_json(folder / "kernels.json", result)
    table = ["| kernel | measured µs | predicted µs (roofline) |", "|---|---|---|"]
    table += [f"| `{r['kernel']}` | {r['measured_us']} | {r['predicted_us']} |" for r in rows]
    table += ["", f"B = 1: {wall_us:.1f} µs per call, kernels {kernels_us:.1f} µs ({wall_us - kernels_us:.1f} µs above them)"]
    _append_summary(folder, "kernels (64x3x299x299 float32)", "\n".join(table))


def _kernel_reports() -> list[dict]:
    """Register reports of the three float32 kernels the roofline reads (sm_90), compiled ahead of time."""
    from dataclasses import asdict

    from lgs_gpu.paths.triton_path.aot import compile_one, kernel_configurations

    wanted = {("_window_sums_kernel", "float32"), ("_suppress_kernel", "float32 output"), ("_image_range_kernel", "fp32")}
    return [asdict(compile_one(*config, 90)) for config in kernel_configurations() if config[:2] in wanted]


def step_bench(folder: Path) -> None:
    """lgs-gpu bench on CUDA with the batch and size sweep (bench/)"""
    command = [sys.executable, "-m", "lgs_gpu", "bench", "--device", "cuda", "--batch", "64", "--size", "299",
               "--repeats", "5", "--sweep-batches", "1,8,32,256", "--sweep-sizes", "224,299,512,1024",
               "-o", str(folder / "bench")]  # fmt: skip
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    try:
        finished = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True,
                                  timeout=TIME_LIMITS["bench"])  # fmt: skip
        note = f"exit {finished.returncode}; tables in bench/bench.md" + (
            "" if finished.returncode == 0 else f"\n\n```\n{finished.stderr[-2000:]}\n```"
        )
    except subprocess.TimeoutExpired:
        note = f"stopped after {TIME_LIMITS['bench']} s (rerun with --only bench)"
    _append_summary(folder, "lgs-gpu bench on CUDA", note)


ACTIONS = {"device": step_device, "tests": step_tests, "kernels": step_kernels, "bench": step_bench}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output-dir", default=os.environ.get("OUT", "gpu-check"), help="folder for the results")
    parser.add_argument("--only", choices=STEPS, action="append", help="run only this step (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the steps and exit")
    args = parser.parse_args(argv)
    steps = args.only or list(STEPS)
    if args.dry_run:
        for step in steps:
            print(f"{step}: {(ACTIONS[step].__doc__ or '').strip() or step}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine (nothing was measured)")
        return 1
    os.environ.pop("TRITON_INTERPRET", None)
    folder = Path(args.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    failures = 0
    for step in steps:
        start = time.perf_counter()
        try:
            ACTIONS[step](folder)
        except Exception as error:  # one broken step must not cost the others' results
            failures += 1
            _append_summary(folder, f"{step} failed", f"{type(error).__name__}: {error}")
        print(f"gpu_check: {step} done in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"gpu_check: results in {folder}/summary.md")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
