"""The compiled CPU path (AOTInductor programs in a per-machine cache) keeps the contract, and is auto's CPU default."""

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
from test_lgs_parity import textured_images

from lgs_gpu import (
    LocalGradientsSmoothing,
    backend_info,
    compiled_cache_info,
    lgs,
    lgs_map,
    lgs_stages,
    warmup,
)
from lgs_gpu.core import package_cache
from lgs_gpu.smoothing.backends import compiled_path as lgs_compiled
from lgs_gpu.smoothing.backends import fused_cpu
from lgs_gpu.smoothing.backends import torch_path as lgs_torch

from helpers import assert_lgs_close

# Programs are compiled per compute dtype and per window extent, with dynamic batch, channels,
# height and width; each build takes seconds. The fast tests therefore stay on float32 (uint8
# and float16 are computed in it) and 15-pixel windows; float64 and 3-pixel images are slow.
FAST_CASES = [((2, 3, 57, 64), dtype) for dtype in (torch.float32, torch.float16, torch.uint8)] + [
    ((3, 4, 16, 300), torch.float32), ((1, 1, 15, 15), torch.float32),
    ((2, 3, 4, 5), torch.float32),  # the smallest images the programs take (MIN_SIDE)
]  # fmt: skip
SLOW_CASES = [((2, 3, 57, 64), torch.float64), ((1, 3, 3, 3), torch.float32), ((1, 1, 40, 30), torch.float64)]


