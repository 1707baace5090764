"""The LGS front: ``lgs``, ``lgs_map``, ``lgs_stages``, ``lgs_sweep`` and the module.

``lgs`` defends ``[B, C, H, W]`` (or ``[C, H, W]``) images against localized adversarial
patches by suppressing pixels of high, concentrated gradient; the parameters and stages are
documented in :mod:`lgs_gpu.core.parameters`. Five paths implement the same contract and everything in
the package reaches them through this module; :mod:`lgs_gpu.smoothing.routing` says which runs a call
(``backend``) and why, and :mod:`lgs_gpu.smoothing.operators` registers LGS as PyTorch operators
(``torch.ops.lgs_gpu.lgs``, ``torch.ops.lgs_gpu.lgs_map``), which is what a compiler sees: a model
with LGS inside keeps it through ``torch.compile``, ``torch.export``, AOTInductor and ONNX. The
operators are registered by the first call a compiler traces, or by ``import lgs_gpu.smoothing.operators``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..core.parameters import (
    BACKENDS,
    DEFAULT_OVERLAP,
    DEFAULT_SMOOTHING_FACTOR,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW_SIZE,
    STAGES,
    model_preset,
)
from ..core.tracing import refuse_torchscript
from ..core.transform import ImageDefense, spec_number
from ..core.validate import (
    as_image_batch,
    compute_dtype,
    from_unit_float,
    is_integer,
    real_scalar,
    to_unit_float,
    window_parameters,
)
from . import routing
from .backends import compiled_path, torch_path
from .backends.triton_path import triton_usable
from .routing import backend_info, check_backend

__all__ = [
    "BACKENDS",
    "DEFAULT_OVERLAP",
    "DEFAULT_SMOOTHING_FACTOR",
    "DEFAULT_THRESHOLD",
    "DEFAULT_WINDOW_SIZE",
    "STAGES",
    "LGSStages",
    "LocalGradientsSmoothing",
    "backend_info",
    "compiled_cache_info",
    "lgs",
    "lgs_map",
    "lgs_stages",
    "lgs_sweep",
    "triton_usable",
    "warmup",
]


def compiled_cache_info() -> str:
    """Where the compiled CPU path keeps its programs and which are built (``"off (...)"`` when off)."""
    return compiled_path.cache_description()


def warmup(
    dtypes: tuple[torch.dtype, ...] = (torch.float32,),
    window_sizes: tuple[int, ...] = (DEFAULT_WINDOW_SIZE,),
    stages: tuple[str, ...] = ("output", "suppression_map"),
    channels: tuple[int, ...] = (3,),
) -> list[str]:
    """Build the compiled CPU path's programs now rather than on first use; returns their names.

    ``dtypes`` are compute dtypes (float32 serves uint8, float16 and bfloat16 images too;
    float64); ``channels`` the images' channel counts (compiled in). Images at least
    ``window_size`` pixels tall and wide use only these programs. Built programs are loaded from
    the cache (``LGS_GPU_CACHE_DIR``), not rebuilt.
    """
    for dtype in dtypes:
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtypes must be torch.float32 or torch.float64 (compute dtypes). Got {dtype}")
    for window_size in window_sizes:
        window_parameters(window_size, 0)
    for count in channels:
        if not is_integer(count) or count < 1:
            raise ValueError(f"channels must be ints >= 1. Got {count!r}")
    if not compiled_path.cache_enabled():
        raise ValueError("nothing to warm up: the cache is off (LGS_GPU_CACHE_DIR=off); unset it or name a folder")
    return compiled_path.warmup(tuple(dtypes), tuple(window_sizes), tuple(_check_stages(stages)), tuple(channels))


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


def _check_out(out: Any, x: torch.Tensor) -> None:
    """``out=`` as PyTorch's functions take it, without resizing: a tensor of ``x``'s shape, dtype and device
    that is ``x`` itself (LGS in place) or shares none of its memory."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a torch.Tensor. Got {type(out).__name__}")
    if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(
            f"out must have the images' shape, dtype and device {tuple(x.shape)}, {x.dtype}, {x.device}. "
            f"Got {tuple(out.shape)}, {out.dtype}, {out.device}"
        )
    if any(stride == 0 and size > 1 for size, stride in zip(out.shape, out.stride(), strict=True)):
        raise ValueError(
            "out has elements that share memory (an expanded tensor): give a tensor whose every element is its own"
        )
    if out.requires_grad and torch.is_grad_enabled():
        raise ValueError("out= does not take a tensor that requires grad (LGS writes into it); call lgs(x) instead")
    same = out.data_ptr() == x.data_ptr() and out.stride() == x.stride()
    if not same and out.numel() and x.numel() and _spans_overlap(out, x):
        raise ValueError(
            "out shares memory with the images without being them: give the images themselves (LGS in "
            "place) or a tensor of its own"
        )


