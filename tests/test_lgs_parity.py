"""The three paths agree: triton (interpreted on CPU) vs torch vs the literal reference."""

import pytest
import torch
import torch.nn.functional as F

from lgs_gpu import lgs, lgs_map
from lgs_gpu.core.validate import from_unit_float, to_unit_float

import helpers
from helpers import assert_lgs_close, interpreter_config, mismatch_fraction, triton_or_skip

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8]
SHAPES = [(1, 1, 1, 1), (1, 3, 14, 14), (2, 3, 15, 15), (3, 4, 16, 300), (2, 1, 224, 224), (1, 3, 299, 299), (5, 3, 37, 41)]


def textured_images(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Smooth random scenes with planted noise patches, so that some windows pass and some fail."""
    generator = torch.Generator().manual_seed(seed)
    batch, channels, height, width = shape
    coarse = torch.rand(batch, channels, max(1, height // 24), max(1, width // 24), generator=generator)
    images = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    for image in range(batch):
        size = max(1, min(height, width) // 5)
        top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
        images[image, :, top : top + size, left : left + size] = torch.rand(channels, size, size, generator=generator)
    return from_unit_float(images, dtype)


def lgs_triton(*args, **kwargs):
    """The Triton launcher, imported when a test needs it (triton is an optional extra)."""
    triton_or_skip()
    return helpers.lgs_triton(*args, **kwargs)


def run_triton(x: torch.Tensor, **params) -> torch.Tensor:
    params = {"smoothing_factor": 2.3, "threshold": 0.1, "window_size": 15, "overlap": 5, **params}
    output, _ = lgs_triton(x, **params, config=interpreter_config(*x.shape[2:]))
    return output


def suppressed_fraction(x: torch.Tensor) -> float:
    return (lgs_map(x, backend="torch") > 0).float().mean().item()


def test_textured_images_exercise_the_window_test():
    x = textured_images((2, 3, 224, 224), torch.float32)
    assert 0.05 < suppressed_fraction(x) < 0.9  # some windows pass, many do not


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_torch_matches_reference(shape, dtype):
    x = textured_images(shape, dtype)
    expected = lgs(x, backend="reference")
    assert_lgs_close(lgs(x, backend="torch"), expected)
    assert_lgs_close(lgs_map(x, backend="torch"), lgs_map(x, backend="reference"))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_triton_matches_reference(shape, dtype):
    x = textured_images(shape, dtype, seed=1)
    assert_lgs_close(run_triton(x), lgs(x, backend="reference"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_triton_map_matches_reference(dtype):
    x = textured_images((3, 3, 64, 90), dtype, seed=2)
    _, suppressed = lgs_triton(x, 2.3, 0.1, 15, 5, write_output=False, write_map=True, config=interpreter_config(64, 90))
    assert suppressed.dtype == dtype
    assert_lgs_close(suppressed[:, None], lgs_map(x, backend="reference"))


def test_triton_default_launch_config_matches_reference():
    """The block sizes used on a GPU (many small programs), not only the interpreter-friendly ones."""
    x = textured_images((2, 3, 70, 150), torch.float32, seed=3)
    output, _ = lgs_triton(x, 2.3, 0.1, 15, 5)
    assert_lgs_close(output, lgs(x, backend="reference"))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16], ids=str)
def test_paths_agree_on_real_photographs(photo_batch, dtype):
    x = photo_batch if dtype == torch.uint8 else from_unit_float(to_unit_float(photo_batch), dtype)
    expected = lgs(x, backend="reference")
    assert_lgs_close(lgs(x, backend="torch"), expected)
    assert_lgs_close(lgs(x, backend="compiled"), expected)
    assert_lgs_close(run_triton(x), expected)
    # The photographs are not all-suppressed or all-kept, so the window test is really exercised.
    assert 0.01 < suppressed_fraction(x) < 0.9


@pytest.mark.parametrize("backend", ["torch", "compiled", "triton", "reference"])
@pytest.mark.parametrize("layout", ["channels_last", "sliced", "transposed"])
def test_non_contiguous_inputs(backend, layout):
    base = textured_images((2, 3, 40, 52), torch.float32, seed=4)
    if layout == "channels_last":
        x = base.to(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = textured_images((2, 5, 80, 60), torch.float32, seed=5)[:, 1:4, ::2, 4:56]
    else:
        x = base.transpose(2, 3)
    expected = lgs(x.contiguous(), backend="reference")
    out = run_triton(x) if backend == "triton" else lgs(x, backend=backend)
    assert_lgs_close(out, expected)
    if layout == "channels_last" and backend != "reference":
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("backend", ["torch", "compiled", "triton", "reference"])
def test_uint8_round_trip(backend):
    x = textured_images((2, 3, 48, 48), torch.uint8, seed=6)
    out = run_triton(x) if backend == "triton" else lgs(x, backend=backend)
    assert out.dtype == torch.uint8
    # uint8 means: divide by 255, defend in float32, round half-to-even back to [0, 255].
    expected = (lgs(x.float() / 255, backend="reference") * 255).round().to(torch.uint8)
    assert_lgs_close(out, expected)
    assert mismatch_fraction(out, expected) < 1e-3


@pytest.mark.parametrize("backend", ["torch", "compiled", "triton"])
@pytest.mark.parametrize("params", [{"smoothing_factor": 1.5, "threshold": 0.05, "window_size": 9, "overlap": 3},
                                    {"smoothing_factor": 3.0, "threshold": 0.2, "window_size": 20, "overlap": 0},
                                    {"smoothing_factor": 2.3, "threshold": 0.1, "window_size": 6, "overlap": 5}])
def test_other_parameters(backend, params):
    x = textured_images((2, 3, 57, 64), torch.float32, seed=7)
    expected = lgs(x, **params, backend="reference")
    out = run_triton(x, **params) if backend == "triton" else lgs(x, **params, backend=backend)
    assert_lgs_close(out, expected)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_triton_matches_reference_on_a_full_batch(dtype):
    x = textured_images((5, 3, 299, 299), dtype, seed=8)
    assert_lgs_close(run_triton(x), lgs(x, backend="reference"))
