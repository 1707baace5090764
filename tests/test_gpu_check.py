"""Preflight for the first lent GPU: benchmarks/gpu_check.py works from a checkout with nothing installed,
the CUDA tier really compiles its kernels, and the launcher never touches the host on its call path."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "benchmarks"))


def run(*arguments, cwd=ROOT):
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the check would run")
def test_without_cuda_it_says_so_in_one_line(tmp_path):
    finished = run("-o", str(tmp_path / "out"))
    assert finished.returncode == 1
    assert finished.stdout.strip() == "gpu_check: no CUDA device here; run it on a GPU machine (nothing was measured)"
    assert not (tmp_path / "out").exists()


def test_the_dry_run_imports_every_step_from_a_checkout_that_is_not_installed(tmp_path):
    """As on the GPU machine: the package is not installed, gpu_check runs from a copy of the checkout."""
    checkout = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    files += [path for path in ("benchmarks/gpu_check.py", "benchmarks/gpu_measurements.py",
                                "benchmarks/kernel_report.py", "tests/tier_probe.py") if path not in files]  # fmt: skip
    for name in files:
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    # Hide this machine's editable install of lgs_gpu (a meta-path finder and this checkout on sys.path).
    bootstrap = textwrap.dedent(f"""
        import runpy, sys
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", str(f)).lower()
                            and "editable" not in repr(f).lower()]
        sys.path[:] = [p for p in sys.path if p != {str(ROOT)!r} and not p.startswith({str(ROOT) + os.sep!r})]
        try:
            import lgs_gpu
            raise SystemExit("lgs_gpu is still importable before gpu_check runs: " + lgs_gpu.__file__)
        except ImportError:
            pass
        sys.argv = ["gpu_check.py", "--dry-run"]
        runpy.run_path({str(checkout / "benchmarks" / "gpu_check.py")!r}, run_name="__main__")
    """)
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "TRITON_INTERPRET")}
    finished = subprocess.run([sys.executable, "-c", bootstrap], capture_output=True, text=True, timeout=300,
                              cwd=tmp_path, env=environment)  # fmt: skip
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert f"lgs_gpu: {checkout / 'lgs_gpu' / '__init__.py'}" in finished.stdout
    assert "IMPORT FAILED" not in finished.stdout
    steps = [line.split(":")[0] for line in finished.stdout.splitlines() if not line.startswith(" ")]
    assert steps == ["device", "compile", "tests", "kernels", "sweep", "sanitizer", "ncu", "bench"]


def test_the_steps_fit_in_six_minutes():
    from gpu_check import STEPS, TIME_LIMITS

    assert set(TIME_LIMITS) == set(STEPS) and sum(TIME_LIMITS.values()) <= 6 * 60


def test_the_compile_step_builds_compile_only(tmp_path):
    """What the compile step runs on the GPU machine, here: every configuration compiles without a GPU."""
    import gpu_measurements

    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    code = ("import gpu_measurements; c = gpu_measurements.precompile_configurations(); "
            "print(gpu_measurements._compile_one(c[0])); print(gpu_measurements._compile_one(c[-1]))")  # fmt: skip
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)])
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=environment)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "2 launches" in finished.stdout and "3 launches" in finished.stdout
    assert len(gpu_measurements.precompile_configurations()) >= 30


def test_only_dry_runs_one_step():
    finished = run("--dry-run", "--only", "bench")
    assert finished.returncode == 0
    assert finished.stdout.splitlines()[0].startswith("bench:")


def test_the_cuda_tier_collects_compiled_kernels_in_its_own_environment(tmp_path):
    """tests/conftest.py once set TRITON_INTERPRET for every process, so the tier ran interpreted (and skipped)."""
    from gpu_check import environment

    probe = tmp_path / "probe.json"
    env = environment(None)
    env["LGS_GPU_TIER_PROBE"] = str(probe)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env["PYTHONPATH"]])
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "cuda", "tests/test_cuda.py", "-p", "tier_probe",
         "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    found = json.loads(probe.read_text())
    assert found["collected"] >= 20, found["names"]
    assert found["TRITON_INTERPRET"] is None
    assert found["kernel_types"] == ["JITFunction"]


def write_junit(path: Path, cases: list[str]) -> Path:
    body = "".join(cases)
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{body}</testsuite></testsuites>')
    return path


PASS = '<testcase classname="tests.test_cuda" name="test_a"/>'
FAIL = '<testcase classname="tests.test_cuda" name="test_b"><failure message="boom"/></testcase>'
SKIP_OK = '<testcase classname="tests.test_cuda" name="test_c"><skipped message="optional package missing: x"/></testcase>'
SKIP_BAD = '<testcase classname="tests.test_cuda" name="test_d"><skipped message="no CUDA device here"/></testcase>'


@pytest.mark.parametrize("cases, passes", [([PASS, SKIP_OK], True), ([PASS, FAIL], False), ([PASS, SKIP_BAD], False),
                                           ([SKIP_OK], False), ([], False)])  # fmt: skip
def test_the_tier_verdict(tmp_path, cases, passes):
    from gpu_check import tier_verdict

    ok, account = tier_verdict(write_junit(tmp_path / "tests.xml", cases))
    assert ok is passes, account
    if not cases:
        assert "no test passed" in account


def test_output_streams_to_the_log_and_a_step_stops_at_its_limit(tmp_path):
    from gpu_check import run_streaming

    log = tmp_path / "step.log"
    code, seconds = run_streaming([sys.executable, "-u", "-c", "import time; print('measured', flush=True); time.sleep(30)"],
                                  log, dict(os.environ), limit=3)  # fmt: skip
    assert code == "timeout" and seconds < 20
    assert "measured" in log.read_text() and "stopped after 3 s" in log.read_text()


def test_the_launcher_copies_nothing_to_the_host_and_never_synchronises(monkeypatch):
    """No torch.tensor, .item(), .cpu() or synchronize on the call path: one lgs call can be a CUDA graph.

    The launches are compiled, not run, on meta tensors (a subprocess: the suite interprets Triton).
    """
    code = textwrap.dedent("""
        import torch
        import triton_aot as aot

        def refuse(name):
            def refused(*args, **kwargs):
                raise AssertionError(f"{name} on the launch path")
            return refused

        torch.tensor = refuse("torch.tensor")
        torch.Tensor.item = refuse("Tensor.item")
        torch.Tensor.cpu = refuse("Tensor.cpu")
        torch.Tensor.tolist = refuse("Tensor.tolist")
        torch.cuda.synchronize = refuse("torch.cuda.synchronize")
        stages = ("output", "normalised_gradient", "window_mask", "suppression_map", "window_means")
        for dtype in ("float32", "uint8", "float64"):
            launches = aot.compile_stages((4, 3, 299, 299), dtype, stages, 90)
            assert [launch.kernel for launch in launches] == ["_statistics_kernel", "_means_kernel", "_suppress_kernel"]
            for launch in launches:
                for value in launch.arguments.values():
                    assert not isinstance(value, torch.Tensor) or value.device.type == "meta"
        print("ok")
    """)
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT / "benchmarks"), environment.get("PYTHONPATH", "")])
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT,
                              env=environment)  # fmt: skip
    assert finished.returncode == 0 and finished.stdout.strip() == "ok", finished.stderr[-3000:]
