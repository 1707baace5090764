"""Autograd flows through the torch and reference paths, and they agree."""

import importlib

import pytest
import torch

from lgs_gpu import lgs, lgs_map


def small_case(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.full((2, 2, 9, 11), 0.4, dtype=torch.float64)
    x[:, :, 2:6, 3:8] = torch.rand(2, 2, 4, 5, generator=generator, dtype=torch.float64)
    return x


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_gradcheck(backend):
    # Windows of 5 with overlap 2 over 9x11 give several windows, some passing, some not; the
    # pass decision is piecewise constant, so gradcheck's small perturbations do not cross it.
    x = small_case().requires_grad_()
    assert 0 < (lgs_map(x.detach(), window_size=5, overlap=2, backend=backend) > 0).float().mean() < 1
    assert torch.autograd.gradcheck(
        lambda images: lgs(images, smoothing_factor=0.7, window_size=5, overlap=2, backend=backend), (x,)
    )


def test_torch_gradients_match_reference():
    x = small_case(1)
    upstream = torch.rand(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grads = {}
    for backend in ("torch", "reference"):
        leaf = x.clone().requires_grad_()
        (lgs(leaf, smoothing_factor=0.7, window_size=5, overlap=2, backend=backend) * upstream).sum().backward()
        grads[backend] = leaf.grad
    assert grads["torch"].abs().sum() > 0
    torch.testing.assert_close(grads["torch"], grads["reference"])


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_gradient_is_finite_on_flat_regions(backend):
    x = torch.zeros(1, 3, 20, 20)
    x[:, :, 5:9, 5:9] = 1.0  # large flat areas: m = 0 there, where sqrt has no finite derivative
    x.requires_grad_()
    lgs(x, backend=backend).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_auto_picks_a_differentiable_path_when_grad_is_required(monkeypatch):
    routing = importlib.import_module("lgs_gpu.smoothing.routing")
    as_on_a_gpu = routing.Path("triton", ("cpu",), False, 1, lambda images: None)
    monkeypatch.setitem(routing.PATHS, "triton", as_on_a_gpu)  # auto would pick Triton for these images...
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    assert routing.route("auto", x.detach(), ("output",)).path == "triton"
    assert routing.route("auto", x, ("output",)).path == "torch"  # ...but it has no backward pass
    out = lgs(x)
    assert out.requires_grad
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
