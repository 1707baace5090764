"""The LGS front: ``lgs``, ``lgs_map`` and ``lgs_stages``, from a call to its path.

``lgs`` defends ``[B, C, H, W]`` (or ``[C, H, W]``) images against localized adversarial
patches by suppressing pixels of high, concentrated gradient; the parameters and stages are
documented in :mod:`lgs_gpu.core.parameters`. Five paths implement the same contract and everything in
the package reaches them through :mod:`lgs_gpu.smoothing`; :mod:`.routing` says which runs a call
(``backend``) and why, and :mod:`.operators` registers LGS as PyTorch operators
(``torch.ops.lgs_gpu.lgs``, ``torch.ops.lgs_gpu.lgs_map``), which is what a compiler sees: a model
with LGS inside keeps it through ``torch.compile``, ``torch.export``, AOTInductor and ONNX. The
operators are registered by the first call a compiler traces, or by ``import lgs_gpu.smoothing.operators``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..core.parameters import (
    DEFAULT_OVERLAP,
    DEFAULT_SMOOTHING_FACTOR,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW_SIZE,
    STAGES,
)
from ..core.tracing import refuse_torchscript
from ..core.validate import as_image_batch, check_out, compute_dtype, real_scalar, window_parameters
from . import routing


def _smoothing_factor(value: Any, name: str, batch: torch.Tensor) -> float:
    """λ as a float that stays finite in the dtype the paths compute ``batch`` in: a finite float64
    can overflow float32 to inf (and inf * 0 is NaN)."""
    value = real_scalar(value, name, batch.device, finite=True)
    dtype = compute_dtype(batch.dtype)
    largest = torch.finfo(dtype).max
    if abs(value) > largest:
        raise ValueError(
            f"{name} must be finite in {str(dtype).removeprefix('torch.')}, the dtype LGS computes "
            f"{str(batch.dtype).removeprefix('torch.')} images in (|value| <= {largest:.4g}). Got {value:g}"
        )
    return value


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


def _prepare(x: Any, smoothing_factor: Any, threshold: Any, window_size: Any, overlap: Any):
    refuse_torchscript("LGS")
    batch, single = as_image_batch(x)
    # λ = ±inf would turn 0 * λ into NaN; γ = ±inf is meaningful (no window / every window passes).
    smoothing_factor = _smoothing_factor(smoothing_factor, "smoothing_factor", batch)
    threshold = real_scalar(threshold, "threshold", batch.device)
    window_size, overlap = window_parameters(window_size, overlap)
    return batch, single, smoothing_factor, threshold, window_size, overlap


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
    batch, single, *parameters = _prepare(x, smoothing_factor, threshold, window_size, overlap)
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
    batch, single, *parameters = _prepare(x, 0.0, threshold, window_size, overlap)
    suppressed = _one_stage(batch, *parameters, backend, "suppression_map")[:, None]
    return suppressed[0] if single else suppressed


@dataclass(frozen=True)
class LGSStages:
    """What one LGS pass computed (see :mod:`lgs_gpu.core.parameters`); a field not asked for is ``None``.

    Shapes for a ``[B, C, H, W]`` batch (a single ``[C, H, W]`` image drops the leading ``B``):

    Attributes:
        output: ``[B, C, H, W]``, exactly :func:`lgs`'s result, in the input's dtype.
        normalised_gradient: ``g``, ``[B, 1, H, W]`` in [0, 1] (float32; float64 for float64 input).
        window_mask: ``[B, 1, H, W]`` bool, True for pixels inside at least one passing window.
        suppression_map: ``ĝ``, ``[B, 1, H, W]``, exactly :func:`lgs_map`'s result.
        window_means: ``[B, n_rows, n_cols]``, the mean of ``g`` over each window (row-major
            window order of :func:`lgs_gpu.core.windows.axis_windows`); a window passes when its mean
            is strictly above γ, so a sweep over γ needs only these.
    """

    output: torch.Tensor | None = None
    normalised_gradient: torch.Tensor | None = None
    window_mask: torch.Tensor | None = None
    suppression_map: torch.Tensor | None = None
    window_means: torch.Tensor | None = None


def _check_stages(stages: Any) -> tuple[str, ...]:
    if isinstance(stages, str):
        stages = (stages,)
    try:
        wanted = tuple(dict.fromkeys(stages))
    except TypeError:
        raise TypeError(f"stages must be a sequence of stage names ({', '.join(STAGES)}). Got {stages!r}") from None
    unknown = [name for name in wanted if name not in STAGES]
    if unknown or not wanted:
        raise ValueError(f"stages must name at least one of {', '.join(STAGES)}. Got {list(stages)!r}")
    return wanted


def lgs_stages(
    x: torch.Tensor,
    smoothing_factor: float = DEFAULT_SMOOTHING_FACTOR,
    threshold: float = DEFAULT_THRESHOLD,
    window_size: int = DEFAULT_WINDOW_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    backend: str = "auto",
    *,
    stages: tuple[str, ...] | list[str] | str = STAGES,
) -> LGSStages:
    """LGS's intermediate results and output from one pass, on any backend.

    The gradient is computed once for every stage asked for; the Triton launch writes only
    those. Use it for figures, for LGS-masked filters, or to sweep γ over ``window_means``.

    Args:
        x, smoothing_factor, threshold, window_size, overlap, backend: as :func:`lgs`.
        stages: which fields of :class:`LGSStages` to compute (any of :data:`STAGES`); all by
            default.
    Returns:
        An :class:`LGSStages`; the fields not asked for are ``None``.

    Example:
        >>> result = lgs_stages(torch.rand(2, 3, 64, 64))
        >>> result.window_mask.shape, result.window_mask.dtype, result.window_means.shape
        (torch.Size([2, 1, 64, 64]), torch.bool, torch.Size([2, 6, 6]))
        >>> torch.equal(result.suppression_map, torch.where(result.window_mask, result.normalised_gradient, 0))
        True
    """
    wanted = _check_stages(stages)
    batch, single, smoothing_factor, threshold, window_size, overlap = _prepare(
        x, smoothing_factor, threshold, window_size, overlap
    )
    computed = routing.compute(batch, smoothing_factor, threshold, window_size, overlap, backend, wanted)
    for name in ("normalised_gradient", "window_mask", "suppression_map"):
        if name in computed:
            computed[name] = computed[name][:, None]
    if single:
        computed = {name: value[0] for name, value in computed.items()}
    return LGSStages(**computed)
