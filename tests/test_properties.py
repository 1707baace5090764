"""Properties over random inputs (hypothesis): shape and dtype kept, 0 <= out <= x, ĝ in [0, 1]."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lgs_gpu import lgs, lgs_map

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8]


@st.composite
def image_batches(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
    else:
        x = torch.rand(shape, generator=generator, dtype=torch.float64)
        if draw(st.booleans()):  # flat areas and steps, not only noise
            x = (x * draw(st.integers(1, 4))).round() / 4
        x = x.to(dtype)
    params = {
        "smoothing_factor": draw(st.floats(0.0, 5.0)),
        "threshold": draw(st.floats(-0.1, 0.6)),
        "window_size": draw(st.integers(1, 20)),
    }
    params["overlap"] = draw(st.integers(0, params["window_size"] - 1))
    return x, params


@settings(max_examples=60, deadline=None)
@given(image_batches())
def test_output_keeps_shape_dtype_and_never_brightens(case):
    x, params = case
    out = lgs(x, backend="torch", **params)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert (out >= 0).all()
    assert (out <= x).all()


@settings(max_examples=60, deadline=None)
@given(image_batches())
def test_map_is_in_unit_interval(case):
    x, params = case
    params.pop("smoothing_factor")
    suppressed = lgs_map(x, backend="torch", **params)
    assert suppressed.shape == (x.shape[0], 1, *x.shape[2:])
    assert ((suppressed >= 0) & (suppressed <= 1)).all()


@settings(max_examples=15, deadline=None)
@given(image_batches())
def test_triton_and_torch_agree_on_random_cases(case):
    x, params = case
    from helpers import mismatch_fraction

    torch_out = lgs(x, backend="torch", **params)
    triton_out = lgs(x, backend="triton", **params)
    # Random window sizes make tiny images whose windows are a few pixels, where one tie flips
    # a large share of the image: bound it by one window's share per image instead of 0.1%.
    assert mismatch_fraction(triton_out, torch_out) <= 1e-3 + (params["window_size"] ** 2) / x[0, 0].numel()
