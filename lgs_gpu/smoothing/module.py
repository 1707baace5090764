"""LGS as an ``nn.Module`` and a torchvision v2 transform: :class:`LocalGradientsSmoothing`."""

from __future__ import annotations

from typing import Any

import torch

from ..core.parameters import (
    DEFAULT_OVERLAP,
    DEFAULT_SMOOTHING_FACTOR,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW_SIZE,
    STAGES,
    model_preset,
)
from ..core.transform import ImageDefense, spec_number
from ..core.validate import check_backend, real_scalar, window_parameters
from .front import lgs
from .stages import LGSStages, lgs_stages


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