def _spans_overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    def span(t):
        start = t.data_ptr()
        extent = sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride(), strict=True)) + 1
        return start, start + extent * t.element_size()

    (a_start, a_end), (b_start, b_end) = span(a), span(b)
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and a_start < b_end and b_start < a_end


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
        _check_out(out, x)
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


@torch.no_grad()
def lgs_sweep(
    x: torch.Tensor,
    smoothing_factors: Sequence[float],
    thresholds: Sequence[float],
    window_size: int = DEFAULT_WINDOW_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    backend: str = "auto",
) -> Iterator[tuple[float, float, torch.Tensor]]:
    """LGS at every (λ, γ) pair of a grid, from one gradient: yields ``(λ, γ, defended images)``.

    ``g`` and the window means do not depend on λ or γ, and γ only changes which windows pass:
    one :func:`lgs_stages` pass gives both, then each γ costs one mask and each (λ, γ) one
    suppression (eq. 7) instead of a whole LGS call. Results equal :func:`lgs` at each setting
    (the same backend's ``g`` and means; on the torch backend bit for bit). No autograd.

    Args:
        x: as :func:`lgs`.
        smoothing_factors, thresholds: the λ and γ values; pairs run γ-major, in the given order.
        window_size, overlap, backend: as :func:`lgs` (one window geometry per sweep).
    Yields:
        ``(λ, γ, images)``, the images with ``x``'s shape, dtype and device.

    Example:
        >>> images = torch.rand(2, 3, 64, 64)
        >>> results = list(lgs_sweep(images, [1.0, 2.3], [0.1, 0.2], backend="torch"))
        >>> [(λ, γ) for λ, γ, _ in results]
        [(1.0, 0.1), (2.3, 0.1), (1.0, 0.2), (2.3, 0.2)]
        >>> torch.equal(results[1][2], lgs(images, 2.3, 0.1, backend="torch"))
        True
    """
    batch, single, _, _, window_size, overlap = _prepare(x, 0.0, 0.0, window_size, overlap)
    lambdas = [_smoothing_factor(value, "smoothing_factors", batch) for value in smoothing_factors]
    gammas = [real_scalar(value, "thresholds", batch.device) for value in thresholds]
    if not lambdas or not gammas:
        raise ValueError("smoothing_factors and thresholds need at least one value each")
    found = lgs_stages(batch, 0.0, 0.0, window_size, overlap, backend, stages=("normalised_gradient", "window_means"))
    _, _, height, width = batch.shape
    unit = to_unit_float(batch)
    gradient = found.normalised_gradient[:, 0]  # [B, H, W]
    # Results in another dtype than the compute dtype are converted copies: one float buffer then
    # serves every setting. Otherwise each setting gets its own tensor (callers may keep them all).
    buffer = torch.empty_like(unit) if unit.dtype != batch.dtype else None
    for threshold in gammas:
        # The torch path's collation and eq. 7, on the small window table and the shared g.
        covered = torch_path.collate(found.window_means > threshold, height, width, window_size, overlap)
        suppressed = torch.where(covered, gradient, 0)
        for smoothing_factor in lambdas:
            product = torch_path.suppress(unit, suppressed, smoothing_factor, out=buffer)
            defended = from_unit_float(product, batch.dtype, scratch=buffer is not None)
            yield smoothing_factor, threshold, defended[0] if single else defended


