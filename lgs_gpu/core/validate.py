"""The input contract shared by every operation of the package.

Images arrive as ``[B, C, H, W]`` batches or single ``[C, H, W]`` images, floating point in
``[0, 1]`` or ``uint8`` in ``[0, 255]``. Every path computes in float32 (float64 stays float64)
and hands the result back in the caller's dtype; ``uint8`` results are rounded and clamped.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import torch

from .parameters import BACKENDS, STAGES
from .tracing import refuse_torchscript

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
ACCEPTED_DTYPES = FLOAT_DTYPES + (torch.uint8,)
_ACCEPTED_NAMES = ", ".join(str(dtype).removeprefix("torch.") for dtype in ACCEPTED_DTYPES)
UINT8_MAX = 255.0


def as_image_batch(x: object, name: str = "x") -> tuple[torch.Tensor, bool]:
    """Check ``x`` against the image contract and view it as a ``[B, C, H, W]`` batch.

    Returns the batch and whether ``x`` was a single ``[C, H, W]`` image (so the caller can
    drop the batch dimension again). Raises ``TypeError`` for non-tensors and unsupported
    dtypes, ``ValueError`` for a wrong rank or an empty image inside a non-empty batch.

    Example:
        >>> batch, single = as_image_batch(torch.rand(3, 8, 8))
        >>> batch.shape, single
        (torch.Size([1, 3, 8, 8]), True)
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [B, C, H, W] or [C, H, W]. Got {type(x).__name__}")
    if x.dtype not in ACCEPTED_DTYPES:
        raise TypeError(f"{name} must have dtype {_ACCEPTED_NAMES}. Got {x.dtype}")
    if x.dim() not in (3, 4):
        raise ValueError(
            f"{name} must have shape [B, C, H, W] or [C, H, W]. Got {x.dim()} dimensions: {tuple(x.shape)}"
        )
    single = x.dim() == 3
    batch = x.unsqueeze(0) if single else x
    # Each size against 0, not min() of them: min compares sizes with each other, which a tracer
    # records as guards (a strict torch.export then refuses the dynamic sizes).
    if batch.shape[0] > 0 and any(size == 0 for size in batch.shape[1:]):
        raise ValueError(f"{name} must have C, H, W >= 1. Got shape {tuple(x.shape)}")
    return batch, single


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype every path computes in for inputs of ``dtype``: float64 or float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """Images as floats in [0, 1] of the compute dtype (uint8 is divided by 255)."""
    converted = x.to(compute_dtype(x.dtype))
    if x.dtype == torch.uint8:
        converted = converted / UINT8_MAX
    return converted


def from_unit_float(x: torch.Tensor, dtype: torch.dtype, scratch: bool = False) -> torch.Tensor:
    """Back to the caller's dtype; uint8 is rounded half-to-even and clamped to [0, 255].

    ``scratch``: ``x`` may be overwritten (uint8 is then scaled and rounded in place: same values,
    no temporaries).
    """
    if dtype == torch.uint8:
        scaled = x.mul_(UINT8_MAX) if scratch else x * UINT8_MAX
        return scaled.round_().clamp_(0, UINT8_MAX).to(torch.uint8)
    return x.to(dtype)