@pytest.fixture(scope="module")
def program_cache(tmp_path_factory):
    """A cache folder shared by this module's tests (the suite runs with the cache off)."""
    folder = tmp_path_factory.mktemp("program-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LGS_GPU_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(autouse=True)
def _cache_on(program_cache):
    yield


def check_against_reference(shape, dtype):
    x = textured_images(shape, dtype, seed=11)
    out = lgs(x, backend="compiled")
    assert out.dtype == dtype and out.shape == x.shape
    assert_lgs_close(out, lgs(x, backend="reference"))
    assert_lgs_close(lgs_map(x, backend="compiled"), lgs_map(x, backend="reference"))


@pytest.mark.parametrize("shape, dtype", FAST_CASES, ids=str)
def test_compiled_matches_reference(shape, dtype):
    check_against_reference(shape, dtype)


def test_small_images_build_no_program_of_their_own(monkeypatch):
    # 120 mixed small images cost 134 s on a cold cache when each size smaller than the window built one.
    built = []
    real = lgs_compiled._PACKAGES.programs
    monkeypatch.setattr(lgs_compiled._PACKAGES, "programs", lambda keys, build: built.extend(keys) or real(keys, build))
    for shape in [(1, 3, 5, 7), (2, 3, 9, 14), (1, 3, 14, 40), (1, 3, 40, 14), (1, 3, 6, 300)]:
        check_against_reference(shape, torch.float32)
    assert {key for key in built if key.startswith("window_test")} <= {"window_test-float32-15x15"}


@pytest.mark.slow
@pytest.mark.parametrize("shape, dtype", SLOW_CASES, ids=str)
def test_compiled_matches_reference_in_float64_and_single_images(shape, dtype):
    check_against_reference(shape, dtype)


def test_compiled_gradient_magnitude_is_the_reference_up_to_sqrt_rounding():
    x = textured_images((2, 3, 40, 37), torch.float32, seed=12)
    compiled = lgs_compiled.gradient_magnitude(x)
    eager = lgs_torch.gradient_magnitude(x)
    # Both take the square root of the same sum; only the root's last bit may differ.
    torch.testing.assert_close(compiled, eager, rtol=2**-23, atol=0)
    flat = torch.ones(2, 3, 9, 9) * 0.3
    assert torch.equal(lgs_compiled.gradient_magnitude(flat), torch.zeros(2, 9, 9))  # flat stays exactly 0


def test_compiled_frame_uses_replicate_padding():
    x = torch.zeros(2, 2, 5, 6)
    x[..., :, 0] = 1.0  # a bright first column: Sx at column 0 sees x[c+1] - x[c-1] = 0 - 1 under replicate
    compiled = lgs_compiled.gradient_magnitude(x)
    torch.testing.assert_close(compiled, lgs_torch.gradient_magnitude(x))
    assert compiled[:, :, 0].min() > 0 and compiled[:, :, 2:].abs().max() == 0


def test_compiled_images_too_small_for_an_interior_use_the_eager_path():
    for shape in [(2, 3, 2, 9), (1, 1, 1, 1), (2, 3, 9, 2)]:
        x = textured_images(shape, torch.float32, seed=13)
        assert torch.equal(lgs(x, backend="compiled"), lgs(x, backend="torch"))


def test_compiled_nan_stays_in_its_image():
    x = textured_images((3, 3, 57, 64), torch.float32, seed=14)
    x[1, 0, 5, 5] = float("nan")
    out = lgs(x, backend="compiled")
    assert torch.isnan(out[1]).any()
    assert_lgs_close(out[[0, 2]], lgs(x[[0, 2]], backend="reference"))


def test_compiled_refuses_gradients_and_other_devices():
    x = textured_images((2, 3, 16, 16), torch.float32).requires_grad_()
    with pytest.raises(ValueError, match="no backward pass"):
        lgs(x, backend="compiled")
    with torch.no_grad():
        assert lgs(x, backend="compiled").shape == x.shape
    with pytest.raises(ValueError, match="CPU tensors"):
        lgs(torch.rand(1, 3, 8, 8, device="meta"), backend="compiled")


def test_compiled_module_and_auto_choice():
    x = textured_images((2, 3, 57, 64), torch.float32, seed=15)
    module = LocalGradientsSmoothing(backend="compiled")
    assert_lgs_close(module(x), lgs(x, backend="reference"))
    assert "backend='compiled'" in repr(module)


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8], ids=str)
def test_a_warm_call_allocates_its_output_only_and_with_out_nothing_full_size(dtype):
    """The gradient plane and conversion buffers live in the per-thread workspace (issue 26 B)."""
    from peak_memory import peak_torch_bytes

    x = textured_images((2, 3, 57, 64), dtype, seed=16)
    out = torch.empty_like(x)
    lgs(x, backend="compiled"), lgs(x, backend="compiled", out=out)  # the workspace fills once
    plane = x.numel() // 3 * 4  # one float32 [B, H, W] plane
    # Inductor's code for the window test keeps one more plane on some torch versions (2.11).
    small = plane * 1.25
    # AOTInductor of torch 2.8 and 2.11 computes a written input into a float32 temporary of the images'
    # size and copies it (checked there); torch 2.14 writes the buffer it is given in place.
    in_place = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 14)
    temporary = 0 if in_place else x.numel() * 4
    assert x.nbytes <= peak_torch_bytes(lambda: lgs(x, backend="compiled"), x.device) < x.nbytes + small + temporary
    assert peak_torch_bytes(lambda: lgs(x, backend="compiled", out=out), x.device) < small + temporary
    torch.testing.assert_close(out, lgs(x, backend="compiled"), atol=0, rtol=0)


