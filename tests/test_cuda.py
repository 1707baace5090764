"""The CUDA tier: compiled Triton kernels and every GPU code path, on a real GPU.

It runs only where a GPU is present and Triton is compiled, never interpreted, so it needs its own
pytest process without ``TRITON_INTERPRET`` (the rest of the suite sets it)::

    LGS_GPU_CUDA_TIER=1 python -m pytest -m cuda tests/test_cuda.py

``benchmarks/gpu_check.py`` runs it first. Anywhere else every test here is skipped, with the reason.
"""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    return torch.stack(list(bundled_photographs(299, ALL_PHOTOGRAPHS).values()))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_triton_matches_the_reference_on_the_photographs(photos, dtype):
    x = photos if dtype == torch.uint8 else (photos.float() / 255).to(dtype)
    expected = lgs_stages(x[:4], backend="reference")
    result = lgs_stages(x[:4].cuda(), backend="triton")
    assert_lgs_close(result.output.cpu(), expected.output)
    tolerance = TOLERANCE[torch.float64 if dtype == torch.float64 else torch.float32]
    torch.testing.assert_close(result.suppression_map.cpu(), expected.suppression_map, atol=tolerance, rtol=0)
    assert (result.window_mask.cpu() != expected.window_mask).float().mean() <= 1e-3


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8], ids=str)
def test_strided_views_in_nan_buffers_read_nothing_outside(photos, channels_last, dtype):
    x = photos[:3] if dtype == torch.uint8 else photos[:3].float() / 255
    view = view_in_nan_buffer(x.cuda(), channels_last)
    result = lgs_stages(view, backend="triton")
    for name in ("output", "normalised_gradient", "suppression_map", "window_means"):
        assert not getattr(result, name).isnan().any(), f"{name}: a read outside the view"
    assert_lgs_close(result.output.cpu(), lgs(x, backend="reference"))


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 3, 5, 9), (3, 1, 33, 70), (2, 4, 16, 300), (1, 3, 517, 263)])
def test_odd_sizes(shape):
    x = textured_images(shape, torch.float32, seed=2)
    assert_lgs_close(lgs(x.cuda(), backend="triton").cpu(), lgs(x, backend="reference"))


def test_one_8192_square_image():
    x = textured_images((1, 3, 8192, 8192), torch.float32, seed=3).cuda()
    # The torch path is bit-identical to the reference (tested on CPU) and fits on the GPU.
    assert_lgs_close(lgs(x, backend="triton"), lgs(x, backend="torch"))
    torch.testing.assert_close(lgs_map(x, backend="triton"), lgs_map(x, backend="torch"), atol=1e-5, rtol=0)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_the_second_gpu():
    x = textured_images((2, 3, 64, 64), torch.float32)
    assert_lgs_close(lgs(x.to("cuda:1"), backend="triton").cpu(), lgs(x, backend="reference"))


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


def test_attack_steps_evaluate_and_certify_on_cuda(tmp_path):
    from lgs_gpu.app.certify import CertifyConfig, certify
    from lgs_gpu.attacks import lavan
    from lgs_gpu.evaluate import EvaluationConfig, evaluate
    from lgs_gpu.models import load_model

    model = load_model("efficientnet_lite0", device="cuda")
    images = torch.stack(list(bundled_photographs(224).values()))[:2].cuda()
    labels = model.predict(images)[0]
    result = lavan(model, images, labels, area_fraction=0.04, iterations=3, defense=defenses.get("lgs"))
    assert result.adversarial.is_cuda
    evaluation = evaluate(EvaluationConfig(output_dir=str(tmp_path / "evaluate"), limit=2, defenses=["none", "lgs:2.3"],
                                           attacks=["lavan"], lavan_fractions=[0.04], lavan_iterations=2,
                                           device="cuda"), progress=False)  # fmt: skip
    assert evaluation["tables"]["table1"]
    certification = certify(CertifyConfig(output_dir=str(tmp_path / "certify"), limit=2, patch_fractions=[0.05],
                                          masks_per_axis=2, device="cuda"), progress=False)  # fmt: skip
    assert certification["table"][0]["images"] == 2


def test_torch_compile_of_a_model_with_lgs_inside():
    from lgs_gpu import LocalGradientsSmoothing

    model = torch.nn.Sequential(LocalGradientsSmoothing(backend="torch"), torch.nn.Conv2d(3, 4, 3)).cuda().eval()
    x = textured_images((2, 3, 64, 64), torch.float32).cuda()
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-4)
