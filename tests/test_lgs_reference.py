"""Hand-computed cases: the reference is the oracle, so it is checked against arithmetic done by hand."""

import math

import pytest
import torch

from lgs_gpu import lgs, lgs_map

BACKENDS = ["reference", "torch", "triton"]


def centre_spike() -> torch.Tensor:
    """A 3x3 grey image (0.2) with a bright centre (1.0)."""
    x = torch.full((1, 1, 3, 3), 0.2)
    x[0, 0, 1, 1] = 1.0
    return x


@pytest.mark.parametrize("backend", BACKENDS)
def test_centre_spike_by_hand(backend):
    # With replicate padding the spike sits under every Sobel tap once: m = |(Kx, Ky)[2-r][2-c]| * 0.8,
    # i.e. 0.8*sqrt(2) at corners, 1.6 at edges, 0 at the centre; normalised: 1/sqrt(2), 1, 0.
    # The single 3x3 window has mean (4/sqrt(2) + 4) / 9 = 0.7587 > 0.1, so ĝ = g.
    corner = 1 / math.sqrt(2)
    expected_map = torch.tensor([[corner, 1.0, corner], [1.0, 0.0, 1.0], [corner, 1.0, corner]])
    torch.testing.assert_close(lgs_map(centre_spike(), backend=backend)[0, 0], expected_map)
    # λ = 1: out = x * (1 - ĝ): 0.2 * (1 - 1/sqrt(2)) at corners, 0 at edges, the centre untouched.
    dimmed = 0.2 * (1 - corner)
    expected = torch.tensor([[dimmed, 0.0, dimmed], [0.0, 1.0, 0.0], [dimmed, 0.0, dimmed]])
    torch.testing.assert_close(lgs(centre_spike(), smoothing_factor=1.0, backend=backend)[0, 0], expected)
    # A threshold above the window mean keeps nothing: the image comes back unchanged.
    torch.testing.assert_close(lgs(centre_spike(), threshold=0.76, backend=backend), centre_spike())


def spikes_in_a_row(width: int = 32, spikes: tuple[int, ...] = (5,)) -> torch.Tensor:
    x = torch.full((1, 1, 1, width), 0.5)
    for column in spikes:
        x[..., column] = 1.0
    return x


@pytest.mark.parametrize("backend", BACKENDS)
def test_window_test_is_strictly_greater(backend):
    # One row: Sy = 0 (replicate), Sx = 4 * (x[c+1] - x[c-1]); a spike at column 5 gives g = 1 at
    # columns 4 and 6 only. Windows of 16 with no overlap start at 0 and 16; the first has mean
    # 2/16 = 0.125 exactly, the second 0.
    x = spikes_in_a_row()
    kept = lgs_map(x, threshold=0.124, window_size=16, overlap=0, backend=backend)[0, 0, 0]
    assert kept.nonzero().flatten().tolist() == [4, 6]
    assert lgs_map(x, threshold=0.125, window_size=16, overlap=0, backend=backend).count_nonzero() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_windows_that_pass_are_suppressed(backend):
    # Windows 15/5 on 40 columns start at 0, 10, 20, 25. Spikes at 5 and 33: g = 1 at 4, 6, 32, 34.
    # Window [0, 15) has mean 2/15 and passes; [10, 25) has mean 0; [20, 35) and [25, 40) pass.
    x = spikes_in_a_row(40, (5, 33))
    out = lgs(x, backend=backend)[0, 0, 0]
    expected = x[0, 0, 0].clone()
    expected[[4, 6, 32, 34]] = 0.0  # 0.5 * (1 - clip(2.3 * 1, 0, 1))
    torch.testing.assert_close(out, expected)
    # With γ = 0.14 > 2/15, no window passes.
    torch.testing.assert_close(lgs(x, threshold=0.14, backend=backend), x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.uint8])
def test_constant_image_is_returned_unchanged(backend, dtype):
    x = torch.full((2, 3, 20, 33), 0.6).to(dtype) if dtype != torch.uint8 else torch.full((2, 3, 20, 33), 153, dtype=dtype)
    assert torch.equal(lgs(x, backend=backend), x)
    assert lgs_map(x, backend=backend).count_nonzero() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_threshold_keeps_every_window_and_zero_gradient_pixels_untouched(backend):
    x = spikes_in_a_row(40, (20,))
    out = lgs(x, threshold=-1.0, backend=backend)
    expected = x.clone()
    expected[..., [19, 21]] = 0.0
    torch.testing.assert_close(out, expected)


def test_reference_sobel_is_the_cross_correlation_with_the_kernels():
    from lgs_gpu.smoothing.backends.reference import SOBEL_X, sobel

    padded = torch.rand(2, 3, 12, 17, dtype=torch.float64)
    kernel_x = torch.tensor(SOBEL_X, dtype=torch.float64)
    kernels = torch.stack([kernel_x, kernel_x.T])[:, None]
    expected = torch.nn.functional.conv2d(padded.reshape(6, 1, 12, 17), kernels).reshape(2, 3, 2, 10, 15)
    sobel_x, sobel_y = sobel(padded)
    torch.testing.assert_close(sobel_x, expected[:, :, 0])
    torch.testing.assert_close(sobel_y, expected[:, :, 1])
