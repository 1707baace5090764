"""LGS as PyTorch operators: ``torch.ops.lgs_gpu.lgs`` and ``torch.ops.lgs_gpu.lgs_map``.

Registered with :func:`torch.library.triton_op`, so that a defended model keeps its defense through
``torch.compile`` (on CUDA Inductor sees the Triton kernels; on CPU ``lgs_gpu::lgs_cpu`` stays one
opaque call to the compiled programs), ``torch.export`` (one node, shapes from the fake
implementation for any size) and AOTInductor; docs/deploy.md says what each sees. Eagerly each runs
what ``backend="auto"`` runs (:mod:`.routing` routes every case); the backward is the traced form's.

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


def _map_like(x: torch.Tensor, *parameters) -> torch.Tensor:
    return x.new_empty((x.shape[0], x.shape[2], x.shape[3]), dtype=compute_dtype(x.dtype))


# Shapes without running LGS (the output keeps the input's shape, dtype and memory format): tracing the
# computation on fake tensors would take guards on the sizes, which a torch.export of dynamic sizes refuses.
lgs.register_fake(lambda x, *parameters: torch.empty_like(x))
lgs_map.register_fake(_map_like)
lgs_cpu.register_fake(lambda x, *parameters: torch.empty_like(x) if parameters[-1] == "output" else _map_like(x))


def _setup(ctx, inputs, output) -> None:
    x, *parameters = inputs
    ctx.save_for_backward(x)
    ctx.inputs = len(inputs)
    ctx.stage = "output" if len(parameters) == 4 else "suppression_map"  # lgs_map takes no λ
    ctx.parameters = parameters if len(parameters) == 4 else [0.0, *parameters]


def _backward(ctx, grad):
    """The gradient of the traced form (the torch path's); uint8 images carry none."""
    (x,) = ctx.saved_tensors
    gradient = None
    if x.dtype.is_floating_point:

        def traced(images):
            computed = traced_path.stages(to_unit_float(images), *ctx.parameters, (ctx.stage,))[ctx.stage]
            return computed.to(images.dtype) if ctx.stage == "output" else computed

        gradient = torch.func.vjp(traced, x)[1](grad)[0]
    return (gradient, *[None] * (ctx.inputs - 1))


lgs.register_autograd(_backward, setup_context=_setup)
lgs_map.register_autograd(_backward, setup_context=_setup)
