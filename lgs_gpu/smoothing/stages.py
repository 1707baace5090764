"""``lgs_stages``: LGS's intermediate results and output from one pass, on any backend."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.parameters import (
    DEFAULT_OVERLAP,
    DEFAULT_SMOOTHING_FACTOR,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW_SIZE,
    STAGES,
)
from ..core.validate import lgs_arguments, stage_names
from . import routing


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
    wanted = stage_names(stages)
    batch, single, smoothing_factor, threshold, window_size, overlap = lgs_arguments(
        x, smoothing_factor, threshold, window_size, overlap
    )
    computed = routing.compute(batch, smoothing_factor, threshold, window_size, overlap, backend, wanted)
    for name in ("normalised_gradient", "window_mask", "suppression_map"):
        if name in computed:
            computed[name] = computed[name][:, None]
    if single:
        computed = {name: value[0] for name, value in computed.items()}
    return LGSStages(**computed)
