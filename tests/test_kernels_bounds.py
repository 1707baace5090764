"""The Triton kernels read only inside their views and address with int64 offsets.

The interpreter does not trap out-of-bounds loads, so every image here is a view inside a larger
NaN-filled buffer: any read outside the view would put a NaN into the output.
"""

import pytest
import torch

from lgs_gpu import lgs
from lgs_gpu.kernels.lgs_triton import LaunchConfig, lgs_triton

from helpers import assert_lgs_close, interpreter_config


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
    output, suppressed = lgs_triton(view, 2.3, 0.1, 15, 5, write_map=True, config=launch)
    assert not output.isnan().any() and not suppressed.isnan().any()
    assert_lgs_close(output, lgs(images, backend="reference"))


def test_no_write_outside_the_output():
    images = torch.rand(2, 3, 21, 34)
    output, _ = lgs_triton(images, 2.3, 0.1, 15, 5)
    assert output.shape == images.shape and not output.isnan().any()


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
