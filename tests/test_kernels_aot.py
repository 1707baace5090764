"""Preflight: every Triton kernel compiles for sm_80 and sm_90 as a CUDA launch of the real shapes would.

No GPU is needed. ``benchmarks/triton_aot.py`` runs the real launcher on ``meta``
tensors under a stand-in for Triton's active driver (a CUDA target) with every launch turned into
``JITFunction.run(..., warmup=True)``: Triton specialises each argument as for a launch, compiles,
and nothing runs. The suite runs with ``TRITON_INTERPRET=1``, under which kernels cannot be
compiled, so the compilation runs in a subprocess without it — against this machine's Triton and
against triton 3.6 (the GPU machine's), installed into a ``--target`` folder.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from triton_aot import ARCHITECTURES

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[1]
TRITON_36 = "3.6.0"


def compile_in_subprocess(path: Path, *arguments: str, pythonpath: str | None = None) -> dict:
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    if pythonpath:
        environment["PYTHONPATH"] = os.pathsep.join([pythonpath, str(ROOT)])
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "triton_aot.py"), "--json", str(path), *arguments],
        capture_output=True, text=True, env=environment, timeout=1500, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    print("\n" + result.stdout[:3000])
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    # Every dtype and code path, fewer stage sets, for the GPU machine's sm_90 (cold, about ten seconds a
    # uint8 kernel, most in Triton's coalescing pass): sm_80 and the whole matrix are slow tests below.
    return compile_in_subprocess(tmp_path_factory.mktemp("aot") / "kernels.json", "--quick", "--arch", "90")


def expected_launches(configs) -> set[tuple[str, str]]:
    from triton_aot import _variant

    expected = set()
    for config in configs:
        stages = set(config["stages"])
        names = ["_statistics_kernel"] + ["_means_kernel"] * ("window_means" in stages)
        names += ["_suppress_kernel"] * bool(stages - {"window_means"})
        expected |= {(name, _variant(config)) for name in names}
    return expected


def check_reports(reports: list[dict], configs, architectures=ARCHITECTURES) -> None:
    expected = expected_launches(configs)
    for arch in architectures:
        compiled = {(r["kernel"], r["variant"]) for r in reports if r["arch"] == arch}
        assert compiled == expected, f"sm_{arch}: missing {expected - compiled}, extra {compiled - expected}"
    for report in reports:
        assert 0 < report["registers"] <= 255, report
        assert report["spill_bytes"] == 0, report
        assert report["stack_bytes"] <= 64, report  # a small frame, not a spilled tile


def test_every_launch_compiles_for_sm_90_without_spills(compiled):
    from triton_aot import configurations

    check_reports(compiled["reports"], configurations(quick=True), architectures=(90,))
    # Every dtype, both walks (carried and reloading channels) and both offset widths were compiled.
    variants = " ".join(r["variant"] for r in compiled["reports"])
    for fragment in ("uint8", "float16", "bfloat16", "float32", "float64", "8x6x64x64", "46341", "channels_last"):
        assert fragment in variants


@pytest.mark.slow
def test_every_launch_compiles_for_sm_80_without_spills(tmp_path):
    from triton_aot import configurations

    result = compile_in_subprocess(tmp_path / "kernels80.json", "--quick", "--arch", "80")
    check_reports(result["reports"], configurations(quick=True), architectures=(80,))


@pytest.mark.slow
def test_the_whole_matrix_compiles_without_spills(tmp_path):
    """Every dtype x stage set (116 launches; the unrolled uint8 walk takes ptxas about 26 s a variant)."""
    from triton_aot import configurations

    check_reports(compile_in_subprocess(tmp_path / "all.json")["reports"], configurations())


def test_image_kernels_give_every_sm_at_least_four_programs(compiled):
    for report in compiled["reports"]:
        if report["variant"].startswith("float32 64x3x299x299") and report["kernel"] != "_means_kernel":
            assert report["programs"] >= 4 * 132, report  # an H100 SXM has 132 SMs


@pytest.fixture(scope="module")
def triton_36(tmp_path_factory) -> str:
    """triton 3.6: this environment's, or one in a --target folder (cached between runs, per Python version: the
    wheel holds compiled code); the test skips when it cannot be installed."""
    import triton

    if triton.__version__ == TRITON_36:
        return ""
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lgs_gpu-tests" / f"triton-{TRITON_36}-{python}"
    if not (cache / "triton" / "__init__.py").is_file():
        staging = tmp_path_factory.mktemp("triton36")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(staging), f"triton=={TRITON_36}"],
            capture_output=True, text=True, timeout=900,
        )
        if result.returncode != 0:
            pytest.skip(f"triton {TRITON_36} could not be installed here: {result.stderr.strip()[-300:]}")
        cache.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, cache) if not cache.exists() else None
    return str(cache)


@pytest.mark.slow
@pytest.mark.parametrize("arch", [90, 80])
def test_every_kernel_compiles_with_the_gpu_machines_triton(triton_36, tmp_path, arch):
    """Under ``-m slow`` (about three minutes an architecture, cold): CI's ``.ci/stack gpu`` runs the
    default preflight above with triton 3.6 as its own."""
    from triton_aot import configurations

    result = compile_in_subprocess(tmp_path / "kernels36.json", "--quick", "--arch", str(arch), pythonpath=triton_36)
    assert result["triton"] == TRITON_36
    check_reports(result["reports"], configurations(quick=True), architectures=(arch,))
