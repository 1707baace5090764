"""What every baseline defense shares: the input contract around a batch computation, and checks
of the parameters with errors that say what is accepted."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..core.tracing import exporting_to_onnx, tracing
from ..core.validate import as_image_batch, from_unit_float, is_integer, is_real, to_unit_float


def apply_defense(
    x: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor], differentiable: bool
) -> torch.Tensor:
    """Run ``compute`` on ``x`` as a ``[B, C, H, W]`` batch of floats in [0, 1].

    ``compute`` receives the compute dtype (float32, or float64 for float64 input) and returns
    the same shape; the result goes back to the caller's shape and dtype (uint8 rounded and
    clamped). Non-differentiable defenses run on a detached batch, so their output never claims a
    gradient it does not have.
    """
    batch, single = as_image_batch(x)
    if batch.shape[0] == 0:
        return x.clone()
    unit = to_unit_float(batch)
    if not differentiable:
        # Detached rather than under no_grad: a grad-mode region becomes a higher-order op in an
        # exported graph, which torch.export cannot serialise.
        unit = unit.detach()
    output = from_unit_float(compute(unit), batch.dtype)
    return output[0] if single else output


def refuse_onnx(defense: str, reason: str) -> None:
    """Raise while the ONNX exporter traces a defense ONNX cannot express (rather than export a
    model without it)."""
    if exporting_to_onnx():
        raise ValueError(
            f"the {defense} defense cannot be exported to ONNX: {reason}. Export the model without it and "
            f"apply lgs_gpu's {defense} to the images before the ONNX session, or deploy with torch.export / "
            "AOTInductor, which keep it (docs/deploy.md)"
        )


def integer_parameter(value: object, name: str, low: int, high: int | None = None) -> int:
    """An ``int`` in ``[low, high]`` (no upper bound when ``high`` is None)."""
    accepted = f"an int in {low}..{high}" if high is not None else f"an int >= {low}"
    if not is_integer(value):
        raise TypeError(f"{name} must be {accepted}. Got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {accepted}. Got {value}")
    return value


def odd_window(value: object, name: str = "window") -> int:
    """A window side: an odd ``int >= 1`` (so the window has a centre pixel)."""
    value = integer_parameter(value, name, 1)
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd (3, 5, 7, ...) so the window has a centre pixel. Got {value}")
    return value


ALWAYS_FITS = 15  # windows up to this side are cheap on any image (the paper's are 3 and 5)


def largest_window(height: int, width: int) -> int:
    """The widest window a filter accepts on a ``height x width`` image: ``2 x its larger side + 1``, at least 15.

    Example:
        >>> largest_window(299, 200), largest_window(2, 2)
        (599, 15)
    """
    return max(2 * max(height, width) + 1, ALWAYS_FITS)


def window_fits(window: int, batch: torch.Tensor) -> None:
    """Refuse a ``window`` wider than :func:`largest_window` of the batch's images (``ValueError``).

    Past ``2 x the larger side + 1`` the window reaches beyond the image's reflection on both
    axes: it only repeats pixels, while its cost grows with ``window**2`` (``median:99999`` asked
    for 120 GB). Not checked while a compiler traces (the sizes are symbolic there).
    """
    if tracing(batch):
        return
    height, width = batch.shape[-2:]
    largest = largest_window(height, width)
    if window > largest:
        raise ValueError(
            f"window {window} is too large for a {height} x {width} image: at most {largest} (2 x its larger side + 1; "
            "a wider window only repeats the image's reflection)"
        )


def positive_real(value: object, name: str, allow_zero: bool = False) -> float:
    """A finite real number ``> 0`` (``>= 0`` with ``allow_zero``)."""
    accepted = "a finite real number " + (">= 0" if allow_zero else "> 0")
    if not is_real(value):
        raise TypeError(f"{name} must be {accepted}. Got {value!r} ({type(value).__name__})")
    value = float(value)
    # Comparisons, not math.isfinite: they also work on the symbolic floats of a trace.
    if value != value or abs(value) == math.inf or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {accepted}. Got {value}")
    return value