class LocalGradientsSmoothing(ImageDefense):
    """Local Gradients Smoothing as an ``nn.Module`` and a torchvision v2 transform.

    Works on ``[B, C, H, W]`` batches (e.g. in ``nn.Sequential`` before ``Normalize``) and, as a
    v2 transform, on single images inside samples: plain tensors, ``tv_tensors.Image`` and PIL
    images are defended; boxes, masks and labels pass through untouched.

    Args: as :func:`lgs`.

    Example:
        >>> from torchvision.transforms import v2
        >>> model = torch.nn.Sequential(LocalGradientsSmoothing(), v2.Normalize([0.5] * 3, [0.5] * 3))
        >>> model(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
    """

    name = "lgs"
    differentiable = True  # through the torch path, which "auto" picks when a gradient is needed

    def __init__(
        self,
        smoothing_factor: float = DEFAULT_SMOOTHING_FACTOR,
        threshold: float = DEFAULT_THRESHOLD,
        window_size: int = DEFAULT_WINDOW_SIZE,
        overlap: int = DEFAULT_OVERLAP,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (("smoothing_factor", smoothing_factor), ("threshold", threshold)):
            if not isinstance(value, torch.Tensor):  # tensors are checked against the images' device
                real_scalar(value, name, torch.device("cpu"), finite=name == "smoothing_factor")
        window_parameters(window_size, overlap)
        check_backend(backend)
        self.smoothing_factor = smoothing_factor
        self.threshold = threshold
        self.window_size = window_size
        self.overlap = overlap
        self.backend = backend

    @classmethod
    def for_model(cls, model: str, **overrides: Any) -> LocalGradientsSmoothing:
        """LGS with the setting calibrated for ``model`` (:func:`lgs_gpu.core.parameters.model_preset`), any
        argument overridden by keyword. The same as the defense spec ``lgs@<model>``.

        Example:
            >>> LocalGradientsSmoothing.for_model("efficientnet_lite0", backend="torch").backend
            'torch'
        """
        return cls(**{**model_preset(model), **overrides})

    @property
    def spec(self) -> str:
        extras = [
            f"{key}={value}"
            for key, value, default in (
                ("threshold", spec_number(self.threshold), spec_number(DEFAULT_THRESHOLD)),
                ("window", self.window_size, DEFAULT_WINDOW_SIZE),
                ("overlap", self.overlap, DEFAULT_OVERLAP),
                ("backend", self.backend, "auto"),
            )
            if value != default
        ]
        return ",".join([f"lgs:{spec_number(float(self.smoothing_factor))}", *extras])

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        return lgs(x, self.smoothing_factor, self.threshold, self.window_size, self.overlap, self.backend)

    def defend_with_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The defended images and their ``ĝ`` (as :func:`lgs_map`) from one pass."""
        result = self.stages(x, stages=("output", "suppression_map"))
        return result.output, result.suppression_map

    def stages(self, x: torch.Tensor, stages: tuple[str, ...] | list[str] | str = STAGES) -> LGSStages:
        """:func:`lgs_stages` with this module's settings."""
        return lgs_stages(
            x, self.smoothing_factor, self.threshold, self.window_size, self.overlap, self.backend, stages=stages
        )

    def extra_repr(self) -> str:
        return (
            f"smoothing_factor={self.smoothing_factor}, threshold={self.threshold}, "
            f"window_size={self.window_size}, overlap={self.overlap}, backend={self.backend!r}"
        )
