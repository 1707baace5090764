"""Bad input raises a clear error naming the problem; edge inputs behave."""

import math

import pytest
import torch

from lgs_gpu import LocalGradientsSmoothing, lgs, lgs_map, lgs_stages, lgs_sweep

from helpers import lgs_triton

BACKENDS = ["reference", "torch", "triton"]


@pytest.mark.parametrize("shape", [(8, 8), (1, 1, 3, 8, 8), (8,)])
def test_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"\[B, C, H, W\] or \[C, H, W\]"):
        lgs(torch.rand(shape))


@pytest.mark.parametrize("dtype", [torch.complex64, torch.bool, torch.int32, torch.int8, torch.int64])
def test_unsupported_dtypes(dtype):
    with pytest.raises(TypeError, match="dtype"):
        lgs(torch.zeros(1, 3, 8, 8, dtype=dtype))


def test_not_a_tensor():
    with pytest.raises(TypeError, match="torch.Tensor"):
        lgs([[0.0]])


@pytest.mark.parametrize("shape", [(1, 3, 0, 8), (2, 3, 8, 0), (1, 0, 8, 8), (3, 0, 5)])
def test_empty_image_in_a_batch(shape):
    with pytest.raises(ValueError, match="C, H, W >= 1"):
        lgs(torch.rand(shape))


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch_returns_empty(backend):
    x = torch.rand(0, 3, 10, 10)
    out = lgs(x, backend=backend if backend != "triton" else "auto")
    assert out.shape == x.shape and out.dtype == x.dtype
    assert lgs_map(x).shape == (0, 1, 10, 10)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"window_size": 0}, ValueError, "window_size must be >= 1"),
        ({"window_size": 5, "overlap": 5}, ValueError, "overlap"),
        ({"overlap": -1}, ValueError, "overlap"),
        ({"window_size": 15.0}, TypeError, "window_size must be an int"),
        ({"overlap": True}, TypeError, "overlap must be an int"),
        ({"threshold": math.nan}, ValueError, "threshold must not be NaN"),
        ({"smoothing_factor": math.nan}, ValueError, "smoothing_factor must not be NaN"),
        ({"smoothing_factor": "2.3"}, TypeError, "smoothing_factor must be a real number"),
        ({"threshold": 1j}, TypeError, "threshold must be a real number"),
        ({"backend": "cuda"}, ValueError, "backend must be one of"),
    ],
)
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        lgs(torch.rand(1, 3, 16, 16), **kwargs)
    if "backend" not in kwargs and "smoothing_factor" not in kwargs:
        with pytest.raises(error, match=match):
            lgs_map(torch.rand(1, 3, 16, 16), **kwargs)


def test_module_rejects_bad_parameters_at_construction():
    with pytest.raises(ValueError, match="overlap"):
        LocalGradientsSmoothing(window_size=4, overlap=4)
    with pytest.raises(ValueError, match="NaN"):
        LocalGradientsSmoothing(threshold=math.nan)
    with pytest.raises(ValueError, match="backend must be one of"):
        LocalGradientsSmoothing(backend="gpu")


def test_tensor_parameters_on_another_device_are_mixed_devices():
    x = torch.rand(1, 3, 16, 16)
    threshold = torch.tensor(0.1, device="meta")
    with pytest.raises(ValueError, match="mixed devices"):
        lgs(x, threshold=threshold)
    # A tensor on the images' device is accepted and means its value.
    torch.testing.assert_close(lgs(x, threshold=torch.tensor(0.1)), lgs(x, threshold=0.1))


def test_triton_backend_refuses_gradients():
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    with pytest.raises(ValueError, match="no backward pass"):
        lgs(x, backend="triton")


def test_triton_backend_needs_cuda_outside_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="CUDA tensor"):
        lgs(torch.rand(1, 3, 16, 16), backend="triton")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad_value", [math.nan, math.inf])
def test_non_finite_values_only_affect_their_own_image(backend, bad_value):
    torch.manual_seed(0)
    x = torch.rand(3, 3, 24, 31)
    poisoned = x.clone()
    poisoned[1, 2, 5, 7] = bad_value
    clean = lgs(x, backend=backend)
    out = lgs(poisoned, backend=backend)
    assert torch.equal(out[0], clean[0]) and torch.equal(out[2], clean[2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_infinite_pixel_leaves_the_other_windows_means_as_the_reference_has_them(backend):
    """m = inf makes the range infinite: the windows holding it get NaN, the others 0. (The Triton
    statistics multiply their sums by the windows' membership, where 0 x inf would make them all NaN.)"""
    x = torch.rand(1, 3, 40, 70, generator=torch.Generator().manual_seed(1))
    x[0, 1, 20, 35] = math.inf
    expected = lgs_stages(x, backend="reference").window_means
    assert expected.isnan().any() and (expected == 0).any()
    torch.testing.assert_close(lgs_stages(x, backend=backend).window_means, expected, equal_nan=True, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_image_gives_single_image(backend):
    x = torch.rand(3, 20, 20)
    assert lgs(x, backend=backend).shape == (3, 20, 20)
    assert lgs_map(x, backend=backend).shape == (1, 20, 20)


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinite_smoothing_factor_is_rejected(value):
    with pytest.raises(ValueError, match="smoothing_factor must be finite"):
        lgs(torch.rand(1, 3, 16, 16), smoothing_factor=value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_infinite_thresholds_keep_no_window_or_every_window(backend):
    x = torch.rand(2, 3, 20, 20)
    assert torch.equal(lgs(x, threshold=math.inf, backend=backend), x)
    torch.testing.assert_close(lgs(x, threshold=-math.inf, backend=backend), lgs(x, threshold=-1.0, backend=backend))


def test_batches_beyond_the_grid_limit_are_chunked(monkeypatch):
    from lgs_gpu.smoothing.backends.triton_path import kernels as module

    monkeypatch.setattr(module, "MAX_GRID_BATCH", 2)
    x = torch.rand(5, 3, 18, 20)
    output, suppressed = lgs_triton(x, 2.3, 0.1, 15, 5, write_map=True)  # through module.stages
    torch.testing.assert_close(output, lgs(x, backend="torch"))
    assert suppressed.shape == (5, 18, 20)


@pytest.mark.parametrize("dtype, value", [(torch.float32, 1e39), (torch.uint8, -1e39), (torch.float16, 3.5e38)])
def test_a_smoothing_factor_beyond_the_compute_dtype_is_refused(dtype, value):
    """1e39 is finite as a Python float but inf in float32, and inf * 0 gives NaN outputs."""
    images = torch.rand(1, 3, 16, 16).to(dtype) if dtype != torch.uint8 else torch.zeros(1, 3, 16, 16, dtype=dtype)
    with pytest.raises(ValueError, match="smoothing_factor must be finite in float32"):
        lgs(images, smoothing_factor=value)
    with pytest.raises(ValueError, match="smoothing_factors must be finite in float32"):
        list(lgs_sweep(images, [1.0, value], [0.1]))
    assert torch.isfinite(lgs(images.double() if dtype != torch.uint8 else images.double(), smoothing_factor=1e39)).all()
