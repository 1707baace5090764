"""LGS as PyTorch operators: ``torch.ops.lgs_gpu.lgs`` and ``torch.ops.lgs_gpu.lgs_map``.

Registered with :func:`torch.library.triton_op`, so that a defended model keeps its defense
wherever PyTorch takes it:

* eagerly, each runs what ``backend="auto"`` runs (:mod:`lgs_gpu.smoothing.routing` routes every case below): the Triton kernels
  on CUDA, the compiled CPU programs (or eager torch) on CPU;
* under ``torch.compile``, on CUDA Inductor traces into the operator and sees the Triton kernels
  (through ``torch.library.wrap_triton``), which it launches from its own code. On CPU the
  operator stays opaque (``torch.ops.lgs_gpu.lgs_cpu``, which runs the compiled CPU programs):
  Inductor's own code for the traced form is slower than those programs (docs/deploy.md);
* under ``torch.export`` the operator stays one node (``torch.ops.lgs_gpu.lgs.default``, which
  serialises), and its fake implementation (shapes only, no computation) gives them for any
  batch, height and width. AOTInductor compiles it into the package, on CPU as the traced
  form (:mod:`lgs_gpu.smoothing.backends.traced_path`), so that a package runs without this package or its
  program cache;
* autograd: the gradient of the traced form, which is the torch path's (registered backward).

Arguments: ``x`` a validated ``[B, C, H, W]`` batch of an accepted dtype (:mod:`lgs_gpu.core.validate`;
:func:`lgs_gpu.lgs` validates and calls these), then λ, γ, the window size and the overlap.
``lgs`` returns ``x``'s shape, dtype and memory format; ``lgs_map`` the ``[B, H, W]`` map ``ĝ``
in the compute dtype.

Example:
    >>> import torch
    >>> out = torch.ops.lgs_gpu.lgs(torch.rand(2, 3, 32, 32), 2.3, 0.1, 15, 5)
    >>> out.shape
    torch.Size([2, 3, 32, 32])
"""

from __future__ import annotations

import torch
from torch.library import triton_op

from ..core.parameters import OPERATOR_NAMESPACE
from ..core.validate import compute_dtype, to_unit_float
from . import routing
from .backends import traced_path


@triton_op(f"{OPERATOR_NAMESPACE}::lgs", mutates_args=())
def lgs(x: torch.Tensor, smoothing_factor: float, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    parameters = (smoothing_factor, threshold, window_size, overlap)
    return routing.compute(x, *parameters, "auto", ("output",), inside_operator=True)["output"]


@triton_op(f"{OPERATOR_NAMESPACE}::lgs_map", mutates_args=())
def lgs_map(x: torch.Tensor, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    parameters = (0.0, threshold, window_size, overlap)
    return routing.compute(x, *parameters, "auto", ("suppression_map",), inside_operator=True)["suppression_map"]


@torch.library.custom_op(f"{OPERATOR_NAMESPACE}::lgs_cpu", mutates_args=(), device_types="cpu")
def lgs_cpu(
    x: torch.Tensor, smoothing_factor: float, threshold: float, window_size: int, overlap: int, stage: str
) -> torch.Tensor:
    """One stage (``"output"`` or ``"suppression_map"``) of CPU images as ``auto`` computes it (compiled)."""
    return routing.compute(x, smoothing_factor, threshold, window_size, overlap, "auto", (stage,))[stage]


def _output_like(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)  # the input's shape, dtype and memory format


def _map_like(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty((x.shape[0], x.shape[2], x.shape[3]), dtype=compute_dtype(x.dtype))


# Shapes without running LGS: tracing the computation on fake tensors would take guards on the sizes
# (a torch.export of dynamic sizes refuses such guards).
lgs.register_fake(lambda x, smoothing_factor, threshold, window_size, overlap: _output_like(x))
lgs_map.register_fake(lambda x, threshold, window_size, overlap: _map_like(x))


@lgs_cpu.register_fake
def _(x, smoothing_factor, threshold, window_size, overlap, stage):
    return _output_like(x) if stage == "output" else _map_like(x)


def _setup(ctx, inputs, output) -> None:
    x, *parameters = inputs
    ctx.save_for_backward(x)
    ctx.parameters = parameters


def _traced_gradient(x, grad, stage, smoothing_factor, threshold, window_size, overlap):
    """The gradient of ``stage`` at ``x`` along ``grad``: the traced form's (the torch path's)."""

    def traced(images):
        computed = traced_path.stages(
            to_unit_float(images), smoothing_factor, threshold, window_size, overlap, (stage,)
        )[stage]
        return computed.to(images.dtype) if stage == "output" else computed

    _, pullback = torch.func.vjp(traced, x)
    return pullback(grad)[0]


def _lgs_backward(ctx, grad):
    (x,) = ctx.saved_tensors  # uint8 images carry no gradient
    gradient = _traced_gradient(x, grad, "output", *ctx.parameters) if x.dtype.is_floating_point else None
    return (gradient, None, None, None, None)


def _map_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    gradient = _traced_gradient(x, grad, "suppression_map", 0.0, *ctx.parameters) if x.dtype.is_floating_point else None
    return (gradient, None, None, None)


lgs.register_autograd(_lgs_backward, setup_context=_setup)
lgs_map.register_autograd(_map_backward, setup_context=_setup)
