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

from ..core.transform import ImageDefense
from ..smoothing import LocalGradientsSmoothing
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
        with torch.no_grad():
            return self.lgs.stages(x, stages="window_mask").window_mask

    def _masked(self, batch: torch.Tensor, maps: list | None = None) -> torch.Tensor:
        # One LGS pass gives the output, its window mask (and ĝ if asked), on LGS's own backend.
        wanted = ("output", "window_mask") + (("suppression_map",) if maps is not None else ())
        result = self.lgs.stages(batch, stages=wanted)
        if maps is not None:
            maps.append(result.suppression_map)
        return torch.where(result.window_mask, self.smoother._defend(result.output), result.output)

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        # Runs on floats and rounds once at the end, so uint8 and float inputs agree.
        return apply_defense(x, self._masked, self.differentiable)

    def defend_with_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The defended images and LGS's ``ĝ`` (as :func:`lgs_gpu.lgs_map`) from one LGS pass."""
        maps: list[torch.Tensor] = []
        defended = apply_defense(x, lambda batch: self._masked(batch, maps), self.differentiable)
        if not maps:  # an empty batch: nothing was computed
            return defended, self.lgs.stages(x, stages="suppression_map").suppression_map
        return defended, maps[0][0] if x.dim() == 3 else maps[0]
