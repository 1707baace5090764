"""What every baseline defense shares: the input contract around a batch computation, checks of
the parameters with errors that say what is accepted, scipy's border extension, and the module."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import ClassVar

import torch

from ..core.tracing import exporting_to_onnx, tracing
from ..core.transform import ImageDefense, spec_number
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


def window_fits(window: int, batch: torch.Tensor) -> None:
    """Refuse (``ValueError``) a ``window`` wider than ``2 x`` the images' larger side ``+ 1`` (at least 15).

    Past that the window reaches beyond the image's reflection on both axes: it only repeats
    pixels, while its cost grows with ``window**2`` (``median:99999`` asked for 120 GB). Not
    checked while a compiler traces (the sizes are symbolic there).
    """
    if tracing(batch):
        return
    height, width = batch.shape[-2:]
    largest = max(2 * max(height, width) + 1, 15)  # windows up to 15 are cheap on any image
    if window > largest:
        raise ValueError(
            f"window {window} is too large for a {height} x {width} image: at most {largest} (2 x its larger side + 1; "
            "a wider window only repeats the image's reflection)"
        )


def pad_reflect(x: torch.Tensor, pad: int, dims: tuple[int, ...] = (-2, -1)) -> torch.Tensor:
    """``x`` extended by ``pad`` on both ends of each of ``dims`` like scipy's ``mode="reflect"``.

    scipy's "reflect" repeats the edge value (``d c b a | a b c d | d c b a``), which ``F.pad``
    lacks (its "reflect" is scipy's "mirror"); gathering by index also extends an axis shorter
    than ``pad``, as scipy does.

    Example:
        >>> pad_reflect(torch.tensor([0, 1, 2]), 2, dims=(-1,)).tolist()
        [1, 0, 0, 1, 2, 2, 1]
    """
    for dim in dims:
        length = x.shape[dim]
        # The period as a tensor, not a Python int: for a traced (symbolic) length the ONNX exporter
        # translates tensor % tensor but not tensor % symbol.
        period = torch.full((), 2 * length, dtype=torch.long, device=x.device)
        positions = torch.remainder(torch.arange(-pad, length + pad, device=x.device), period)
        x = x.index_select(dim, torch.where(positions < length, positions, 2 * length - 1 - positions))
    return x


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


class FunctionDefense(ImageDefense):
    """A defense module that calls ``_function(x, *arguments)`` with its attributes named in
    ``_arguments``; its spec gives the first as the main value and the others where they differ
    from ``__init__``'s defaults."""

    _function: ClassVar[Callable[..., torch.Tensor]]
    _arguments: ClassVar[tuple[str, ...]]

    @property
    def spec(self) -> str:
        main, *keywords = self._arguments
        defaults = inspect.signature(type(self).__init__).parameters
        extras = [
            f"{key}={value if isinstance(value, str) else spec_number(value)}"
            for key in keywords
            if (value := getattr(self, key)) != defaults[key].default
        ]
        return ",".join([f"{self.name}:{spec_number(getattr(self, main))}", *extras])

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        return self._function(x, *[getattr(self, key) for key in self._arguments])

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={getattr(self, key)!r}" for key in self._arguments)
