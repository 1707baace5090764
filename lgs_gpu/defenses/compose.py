"""Combinations of defenses: a chain, and a smoothing filter applied only where LGS looks.

The paper's conclusion proposes pairing LGS with other defenses. :class:`LGSMaskedFilter` does
it the way LGS itself decides where to act: it runs LGS, then replaces the pixels inside the
windows that LGS keeps (mean normalised gradient > γ, the union of passing windows) by the
filter applied to the LGS output. Outside those windows LGS leaves pixels unchanged, and so does
the combination, so clean regions never see the filter.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .. import lgs_torch
from .._transform import ImageDefense
from .._validate import as_image_batch, real_scalar, to_unit_float
from ..lgs import LocalGradientsSmoothing
from ._common import apply_defense


class Compose(ImageDefense):
    """Apply defenses one after the other (left to right).

    Example:
        >>> from lgs_gpu.defenses import JPEG, MedianFilter
        >>> Compose([MedianFilter(3), JPEG(30)])(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    name = "compose"

    def __init__(self, defenses: Iterable[ImageDefense]) -> None:
        super().__init__()
        defenses = list(defenses)
        if not defenses:
            raise ValueError("Compose needs at least one defense. Got an empty list")
        for defense in defenses:
            if not isinstance(defense, ImageDefense):
                raise TypeError(f"Compose takes lgs_gpu defenses. Got {type(defense).__name__}")
        self.defenses = torch.nn.ModuleList(defenses)

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        return all(defense.differentiable for defense in self.defenses)

    @property
    def spec(self) -> str:
        return "|".join(defense.spec for defense in self.defenses)

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        def chain(batch: torch.Tensor) -> torch.Tensor:
            for defense in self.defenses:
                batch = defense._defend(batch)
            return batch

        # The chain runs on floats and rounds once at the end, so uint8 and float inputs agree.
        return apply_defense(x, chain, self.differentiable)


class LGSMaskedFilter(ImageDefense):
    """LGS, then ``smoother`` inside the windows LGS keeps (see the module docstring).

    Args:
        smoother: the defense applied inside the passing windows (e.g. ``MedianFilter(3)``).
        lgs: the LGS settings (``LocalGradientsSmoothing()`` by default: λ 2.3, γ 0.1, 15/5).

    Example:
        >>> from lgs_gpu.defenses import MedianFilter
        >>> LGSMaskedFilter(MedianFilter(3))(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    name = "lgs+"

    def __init__(self, smoother: ImageDefense, lgs: LocalGradientsSmoothing | None = None) -> None:
        super().__init__()
        if not isinstance(smoother, ImageDefense):
            raise TypeError(f"smoother must be an lgs_gpu defense. Got {type(smoother).__name__}")
        self.smoother = smoother
        self.lgs = lgs if lgs is not None else LocalGradientsSmoothing()

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        return self.smoother.differentiable

    @property
    def spec(self) -> str:
        return f"{self.lgs.spec}+{self.smoother.spec}"

    def passing_windows(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, H, W]`` (``[1, H, W]``) boolean: pixels inside a window that LGS keeps."""
        batch, single = as_image_batch(x)
        with torch.no_grad():
            unit = to_unit_float(batch)
            normalised = lgs_torch.normalise(lgs_torch.gradient_magnitude(unit))
            threshold = real_scalar(self.lgs.threshold, "threshold", batch.device)
            mask = lgs_torch.window_mask(normalised, threshold, self.lgs.window_size, self.lgs.overlap)
        mask = mask[:, None]
        return mask[0] if single else mask

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        def masked(batch: torch.Tensor) -> torch.Tensor:
            defended = self.lgs._defend(batch)
            return torch.where(self.passing_windows(batch), self.smoother._defend(defended), defended)

        # Runs on floats and rounds once at the end, so uint8 and float inputs agree.
        return apply_defense(x, masked, self.differentiable)

