"""The fused CPU kernel (lgs_gpu/smoothing/backends/fused_cpu.cpp): the torch path's values, every shape and dtype it takes,
the cases it hands back, and a build that fails."""

import logging

import pytest
import torch

from lgs_gpu import lgs, lgs_stages
from lgs_gpu.core.workspace import Workspace
from lgs_gpu.smoothing.backends import compiled_path, fused_cpu, torch_path

from helpers import assert_lgs_close


def _fused(x, smoothing_factor=2.3, threshold=0.1, window_size=15, overlap=5):
    out = torch.full_like(x, float("nan"))
    assert fused_cpu.lgs_output(x, out, smoothing_factor, threshold, window_size, overlap, Workspace())
    return out


@pytest.mark.parametrize("shape", [(2, 3, 40, 52), (1, 3, 15, 15), (3, 1, 31, 17), (2, 4, 16, 33), (1, 3, 4, 4),
                                   (1, 2, 1, 9), (2, 3, 7, 1), (1, 3, 300, 16)])  # fmt: skip
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_it_gives_the_torch_paths_values(shape, dtype):
    generator = torch.Generator().manual_seed(sum(shape))
    x = torch.rand(shape, generator=generator, dtype=dtype)
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)  # texture of several scales
    x[..., : shape[2] // 2, : shape[3] // 2] = torch.rand(*shape[:2], shape[2] // 2, shape[3] // 2, generator=generator,
                                                           dtype=dtype)  # fmt: skip
    for threshold in (0.1, 0.3, float("inf"), -float("inf")):
        assert_lgs_close(_fused(x, 2.3, threshold), torch_path.lgs(x, 2.3, threshold, 15, 5))


def test_it_gives_the_torch_paths_values_on_photographs(photo_batch):
    images = photo_batch.float() / 255
    for window_size, overlap in ((15, 5), (9, 3), (25, 0)):
        expected = torch_path.lgs(images, 1.7, 0.1, window_size, overlap)
        assert_lgs_close(_fused(images, 1.7, 0.1, window_size, overlap), expected)


def test_flat_images_and_a_zero_smoothing_factor_leave_the_images_as_they_are():
    flat = torch.full((2, 3, 20, 30), 0.25)
    assert torch.equal(_fused(flat), flat)
    x = torch.rand(2, 3, 20, 30)
    assert torch.equal(_fused(x, smoothing_factor=0.0), x)


def test_a_nan_stays_in_its_pixel_as_on_the_torch_path():
    x = torch.rand(3, 3, 24, 24)
    x[1, 2, 5, 7] = float("nan")
    out, expected = _fused(x), torch_path.lgs(x, 2.3, 0.1, 15, 5)
    assert torch.equal(out.isnan(), expected.isnan()) and int(out.isnan().sum()) == 1
    assert_lgs_close(out.nan_to_num(), expected.nan_to_num())


def test_an_infinite_gradient_hands_the_call_back_and_lgs_still_confines_it_to_its_image():
    x = torch.rand(3, 3, 24, 24)
    x[1, 2, 5, 7] = float("inf")
    out = torch.zeros_like(x)
    assert not fused_cpu.lgs_output(x, out, 2.3, 0.1, 15, 5, Workspace())
    assert torch.equal(out[1:], torch.zeros_like(x[1:]))  # it stopped at the image with inf
    assert_lgs_close(out[0], torch_path.lgs(x[:1], 2.3, 0.1, 15, 5)[0])
    defended = lgs(x, backend="compiled")  # the programs compute this call
    into = torch.zeros_like(x)
    assert lgs(x, backend="compiled", out=into) is into  # and rewrite every image of a given out
    expected = lgs(x, backend="torch")
    for result in (defended, into):
        assert_lgs_close(result[[0, 2]], expected[[0, 2]])
        assert torch.equal(result[1].isinf(), expected[1].isinf())
        assert torch.equal(result[1].isnan(), expected[1].isnan())


def test_the_compiled_backend_runs_it_for_the_output_alone(monkeypatch):
    calls = []
    real = fused_cpu.lgs_output
    monkeypatch.setattr(fused_cpu, "lgs_output", lambda *args: calls.append(args[0].shape) or real(*args))
    x = torch.rand(2, 3, 32, 32)
    lgs(x, backend="compiled")
    lgs_stages(x, backend="compiled", stages=("output", "suppression_map"))  # more than the output: the programs
    assert calls == [x.shape]
    out = torch.empty_like(x)
    assert lgs(x, backend="compiled", out=out) is out and len(calls) == 2
    uint8 = (x * 255).round().to(torch.uint8)
    assert torch.equal(lgs(uint8, backend="compiled"), lgs(uint8, backend="torch")) and len(calls) == 3


def test_a_failed_build_falls_back_to_the_programs_saying_why_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LGS_GPU_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fused_cpu, "_failure", {})
    monkeypatch.setattr(fused_cpu, "compile_command", lambda target: ["false"])
    x = torch.rand(2, 3, 32, 32)
    with caplog.at_level(logging.WARNING, logger="lgs_gpu"):
        first, second = lgs(x, backend="compiled"), lgs(x, backend="compiled")
    assert_lgs_close(first, lgs(x, backend="torch"))
    assert torch.equal(first, second)
    said = [record.getMessage() for record in caplog.records if "fused CPU kernel is unavailable" in record.getMessage()]
    assert len(said) == 1 and "compiler failed" in said[0]
    assert "no fused kernel: the C++ compiler failed" in compiled_path.cache_description()
    folder = tmp_path / "cache" / "cpu-fused"
    assert not [path for path in folder.rglob("*") if path.is_file()]  # no library, no partial file


def test_the_kernel_is_built_once_into_the_cache_and_loaded_by_a_new_process(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("LGS_GPU_CACHE_DIR", str(tmp_path / "cache"))
    code = ("import torch; from lgs_gpu.core import workspace; from lgs_gpu.smoothing.backends import fused_cpu; x = torch.rand(1, 3, 20, 20); "
            "print(fused_cpu.lgs_output(x, torch.empty_like(x), 2.3, 0.1, 15, 5, workspace.Workspace()))")  # fmt: skip
    for _ in range(2):
        finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert finished.stdout.strip() == "True", finished.stderr[-2000:]
    built = [path.name for path in (tmp_path / "cache").rglob("*") if path.is_file()]
    assert built == [f"{fused_cpu.NAME}.so"]
    assert "building" not in finished.stderr  # the second process loaded it


def test_the_output_does_not_depend_on_the_thread_count():
    # Every thread takes whole pixel rows and window rows of each image, so no sum is split between threads.
    x = torch.rand(5, 3, 61, 47, generator=torch.Generator().manual_seed(3))
    x[2] = 0.5  # a flat image between textured ones
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(_fused(x))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(result, results[0]) for result in results[1:])
    assert_lgs_close(results[0], torch_path.lgs(x, 2.3, 0.1, 15, 5))
