"""The Triton kernels read only inside their views and address with int64 offsets.

The interpreter does not trap out-of-bounds loads, so every image here is a view inside a larger
NaN-filled buffer: any read outside the view would put a NaN into the output.
"""

import pytest
import torch

from lgs_gpu import lgs, lgs_stages

from helpers import assert_lgs_close, every_access_inside_the_arguments, interpreter_config, lgs_triton, small_tiles

pytest.importorskip("triton")
from lgs_gpu.smoothing.backends.triton_path import kernels  # noqa: E402
from lgs_gpu.smoothing.backends.triton_path.kernels import LaunchConfig  # noqa: E402


def view_in_nan_buffer(images: torch.Tensor, pad: int = 3, channels_last: bool = False) -> torch.Tensor:
    batch, channels, height, width = images.shape
    buffer = torch.full((batch + 1, channels + 2, height + 2 * pad, width + 2 * pad), float("nan"), dtype=images.dtype)
    if channels_last:
        buffer = buffer.to(memory_format=torch.channels_last)
    view = buffer[:batch, 1 : 1 + channels, pad : pad + height, pad : pad + width]
    view.copy_(images)
    return view


@pytest.mark.parametrize("shape", [(2, 3, 1, 1), (2, 3, 5, 9), (2, 3, 15, 15), (3, 1, 33, 70), (2, 4, 16, 300)])
@pytest.mark.parametrize("config", ["default", "interpreter"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_no_read_outside_the_view(shape, config, channels_last):
    images = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    view = view_in_nan_buffer(images, channels_last=channels_last)
    launch = LaunchConfig() if config == "default" else interpreter_config(*shape[2:])
    result = kernels.stages(view, 2.3, 0.1, 15, 5, config=launch)
    for name in ("output", "suppression_map", "normalised_gradient", "window_means"):
        assert not result[name].isnan().any(), f"{name} read outside the view"
    assert_lgs_close(result["output"], lgs(images, backend="reference"))
    assert torch.equal(result["window_mask"], lgs_stages(images, backend="reference").window_mask[:, 0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.float64], ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 5, 9), (2, 3, 21, 34), (1, 1, 33, 70)])
def test_no_write_outside_what_the_launcher_allocates(monkeypatch, shape, dtype):
    """Every tensor the launcher allocates (outputs and statistics) is handed out as a view inside
    a larger buffer filled with a sentinel: a write outside any of them changes a sentinel."""
    guarded = []

    def inside_guard(tensor: torch.Tensor) -> torch.Tensor:
        sentinel = 77 if not tensor.dtype.is_floating_point else -12345.0
        buffer = torch.full((tensor.numel() + 64,), sentinel, dtype=tensor.dtype)
        view = buffer[32 : 32 + tensor.numel()].view(tensor.shape)
        guarded.append((buffer, sentinel, tensor.numel()))
        return view

    real_empty, real_empty_like = torch.empty, torch.empty_like
    monkeypatch.setattr(kernels.torch, "empty", lambda *a, **k: inside_guard(real_empty(*a, **k)))
    monkeypatch.setattr(kernels.torch, "empty_like", lambda t, **k: inside_guard(real_empty_like(t, **k)))
    images = torch.rand(shape, generator=torch.Generator().manual_seed(2))
    images = (images * 255).round().to(dtype) if dtype == torch.uint8 else images.to(dtype)
    result = kernels.stages(images, 2.3, 0.1, 15, 5, config=interpreter_config(*shape[2:]))
    monkeypatch.undo()
    assert len(guarded) >= 7  # window sums, block min / max, stats, output, map, normalised, mask
    for buffer, sentinel, count in guarded:
        outside = torch.cat([buffer[:32], buffer[32 + count :]])
        assert (outside == sentinel).all(), "a kernel wrote outside a tensor it was given"
    expected = lgs_stages(images, backend="reference")
    assert_lgs_close(result["output"], expected.output)
    assert torch.equal(result["window_mask"], expected.window_mask[:, 0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8], ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 5, 9), (1, 3, 37, 61), (2, 1, 20, 130), (1, 6, 16, 40)])
@pytest.mark.parametrize("config", ["default", "small tiles"])
def test_every_load_and_store_lies_inside_a_tensor_the_kernel_was_given(shape, dtype, config):
    """On plain tensors (no canary buffer around them): lanes past the last column read nothing past the image."""
    images = torch.rand(shape, generator=torch.Generator().manual_seed(3))
    images = (images * 255).round().to(torch.uint8) if dtype == torch.uint8 else images
    launch = LaunchConfig() if config == "default" else small_tiles()
    with every_access_inside_the_arguments():
        result = kernels.stages(images, 2.3, 0.1, 15, 5, config=launch)
    assert_lgs_close(result["output"], lgs(images, backend="reference"))


def test_the_access_check_catches_a_read_past_a_tensor():
    import triton
    import triton.language as tl

    @triton.jit
    def reads_one_past(x_ptr, out_ptr):
        index = tl.arange(0, 8)
        tl.store(out_ptr + index, tl.load(x_ptr + index + 1))

    x, out = torch.rand(8), torch.empty(8)
    with every_access_inside_the_arguments(), pytest.raises(Exception, match="outside every tensor"):
        reads_one_past[(1,)](x, out)


def test_offsets_beyond_int32():
    # Three tiny uint8 images 2**30 + 64 elements apart in one 2.1 GB buffer. Each stride fits in
    # int32 (so Triton passes it as i32), but the third image starts past 2**31: 32-bit offset
    # arithmetic would wrap around.
    gap = 2**30 + 64
    buffer = torch.zeros(2 * gap + 3 * 16 * 16, dtype=torch.uint8)
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    view = buffer.as_strided((3, 3, 16, 16), (gap, 256, 16, 1))
    view.copy_(images)
    output, _ = lgs_triton(view, 2.3, 0.1, 15, 5, config=interpreter_config(16, 16))
    assert torch.equal(output, lgs(images, backend="torch"))


@pytest.mark.parametrize("band_rows", [10, 6, 7])
def test_rows_a_uint8_walk_steps_past_its_band_are_left_out(band_rows):
    """A uint8 walk steps PREFETCH_ROWS rows per iteration, so its last one may pass the band's
    bottom. Past the image's last row it computes a row that is not in the image: here its m (8t) is
    above every real one (at most √40 t), so counting it in the range would change every normalised
    value; writing it would write past the image."""
    assert kernels.PREFETCH_ROWS > 1 and 10 % kernels.PREFETCH_ROWS  # the last group passes the image
    t, flat = 40, 100
    images = torch.full((2, 1, 10, 40), flat, dtype=torch.uint8)
    images[:, :, -1] = torch.tensor([flat + t, flat + t, flat - t, flat - t] * 10, dtype=torch.uint8)
    config = LaunchConfig(band_rows=band_rows, strip_width=16, num_warps=1)  # interior and border strips
    with every_access_inside_the_arguments():
        result = kernels.stages(images, 2.3, 0.1, 15, 5, config=config)
    expected = lgs_stages(images, backend="reference")
    torch.testing.assert_close(result["normalised_gradient"], expected.normalised_gradient[:, 0], atol=1e-6, rtol=0)
    assert torch.equal(result["window_mask"], expected.window_mask[:, 0])
    assert_lgs_close(result["output"], lgs(images, backend="reference"))
