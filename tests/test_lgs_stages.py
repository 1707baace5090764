"""``lgs_stages``: every stage from one pass, on every backend, equal to the literal reference."""

import pytest
import torch
from test_lgs_parity import textured_images

from lgs_gpu import STAGES, LGSStages, LocalGradientsSmoothing, lgs, lgs_map, lgs_stages
from lgs_gpu.core.windows import axis_windows

from helpers import TOLERANCE, assert_lgs_close, triton_or_skip

BACKENDS = ["torch", "reference", "triton"]


def stages_on(x: torch.Tensor, backend: str, **options) -> LGSStages:
    if backend == "triton":
        triton_or_skip()
    return lgs_stages(x, backend=backend, **options)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.float64], ids=str)
def test_every_stage_matches_the_reference(backend, dtype):
    x = textured_images((2, 3, 45, 61), dtype, seed=3)
    result, expected = stages_on(x, backend), lgs_stages(x, backend="reference")
    rows, cols = axis_windows(45, 15, 5).count, axis_windows(61, 15, 5).count
    assert result.output.shape == x.shape and result.output.dtype == dtype
    for name in ("normalised_gradient", "window_mask", "suppression_map"):
        assert getattr(result, name).shape == (2, 1, 45, 61), name
    assert result.window_means.shape == (2, rows, cols)
    assert result.window_mask.dtype == torch.bool
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    assert result.normalised_gradient.dtype == result.suppression_map.dtype == result.window_means.dtype == compute
    assert_lgs_close(result.output, expected.output)
    tolerance = TOLERANCE[compute]
    torch.testing.assert_close(result.normalised_gradient, expected.normalised_gradient, atol=tolerance, rtol=0)
    torch.testing.assert_close(result.window_means, expected.window_means, atol=tolerance, rtol=0)
    assert torch.equal(result.window_mask, expected.window_mask)
    torch.testing.assert_close(result.suppression_map, expected.suppression_map, atol=tolerance, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stages_agree_with_each_other_and_with_lgs(backend):
    x = textured_images((3, 3, 40, 40), torch.float32, seed=4)
    result = stages_on(x, backend)
    assert 0 < result.window_mask.float().mean() < 1  # some windows pass, some do not
    assert torch.equal(result.suppression_map, torch.where(result.window_mask, result.normalised_gradient, 0))
    # A window passes exactly when its mean is above γ: the mask is the union of those windows.
    rows, cols = axis_windows(40, 15, 5), axis_windows(40, 15, 5)
    union = torch.zeros(3, 40, 40, dtype=torch.bool)
    for row, top in enumerate(rows.starts):
        for col, left in enumerate(cols.starts):
            union[:, top : top + rows.extent, left : left + cols.extent] |= (result.window_means[:, row, col] > 0.1)[
                :, None, None
            ]
    assert torch.equal(union, result.window_mask[:, 0])
    if backend != "triton":  # lgs / lgs_map on the triton backend launch with the default blocks: same values
        assert torch.equal(result.output, lgs(x, backend=backend))
        assert torch.equal(result.suppression_map, lgs_map(x, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_asking_for_fewer_stages_gives_the_same_values(backend):
    x = textured_images((2, 3, 33, 47), torch.float32, seed=5)
    full = stages_on(x, backend)
    for name in STAGES:
        alone = stages_on(x, backend, stages=(name,))
        assert torch.equal(getattr(alone, name), getattr(full, name)), name
        assert all(getattr(alone, other) is None for other in STAGES if other != name)
    pair = stages_on(x, backend, stages=["output", "window_mask"])
    assert pair.suppression_map is None and torch.equal(pair.output, full.output)


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_single_image_and_empty_batch(backend):
    x = textured_images((1, 3, 30, 30), torch.float32)
    single = lgs_stages(x[0], backend=backend)
    batched = lgs_stages(x, backend=backend)
    for name in STAGES:
        assert torch.equal(getattr(single, name), getattr(batched, name)[0]), name
    empty = lgs_stages(torch.rand(0, 3, 30, 30), backend=backend)
    assert empty.output.shape == (0, 3, 30, 30) and empty.window_mask.shape == (0, 1, 30, 30)
    assert empty.window_means.shape == (0, 3, 3) and empty.window_mask.dtype == torch.bool


def test_the_triton_launch_writes_only_what_is_asked_for(monkeypatch):
    triton_or_skip()
    from lgs_gpu.smoothing.backends.triton_path import kernels

    launched = []

    class Recorder:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            def launch(*args, **constexprs):
                launched.append({k: v for k, v in constexprs.items() if k.startswith("WRITE_")})
                return self.kernel[grid](*args, **constexprs)

            return launch

    monkeypatch.setattr(kernels, "_suppress_kernel", Recorder(kernels._suppress_kernel))
    x = torch.rand(1, 3, 20, 20)
    lgs_stages(x, backend="triton", stages=("window_means",))
    assert launched == []  # the means come from the window sums: no full-size pass at all
    lgs_stages(x, backend="triton", stages=("window_mask", "normalised_gradient"))
    assert launched[-1] == {"WRITE_OUTPUT": False, "WRITE_MAP": False, "WRITE_NORMALISED": True, "WRITE_MASK": True}
    lgs_stages(x, backend="triton", stages=("output",))
    assert launched[-1] == {"WRITE_OUTPUT": True, "WRITE_MAP": False, "WRITE_NORMALISED": False, "WRITE_MASK": False}


def test_gradient_flows_through_the_stages_on_auto():
    x = textured_images((1, 3, 24, 24), torch.float64).requires_grad_()
    result = lgs_stages(x)  # auto picks the differentiable torch path when a gradient is needed
    (result.output.sum() + result.normalised_gradient.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not result.window_mask.requires_grad and not result.window_means.requires_grad


def test_module_stages_use_its_settings():
    module = LocalGradientsSmoothing(1.5, threshold=0.2, window_size=9, overlap=3, backend="torch")
    x = textured_images((2, 3, 32, 32), torch.float32)
    result = module.stages(x)
    expected = lgs_stages(x, 1.5, 0.2, 9, 3, backend="reference")
    assert_lgs_close(result.output, expected.output)
    assert torch.equal(result.window_mask, expected.window_mask)


@pytest.mark.parametrize("stages, error, match", [
    (("output", "gradient"), ValueError, "stages must name at least one of"),
    ((), ValueError, "stages must name at least one of"),
    (3, TypeError, "stages must be a sequence"),
])  # fmt: skip
def test_bad_stage_names_say_what_is_accepted(stages, error, match):
    with pytest.raises(error, match=match):
        lgs_stages(torch.rand(1, 3, 8, 8), stages=stages)
