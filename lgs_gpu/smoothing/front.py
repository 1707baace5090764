"""``lgs`` and ``lgs_map``: check the arguments, ask :mod:`.routing` for the path, run it.

``lgs`` defends ``[B, C, H, W]`` (or ``[C, H, W]``) images against localized adversarial patches by
suppressing pixels of high, concentrated gradient (parameters: :mod:`lgs_gpu.core.parameters`). While
a compiler traces the call it goes through the operators of :mod:`.operators`, registered by the first
traced call (or ``import lgs_gpu.smoothing.operators``), so that the graph keeps one LGS node.
"""

from __future__ import annotations

import torch

from ..core.parameters import DEFAULT_OVERLAP, DEFAULT_SMOOTHING_FACTOR, DEFAULT_THRESHOLD, DEFAULT_WINDOW_SIZE
from ..core.validate import check_out, lgs_arguments
from . import routing


def _one_stage(
    batch, smoothing_factor, threshold, window_size, overlap, backend: str, stage: str, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``output`` or ``suppression_map`` of a validated batch, through the operator while a compiler traces."""
    decided = routing.route(backend, batch, (stage,), operator=True)
    if decided.path != "operator":
        return routing.compute(
            batch, smoothing_factor, threshold, window_size, overlap, backend, (stage,), out, decided=decided
        )[stage]
    # Registered on the first traced call, not at import: creating a Triton operator imports Inductor (a second).
    from . import operators  # noqa: F401

    if stage == "output":
        result = torch.ops.lgs_gpu.lgs(batch, smoothing_factor, threshold, window_size, overlap)
        return result if out is None else out.copy_(result)
    return torch.ops.lgs_gpu.lgs_map(batch, threshold, window_size, overlap)


def lgs(
    x: torch.Tensor,
    smoothing_factor: float = DEFAULT_SMOOTHING_FACTOR,
    threshold: float = DEFAULT_THRESHOLD,
    window_size: int = DEFAULT_WINDOW_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    backend: str = "auto",
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Defend images with Local Gradients Smoothing: ``x * (1 - clip(λ·ĝ, 0, 1))``.

    Args:
        x: ``[B, C, H, W]`` or ``[C, H, W]`` images; float16/bfloat16/float32/float64 in [0, 1]
            or uint8 in [0, 255]; any device, strides or memory format.
        smoothing_factor: λ, how strongly high-gradient pixels are suppressed.
        threshold: γ, a window is kept when its mean normalised gradient is strictly above it.
        window_size: side of the square windows, in pixels.
        overlap: pixels shared by neighbouring windows (``0 <= overlap < window_size``).
        backend: ``"auto"``, ``"triton"``, ``"compiled"``, ``"torch"`` or ``"reference"``.
        out: where to write the result: a tensor of ``x``'s shape, dtype and device (any strides,
            each element its own), which is ``x`` itself (in place) or shares none of its memory. On
            the CPU default a call with a contiguous ``out`` allocates no full-size image tensor.
    Returns:
        The defended images: same shape, dtype and device as ``x`` (uint8 rounded and clamped);
        ``out`` when given.

    Example:
        >>> images = torch.rand(4, 3, 224, 224)
        >>> lgs(images).shape
        torch.Size([4, 3, 224, 224])
        >>> defended = torch.empty_like(images)
        >>> lgs(images, out=defended) is defended
        True
    """
    batch, single, *parameters = lgs_arguments(x, smoothing_factor, threshold, window_size, overlap)
    if out is not None:
        check_out(out, x)
        out_batch = out[None] if single else out
        _one_stage(batch, *parameters, backend, "output", out_batch)
        return out
    output = _one_stage(batch, *parameters, backend, "output")
    return output[0] if single else output


def lgs_map(
    x: torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
    window_size: int = DEFAULT_WINDOW_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    backend: str = "auto",
) -> torch.Tensor:
    """The suppression map ``ĝ``: the normalised gradient kept only inside passing windows.

    Args: as :func:`lgs` (without ``smoothing_factor``).
    Returns:
        ``[B, 1, H, W]`` (``[1, H, W]`` for a single image) in [0, 1], float32 (float64 for
        float64 input).

    Example:
        >>> lgs_map(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """
    batch, single, *parameters = lgs_arguments(x, 0.0, threshold, window_size, overlap)
    suppressed = _one_stage(batch, *parameters, backend, "suppression_map")[:, None]
    return suppressed[0] if single else suppressed