def test_the_workspace_is_reused_per_thread_and_bounded():
    from lgs_gpu.core.workspace import Workspace

    workspace = Workspace(limit_bytes=3000)
    first = workspace.buffer("plane", (10, 10), torch.float32)  # 400 bytes
    assert workspace.buffer("plane", (10, 10), torch.float32).data_ptr() == first.data_ptr()
    workspace.buffer("other", (20, 20), torch.float32)  # 1600 bytes: both kept
    assert workspace.held_bytes() == 2000
    workspace.buffer("third", (15, 20), torch.float32)  # 1200 more: over the limit, the least recent goes
    assert [key[0] for key in workspace._buffers()] == ["other", "third"] and workspace.held_bytes() == 2800
    assert workspace.buffer("huge", (100, 100), torch.float32).numel() == 10_000  # larger than the limit: not kept
    assert [key[0] for key in workspace._buffers()] == ["other", "third"]
    seen = []
    thread = threading.Thread(target=lambda: seen.append(workspace.held_bytes()))
    thread.start()
    thread.join()
    assert seen == [0]  # another thread has buffers of its own
    from lgs_gpu.smoothing.backends import compiled_path

    compiled_path.WORKSPACE.clear()
    lgs(textured_images((2, 3, 57, 64), torch.uint8, seed=16), backend="compiled")
    assert 0 < compiled_path.WORKSPACE.held_bytes() <= compiled_path.WORKSPACE.limit_bytes


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.float16], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "in place"])
def test_out_takes_the_result_in_every_dtype_and_layout(dtype, layout):
    x = textured_images((2, 3, 57, 64), dtype, seed=21)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    expected = lgs(x, backend="compiled")
    out = x.clone() if layout == "in place" else torch.empty_like(x)
    images = out if layout == "in place" else x
    assert lgs(images, backend="compiled", out=out) is out
    assert torch.equal(out, expected)
    assert torch.equal(lgs(x[0], backend="compiled", out=torch.empty_like(x[0])), expected[0])  # one image
    assert torch.equal(lgs(x, backend="torch", out=torch.empty_like(x)), lgs(x, backend="torch"))  # other paths too


@pytest.mark.parametrize("out, error, words", [
    ("not a tensor", TypeError, "out must be a torch.Tensor"),
    (torch.empty(2, 3, 57, 65), ValueError, "shape, dtype and device"),
    (torch.empty(2, 3, 57, 64, dtype=torch.float64), ValueError, "shape, dtype and device"),
])  # fmt: skip
def test_out_is_checked(out, error, words):
    with pytest.raises(error, match=words):
        lgs(torch.rand(2, 3, 57, 64), out=out)


@pytest.mark.parametrize("layout", ["channels_last", "every other column of a larger tensor"])
def test_out_with_other_strides_than_the_images_gets_the_result_and_nothing_else(layout):
    x = textured_images((2, 3, 40, 48), torch.float32, seed=22)
    if layout == "channels_last":
        big = out = torch.empty_like(x, memory_format=torch.channels_last)
    else:
        big = torch.full((2, 3, 40, 96), -7.0)
        out = big[..., ::2]
    lgs(x, backend="compiled", out=out)
    assert torch.equal(out, lgs(x, backend="compiled"))
    if layout != "channels_last":
        assert (big[..., 1::2] == -7).all()  # nothing written outside the view


def test_an_expanded_out_is_refused():
    with pytest.raises(ValueError, match="elements that share memory"):
        lgs(torch.rand(8, 3, 40, 48), out=torch.zeros(1, 3, 40, 48).expand(8, 3, 40, 48))


def test_a_first_call_under_inference_mode_leaves_later_calls_working():
    from lgs_gpu.smoothing.backends import compiled_path

    compiled_path.WORKSPACE.clear()  # the buffers are made by the call below
    x = textured_images((2, 3, 41, 47), torch.uint8, seed=23)
    with torch.inference_mode():
        first = lgs(x, backend="compiled")
    assert torch.equal(lgs(x, backend="compiled"), first)


def test_out_overlapping_the_images_without_being_them_is_refused():
    buffer = torch.rand(3, 3, 57, 64)
    with pytest.raises(ValueError, match="shares memory with the images"):
        lgs(buffer[:2], out=buffer[1:])


def test_compiled_gives_every_stage_within_tolerance_of_the_reference():
    x = textured_images((2, 3, 57, 64), torch.float32, seed=17)
    fast, oracle = lgs_stages(x, backend="compiled"), lgs_stages(x, backend="reference")
    assert_lgs_close(fast.output, oracle.output)
    for name in ("normalised_gradient", "suppression_map", "window_means"):
        torch.testing.assert_close(getattr(fast, name), getattr(oracle, name).float(), rtol=0, atol=1e-5)
    assert torch.equal(fast.window_mask, oracle.window_mask)


