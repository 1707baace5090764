"""The whole GPU story in one command, from a fresh checkout with nothing installed: at most 5.7 minutes.

Steps, each in its own process with a time limit; each streams its output to ``<step>.log`` as
it runs and writes its results (``<step>.json``) the moment they exist, and ``summary.md`` grows
step by step, so a run cut short still brings back what it measured:

1. ``device``: the GPU, its theoretical bandwidth, a device-to-device copy's, versions.
   ``compile``: the kernels the later steps launch, built compile-only in parallel into Triton's
   cache (a compile-only build and a real launch of the same shapes share its key).
2. ``tests``: the CUDA tier (``tests/test_cuda.py``) with compiled Triton, a time limit per test.
   Fails when no test passes, one fails, or one skips for any reason but a named missing
   optional package.
3. ``kernels``: each Triton kernel's time (``torch.profiler``) at 64x3x299² float32 / uint8 /
   float16 beside ``benchmarks/kernel_report.py``'s prediction for this device; host overhead
   at B = 1; a CUDA-graph replay of ``lgs`` (and that it equals eager).
4. ``sweep``: ``lgs`` at B = 1/8/64/256 x 224/299/512/1024 px x float32/uint8/float16: GB/s
   against the device's peak and against a device-to-device copy of the same batch.
5. ``sanitizer``: one ``compute-sanitizer --tool memcheck`` run of ``lgs`` (skipped, with the
   reason, where the tool is missing or refuses).
6. ``ncu``: one Nsight Compute run of ``lgs`` at 64x3x299² float32: DRAM bytes read and written,
   achieved bandwidth, SM throughput (skipped likewise).
7. ``bench``: ``python benchmarks/bench.py`` on CUDA: every baseline defense beside the LGS paths.

Run from the repository root: ``python benchmarks/gpu_check.py [-o DIR] [--only STEP] [--wheels DIR]``.
``--wheels DIR`` installs the wheels there into a private folder first (the offline model's,
for the tier's model tests; see docs/kernels.md). ``--dry-run`` imports every module each step
needs and exits 0 anywhere; without CUDA the check says so in one line and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = Path(__file__).resolve().parent
for _path in (str(ROOT / "tests"), str(ROOT), str(BENCHMARKS)):  # the checkout, not an installed copy
    if _path not in sys.path:
        sys.path.insert(0, _path)

STEPS = ("device", "compile", "tests", "kernels", "sweep", "sanitizer", "ncu", "bench")
# Seconds per step: 5.7 minutes in all at most, the machine's start not counted.
TIME_LIMITS = {"device": 15, "compile": 30, "tests": 110, "kernels": 40, "sweep": 50, "sanitizer": 35, "ncu": 35,
               "bench": 45}
TEST_TIMEOUT_SECONDS = 60  # each CUDA-tier test (pytest-timeout)
# A skip the tests step accepts: the reason names a missing optional package (tests/test_cuda.py words them so).
ALLOWED_SKIP = "optional package missing:"
# What each step imports (the dry run imports exactly these, from this checkout).
STEP_MODULES = {
    "device": ["torch", "triton", "roofline", "gpu_measurements"],
    "tests": ["pytest", "lgs_gpu", "lgs_gpu.smoothing.backends.triton_path.kernels", "lgs_gpu.defenses", "lgs_gpu.data", "test_cuda"],
    "compile": ["concurrent.futures", "triton_aot", "gpu_measurements"],
    "kernels": ["torch.profiler", "triton.testing", "triton_aot", "kernel_report", "gpu_measurements"],
    "sweep": ["triton.testing", "lgs_gpu", "gpu_measurements"],
    "sanitizer": ["lgs_gpu", "gpu_measurements"],
    "ncu": ["lgs_gpu", "gpu_measurements"],
    "bench": ["bench"],
}
TOOLS = {"sanitizer": "compute-sanitizer", "ncu": "ncu"}


def _append_summary(folder: Path, title: str, body: str) -> None:
    with open(folder / "summary.md", "a", encoding="utf-8") as handle:
        handle.write(f"## {title}\n\n{body.rstrip()}\n\n")


def find_tool(name: str) -> str | None:
    """A CUDA tool on PATH or in the usual CUDA folders."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/local/cuda/bin", "/opt/cuda/bin", "/usr/local/nvidia/bin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def environment(site: Path | None) -> dict[str, str]:
    """The steps' environment: this checkout (and carried wheels) first, compiled Triton, unbuffered output."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    paths = [str(site)] if site else []
    paths += [str(ROOT), str(BENCHMARKS), str(ROOT / "tests"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    env["PYTHONUNBUFFERED"] = "1"
    env["LGS_GPU_CUDA_TIER"] = "1"
    return env


def run_streaming(command: list[str], log: Path, env: dict[str, str], limit: float) -> tuple[int | str, float]:
    """Run ``command`` with its output going straight to ``log``; returns (exit code or "timeout", seconds)."""
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
        try:
            code: int | str = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = "timeout"
            handle.write(f"\n... stopped after {limit:.0f} s (rerun with --only)\n")
    return code, time.perf_counter() - started


def install_wheels(wheels: Path, folder: Path) -> Path | None:
    """Install ``wheels/*.whl`` into a private folder (no index, no dependencies); returns it."""
    found = sorted(wheels.glob("*.whl"))
    if not found:
        return None
    site = folder / "site"
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--target", str(site), *map(str, found)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, text=True)
    return site


def tier_verdict(junit: Path) -> tuple[bool, str]:
    """Whether the CUDA tier passed by the step's rule, and a one-paragraph account."""
    if not junit.is_file():
        return False, "no junit report was written"
    root = ElementTree.parse(junit).getroot()
    passed, failed, bad_skips, allowed = 0, [], [], []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            passed += 1
        elif outcome.tag == "skipped":
            reason = outcome.get("message", "")
            (allowed if ALLOWED_SKIP in reason else bad_skips).append(f"{name}: {reason}")
        else:
            failed.append(f"{name}: {(outcome.get('message') or '')[:200]}")
    ok = passed > 0 and not failed and not bad_skips
    lines = [f"{passed} passed, {len(failed)} failed, {len(bad_skips)} skipped for another reason, "
             f"{len(allowed)} skipped for a missing optional package"]  # fmt: skip
    lines += [f"- FAILED {entry}" for entry in failed] + [f"- SKIPPED (not allowed) {entry}" for entry in bad_skips]
    lines += [f"- skipped {entry}" for entry in allowed]
    if passed == 0:
        lines.append("- no test passed: the tier did not really run")
    return ok, "\n".join(lines)


def step_tests(folder: Path, env: dict[str, str]) -> tuple[bool, str]:
    import torch

    junit = folder / "tests.xml"
    # A one-GPU machine cannot run the two-GPU test: deselected (and said), not skipped.
    marker = "cuda" if torch.cuda.device_count() > 1 else "cuda and not multi_gpu"
    command = [sys.executable, "-m", "pytest", "-m", marker, "tests/test_cuda.py", "-q", "-rs", "-p", "no:cacheprovider",
               f"--junitxml={junit}", "-o", "junit_family=xunit2"]  # fmt: skip
    try:
        importlib.import_module("pytest_timeout")
        command.append(f"--timeout={TEST_TIMEOUT_SECONDS}")
    except ImportError:
        pass  # the step's own limit still bounds the whole tier
    code, seconds = run_streaming(command, folder / "tests.log", env, TIME_LIMITS["tests"])
    ok, account = tier_verdict(junit)
    ok = ok and code == 0
    (folder / "tests.json").write_text(json.dumps({"exit": code, "seconds": seconds, "passed_rule": ok,
                                                   "account": account}, indent=1))  # fmt: skip
    note = "" if marker == "cuda" else "\n- not run: test_the_second_gpu (one GPU here)"
    return ok, f"exit {code} in {seconds:.0f} s: {'PASS' if ok else 'FAIL'}\n\n{account}{note}\n\nFull output: tests.log"


def step_worker(step: str, folder: Path, env: dict[str, str]) -> tuple[bool, str]:
    """A measuring step in its own process (``gpu_measurements.py``); its JSON grows as it measures."""
    if step in TOOLS and find_tool(TOOLS[step]) is None:
        reason = f"skipped: {TOOLS[step]} is not installed here"
        (folder / f"{step}.json").write_text(json.dumps({"skipped": reason}))
        return True, reason
    if step == "bench":
        command = [sys.executable, str(Path(__file__).with_name("bench.py")), "--device", "cuda", "--batch", "64", "--size", "299",
                   "--repeats", "5", "--no-reference", "-o", str(folder / "bench")]  # fmt: skip
    else:
        command = [sys.executable, str(BENCHMARKS / "gpu_measurements.py"), step, "-o", str(folder)]
    code, seconds = run_streaming(command, folder / f"{step}.log", env, TIME_LIMITS[step])
    summary_file = folder / ("bench/bench.md" if step == "bench" else f"{step}.md")
    body = summary_file.read_text(encoding="utf-8") if summary_file.is_file() else ""
    ok = code == 0
    if step in TOOLS and code not in (0, "timeout"):
        # The tool refused (no permission, an unsupported device): a plain reason, not a failure.
        skipped = folder / f"{step}.json"
        if skipped.is_file() and json.loads(skipped.read_text()).get("skipped"):
            ok = True
    head = f"exit {code} in {seconds:.0f} s" + ("" if ok else f" (see {step}.log)")
    return ok, f"{head}\n\n{body}"


def dry_run(steps: list[str]) -> int:
    """Import every module each step needs, from this checkout; say where each came from."""
    failures = 0
    for step in steps:
        print(f"{step}: {TIME_LIMITS[step]} s limit")
        for name in STEP_MODULES[step]:
            try:
                module = importlib.import_module(name)
                print(f"  {name}: {getattr(module, '__file__', '(built in)')}")
            except Exception as error:  # noqa: BLE001 - the dry run reports every broken import
                failures += 1
                print(f"  {name}: IMPORT FAILED: {type(error).__name__}: {error}")
        if step in TOOLS:
            print(f"  {TOOLS[step]}: {find_tool(TOOLS[step]) or 'not found (the step would skip, saying so)'}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output-dir", default=os.environ.get("OUT", "gpu-check"), help="folder for the results")
    parser.add_argument("--only", choices=STEPS, action="append", help="run only this step (repeatable)")
    parser.add_argument("--wheels", help="a folder of wheels to install privately first (default: .whl if present)")
    parser.add_argument("--dry-run", action="store_true", help="import what every step needs and exit")
    args = parser.parse_args(argv)
    steps = args.only or list(STEPS)
    os.environ.pop("TRITON_INTERPRET", None)
    if args.dry_run:
        return dry_run(steps)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine (nothing was measured)")
        return 1
    folder = Path(args.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    wheels = Path(args.wheels) if args.wheels else ROOT / ".whl"
    site = install_wheels(wheels, folder) if wheels.is_dir() else None
    env = environment(site)
    failures = 0
    for step in steps:
        started = time.perf_counter()
        try:
            ok, body = step_tests(folder, env) if step == "tests" else step_worker(step, folder, env)
        except Exception as error:  # noqa: BLE001 - one broken step must not cost the others' results
            ok, body = False, f"{type(error).__name__}: {error}"
        failures += not ok
        _append_summary(folder, step + ("" if ok else " FAILED"), body)
        print(f"gpu_check: {step} {'done' if ok else 'FAILED'} in {time.perf_counter() - started:.0f} s", flush=True)
    print(f"gpu_check: results in {folder}/summary.md")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
