"""The base of every image defense: an ``nn.Module`` on batches and a torchvision v2 transform.

Subclasses implement :meth:`ImageDefense._defend` on ``[B, C, H, W]`` or ``[C, H, W]`` tensors
(float in [0, 1] or uint8); this class routes tensors, ``tv_tensors.Image`` and PIL images to it
and lets boxes, masks and labels of a sample pass through untouched.
"""

from __future__ import annotations

from typing import Any, ClassVar

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF


class ImageDefense(v2.Transform):
    """A preprocessing defense usable in ``nn.Sequential`` and in torchvision v2 pipelines.

    Class attributes every defense sets: ``name`` (its registry name) and ``differentiable``
    (whether autograd gives a useful gradient through it; the others return outputs that do not
    require grad and need BPDA to be attacked).
    """

    name: ClassVar[str] = ""
    differentiable: ClassVar[bool] = False
    _transformed_types = (tv_tensors.Image, PIL.Image.Image, lambda x: type(x) is torch.Tensor)

    @property
    def spec(self) -> str:
        """The registry spec string that rebuilds this defense, e.g. ``"jpeg:30"``."""
        raise NotImplementedError

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, PIL.Image.Image):
            return TF.to_pil_image(self._defend(TF.pil_to_tensor(inpt)), mode=inpt.mode)
        if isinstance(inpt, tv_tensors.Image):
            return tv_tensors.wrap(self._defend(inpt.as_subclass(torch.Tensor)), like=inpt)
        return self._defend(inpt)

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
