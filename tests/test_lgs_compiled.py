"""The torch.compile CPU path keeps the contract of the reference (and compiles only where asked)."""

import pytest
import torch
from test_lgs_parity import textured_images

from lgs_gpu import LocalGradientsSmoothing, lgs, lgs_map
from lgs_gpu.paths import compiled_path as lgs_compiled
from lgs_gpu.paths import torch_path as lgs_torch

from helpers import assert_lgs_close

# The stages compile with dynamic shapes, once per compute dtype; sizes 0 and 1 are still
# specialised. The fast tests therefore stay on float32 (uint8 and float16 are computed in it)
# with B, C >= 2; float64 and size-1 batches compile again and are marked slow.
FAST_CASES = [((2, 3, 57, 64), dtype) for dtype in (torch.float32, torch.float16, torch.uint8)] + [
    ((3, 4, 16, 300), torch.float32)
]
SLOW_CASES = [((2, 3, 57, 64), torch.float64), ((1, 3, 3, 3), torch.float32), ((1, 1, 40, 30), torch.float64)]


def check_against_reference(shape, dtype):
    x = textured_images(shape, dtype, seed=11)
    out = lgs(x, backend="compiled")
    assert out.dtype == dtype and out.shape == x.shape
    assert_lgs_close(out, lgs(x, backend="reference"))
    assert_lgs_close(lgs_map(x, backend="compiled"), lgs_map(x, backend="reference"))


@pytest.mark.parametrize("shape, dtype", FAST_CASES, ids=str)
def test_compiled_matches_reference(shape, dtype):
    check_against_reference(shape, dtype)


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


def test_compiled_allocates_only_the_output_and_the_gradient_for_contiguous_input():
    from lgs_gpu.tooling.peak_memory import peak_torch_bytes

    x = textured_images((2, 3, 57, 64), torch.float32, seed=16)
    lgs(x, backend="compiled")
    peak = peak_torch_bytes(lambda: lgs(x, backend="compiled"), x.device)
    # Output (1) + gradient magnitude (1/3 of a 3-channel input) + small tables: no extra copy.
    assert x.nbytes * 4 / 3 <= peak < x.nbytes * 1.5