def test_auto_picks_the_compiled_path_on_cpu_when_no_gradient_is_needed(monkeypatch):
    calls = []
    original = lgs_compiled.stages
    monkeypatch.setattr(lgs_compiled, "stages", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    x = textured_images((2, 3, 57, 64), torch.float32, seed=18)
    assert backend_info("cpu")["auto"] == "compiled" and backend_info("cpu")["compiled"] == "available"
    assert torch.equal(lgs(x), lgs(x, backend="compiled")) and len(calls) == 2
    lgs(x[..., :2, :])  # too small for an interior: eager torch
    assert len(calls) == 2
    # A gradient through auto still takes the differentiable torch path.
    leaf = x.clone().requires_grad_()
    lgs(leaf).sum().backward()
    assert len(calls) == 2 and leaf.grad is not None and leaf.grad.abs().sum() > 0
    with torch.no_grad():
        lgs(leaf)
    assert len(calls) == 3


def test_cache_off_means_eager_torch_for_auto_with_the_reason(monkeypatch):
    monkeypatch.setenv("LGS_GPU_CACHE_DIR", "off")
    calls = []
    monkeypatch.setattr(lgs_compiled, "stages", lambda *args, **kwargs: calls.append(1))
    info = backend_info("cpu")
    assert info["auto"] == "torch" and "LGS_GPU_CACHE_DIR=off" in info["compiled"]
    x = textured_images((2, 3, 57, 64), torch.float32, seed=19)
    assert torch.equal(lgs(x), lgs(x, backend="torch")) and not calls
    assert compiled_cache_info().startswith("off")
    with pytest.raises(ValueError, match="cache is off"):
        warmup()


def test_no_compiler_means_eager_torch_with_the_reason(monkeypatch):
    monkeypatch.setattr(package_cache, "compiler_on_path", lambda: False)
    info = backend_info("cpu")
    assert info["auto"] == "torch" and info["compiled"].startswith("no C++ compiler on PATH")


# A build process that writes part of every package it was asked for, then dies as torch 2.11's
# exporter did (SIGSEGV) or fails with a reason.
CRASHING_BUILD = """
import json, os, signal, sys
for *_, path in json.loads(sys.argv[1]):
    open(path, "wb").write(b"half a package")
print("RuntimeError: the compiler crashed", file=sys.stderr, flush=True)
os.kill(os.getpid(), signal.SIGSEGV)
"""
FAILING_BUILD = "import sys; print('Traceback ...', file=sys.stderr); sys.exit('RuntimeError: no space for the compiler')"


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LGS_GPU_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(lgs_compiled, "_PACKAGES", package_cache.PackageCache("cpu-kernels", lgs_compiled._PACKAGES.sources))
    monkeypatch.setattr(lgs_compiled, "_build_failures", {})
    return tmp_path


@pytest.mark.parametrize("script, words", [(CRASHING_BUILD, "died of SIGSEGV"), (FAILING_BUILD, "no space for the compiler")])
def test_a_failed_build_leaves_no_file_and_auto_falls_back_saying_why(monkeypatch, fresh_cache, caplog, script, words):
    monkeypatch.setattr(lgs_compiled, "child_command", lambda: [sys.executable, "-c", script])
    monkeypatch.setattr(fused_cpu, "kernels", lambda: None)  # the programs' build is what fails here
    x = textured_images((2, 3, 57, 64), torch.float32, seed=20)
    with caplog.at_level(logging.WARNING, logger="lgs_gpu"):
        out = lgs(x)  # auto: says why, then eager torch; this process lives on
    assert torch.equal(out, lgs(x, backend="torch"))
    assert any(words in record.getMessage() and "eager torch" in record.getMessage() for record in caplog.records)
    assert not [path for path in fresh_cache.rglob("*") if path.is_file()]  # no package, no partial file
    assert words in backend_info("cpu")["compiled"] and backend_info("cpu")["auto"] == "torch"
    with pytest.raises(lgs_compiled.ProgramBuildError, match=words):
        lgs(x, backend="compiled")  # asked for explicitly: the error, not a silent fallback


def test_partial_packages_of_builders_that_died_are_removed(fresh_cache):
    folder = lgs_compiled._PACKAGES.folder()
    folder.mkdir(parents=True, mode=0o700)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    tag = package_cache._builder_tag().rsplit("-", 1)[0]
    abandoned = folder / f".gradient-float32.{tag}-{finished.stdout.strip()}.x1y2.part.pt2"  # its builder has exited
    in_progress = folder / f".gradient-float32.{tag}-{os.getpid()}.a1b2.part.pt2"  # a live builder's
    elsewhere = folder / ".gradient-float32.otherhost-1.c3d4.part.pt2"  # another machine's: cannot tell
    for path in (abandoned, in_progress, elsewhere):
        path.write_bytes(b"partial")
    package_cache._remove_abandoned_parts(folder)
    assert not abandoned.exists() and in_progress.exists() and elsewhere.exists()


def test_programs_are_keyed_by_dtype_extent_and_source(tmp_path):
    assert lgs_compiled.Program("window_test", torch.float32, (15, 7)).key == "window_test-float32-15x7"
    assert lgs_compiled.Program("gradient", torch.float64, channels=3).key == "gradient-float64-c3"
    source = tmp_path / "graphs.py"
    source.write_text("a = 1\n")
    before = package_cache._fingerprint((source,))
    source.write_text("a = 22\n")
    after = package_cache._fingerprint((source,))
    assert before != after and torch.__version__.split("+")[0] in before


def test_one_build_when_threads_race_for_a_program(monkeypatch, tmp_path):
    monkeypatch.setenv("LGS_GPU_CACHE_DIR", str(tmp_path))
    cache = package_cache.PackageCache("race", (), loader=lambda path: path)  # the "program" is its path
    built, got = [], []

    def build(targets):
        built.append(targets)
        targets["p"].write_bytes(b"built")

    def ask():
        try:
            got.append(cache.program("p", build))
        except Exception as error:  # a thread's exception would otherwise vanish with the thread
            got.append(error)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and cache.cached("p")
    assert got == [cache.folder() / "p.pt2"] * 4  # every thread got the one program, none an error
    assert [path.name for path in cache.folder().iterdir()] == ["p.pt2"]


def test_warmup_builds_ahead_and_a_new_process_loads_without_the_compiler(program_cache):
    names = warmup()
    assert {"gradient-float32-c3", "window_test-float32-15x15", "suppress-float32-c3", "suppression_map-float32"} <= set(names)
    assert "window_test-float32-15x15" in compiled_cache_info()
    with pytest.raises(ValueError, match="compute dtypes"):
        warmup(dtypes=(torch.float16,))
    # A new process with the cache in place: the first call builds nothing (the exporter, which
    # every build starts with, is broken in it) and loads the programs it needs.
    script = textwrap.dedent("""
        import json, time, torch, lgs_gpu

        def no_build(*args, **kwargs):
            raise AssertionError("a program was built")

        torch.export.export = no_build
        x = torch.rand(4, 3, 64, 64)
        started = time.perf_counter()
        y = lgs_gpu.lgs(x)
        first = time.perf_counter() - started
        assert torch.equal(y, lgs_gpu.lgs(x, backend="compiled"))
        print(json.dumps({"auto": lgs_gpu.backend_info()["auto"], "first_call_seconds": first}))
    """)
    environment = {**os.environ, "LGS_GPU_CACHE_DIR": str(program_cache)}
    before = {path: path.stat().st_mtime_ns for path in program_cache.rglob("*.pt2")}
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["auto"] == "compiled"
    assert "building" not in result.stderr and "eager torch" not in result.stderr
    assert {path: path.stat().st_mtime_ns for path in program_cache.rglob("*.pt2")} == before


def test_warmup_command(capsys, program_cache):
    from lgs_gpu.app.cli import main

    assert main(["warmup"]) == 0
    printed = capsys.readouterr().out
    assert "gradient-float32" in printed and str(program_cache) in printed
    assert main(["warmup", "--dtypes", "float16"]) == 2
    assert "--dtypes takes float32 and/or float64" in capsys.readouterr().err
    assert main(["warmup", "--window-sizes", "15,x"]) == 2
    assert main(["warmup", "--window-sizes", "0"]) == 2
    assert main(["info", "--device", "cpu"]) == 0
    assert f"compiled CPU programs: {program_cache}" in capsys.readouterr().out