def real_scalar(value: object, name: str, device: torch.device, finite: bool = False) -> float:
    """A real parameter as a Python float; NaN (and with ``finite`` ±inf), complex and bool are rejected.

    A 0-dim tensor is accepted when it lives on the images' ``device``.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dim() > 1:
            raise ValueError(f"{name} must be a number or a one-element tensor. Got shape {tuple(value.shape)}")
        if value.device != device:
            raise ValueError(f"{name} is on {value.device} but the images are on {device}: mixed devices")
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name} must be a real number. Got a tensor of dtype {value.dtype}")
        value = value.item()
    if not is_real(value):
        raise TypeError(f"{name} must be a real number. Got {type(value).__name__}")
    value = float(value)
    # Comparisons, not math.isnan / isinf: they also work on the symbolic floats of a trace.
    if value != value:
        raise ValueError(f"{name} must not be NaN")
    if finite and abs(value) == math.inf:
        raise ValueError(f"{name} must be finite. Got {value}")
    return value


def is_integer(value: object) -> bool:
    """Whether ``value`` is an ``int`` and not a ``bool`` (which Python counts as one).

    Example:
        >>> is_integer(3), is_integer(True), is_integer(3.0)
        (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """Whether ``value`` is a real number (``numbers.Real``) and not a ``bool``.

    Example:
        >>> is_real(0.5), is_real(2), is_real(False), is_real("1")
        (True, True, False, False)
    """
    return isinstance(value, Real) and not isinstance(value, bool)


def window_parameters(window_size: object, overlap: object) -> tuple[int, int]:
    """Check the window geometry: integers with ``window_size >= 1`` and ``0 <= overlap < window_size``."""
    for name, value in (("window_size", window_size), ("overlap", overlap)):
        if not is_integer(value):
            raise TypeError(f"{name} must be an int. Got {type(value).__name__}")
    if window_size < 1:
        raise ValueError(f"window_size must be >= 1. Got {window_size}")
    if not 0 <= overlap < window_size:
        raise ValueError(f"overlap must satisfy 0 <= overlap < window_size ({window_size}). Got {overlap}")
    return window_size, overlap


def check_smoothing_factor(value: object, name: str, batch: torch.Tensor) -> float:
    """λ as a float that stays finite in the dtype LGS computes ``batch`` in: a finite float64 can
    overflow float32 to inf (and inf * 0 is NaN)."""
    value = real_scalar(value, name, batch.device, finite=True)
    dtype = compute_dtype(batch.dtype)
    largest = torch.finfo(dtype).max
    if abs(value) > largest:
        raise ValueError(
            f"{name} must be finite in {str(dtype).removeprefix('torch.')}, the dtype LGS computes "
            f"{str(batch.dtype).removeprefix('torch.')} images in (|value| <= {largest:.4g}). Got {value:g}"
        )
    return value


def lgs_arguments(x: object, smoothing_factor: object, threshold: object, window_size: object, overlap: object):
    """LGS's arguments checked: ``(batch, single, λ, γ, window_size, overlap)``, ``batch`` as :func:`as_image_batch`.

    λ = ±inf is refused (0 * λ is NaN); γ = ±inf is meaningful (no window / every window passes).

    Example:
        >>> batch, single, *parameters = lgs_arguments(torch.rand(3, 8, 8), 2.3, 0.1, 15, 5)
        >>> batch.shape, single, parameters
        (torch.Size([1, 3, 8, 8]), True, [2.3, 0.1, 15, 5])
    """
    refuse_torchscript("LGS")
    batch, single = as_image_batch(x)
    smoothing_factor = check_smoothing_factor(smoothing_factor, "smoothing_factor", batch)
    threshold = real_scalar(threshold, "threshold", batch.device)
    window_size, overlap = window_parameters(window_size, overlap)
    return batch, single, smoothing_factor, threshold, window_size, overlap


def check_backend(backend: object) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}. Got {backend!r}")


def stage_names(stages: object) -> tuple[str, ...]:
    """``stages`` (a name or a sequence of names of :data:`STAGES`) as a tuple without repeats."""
    if isinstance(stages, str):
        stages = (stages,)
    try:
        wanted = tuple(dict.fromkeys(stages))
    except TypeError:
        raise TypeError(f"stages must be a sequence of stage names ({', '.join(STAGES)}). Got {stages!r}") from None
    if not wanted or any(name not in STAGES for name in wanted):
        raise ValueError(f"stages must name at least one of {', '.join(STAGES)}. Got {list(stages)!r}")
    return wanted


def check_out(out: Any, x: torch.Tensor) -> None:
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
