"""Whether a compiler is tracing the current call, and whether that compiler is the ONNX exporter.

Defenses and the LGS front ask this to choose what a graph holds: an operator node for tracers
that keep one (``torch.compile``, ``torch.export``, AOTInductor), standard ops for ONNX, or a
refusal with the reason where a defense cannot be expressed.
"""

from __future__ import annotations

import torch

from .torch_internals import is_fake, onnx_exporter_flag


def tracing(x: torch.Tensor) -> bool:
    """Whether a compiler is tracing this call (its tensors are fake, or dynamo is compiling).

    Example:
        >>> tracing(torch.zeros(1))
        False
    """
    return torch.compiler.is_compiling() or is_fake(x)


def exporting_to_onnx() -> bool:
    """Whether ``torch.onnx.export`` is tracing the call, in either of its capture strategies.

    ``torch.onnx.is_in_onnx_export()`` answers for the non-strict capture, but dynamo (the strict
    capture the exporter falls back to) folds that call to ``False``; under dynamo the exporter's
    own flag is read instead, which dynamo reads as the value it has while tracing.

    Example:
        >>> exporting_to_onnx()
        False
    """
    if not torch.compiler.is_compiling():
        return torch.onnx.is_in_onnx_export()
    return onnx_exporter_flag()


def refuse_torchscript(what: str) -> None:
    """Raise under ``torch.jit.trace``, which would record one input's data-dependent choices
    (which windows pass, whether an image is flat) as constants and replay them on every input.

    Example:
        >>> refuse_torchscript("lgs")  # not tracing: nothing happens
    """
    if torch.jit.is_tracing():
        raise ValueError(
            f"{what} cannot be captured by torch.jit.trace: its result depends on the data (which windows pass, "
            "whether an image is flat), which a TorchScript trace records as constants for one input. Use "
            "torch.export, torch.compile or AOTInductor, which keep it (docs/deploy.md)"
        )
