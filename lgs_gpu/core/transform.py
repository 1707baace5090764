"""The base of every image defense: an ``nn.Module`` on batches that is also a torchvision v2 transform.

Subclasses implement :meth:`ImageDefense._defend` on ``[B, C, H, W]`` or ``[C, H, W]`` tensors
(float in [0, 1] or uint8). A plain tensor goes straight to it; a sample (``tv_tensors.Image``,
PIL images, several inputs such as an image with its boxes and labels) takes torchvision's v2
route, which defends the images and lets boxes, masks and labels pass through untouched.
torchvision is imported only for samples: importing it costs about 1.5 s (torchvision 0.29 imports
dynamo and Inductor), which a command on a few images, or a model that never sees a sample, need
not pay.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, ClassVar

import PIL.Image
import torch

from .tracing import refuse_torchscript
from .validate import is_integer


def spec_number(value: float) -> str:
    """``value`` as a defense spec writes it: the shortest text that reads back as exactly ``value``,
    without a ``+`` (which joins LGS and a filter in a spec).

    Example:
        >>> spec_number(2.3), spec_number(1e6), spec_number(2.3000001), spec_number(15)
        ('2.3', '1e06', '2.3000001', '15')
    """
    if is_integer(value):
        return str(value)
    value = float(value) + 0.0  # -0.0 as 0: it acts as 0 everywhere, and "-0" would read back as the int 0
    text = f"{value:g}"
    if float(text) != value:
        text = repr(value)
    return text.replace("e+", "e")


def is_pure_tensor(x: Any) -> bool:
    """A tensor that is not a torchvision ``tv_tensor`` (an image, a box, a mask ...)."""
    if not isinstance(x, torch.Tensor):
        return False
    tv_tensors = sys.modules.get("torchvision.tv_tensors")  # not imported: no tensor can be a tv_tensor
    return tv_tensors is None or not isinstance(x, tv_tensors.TVTensor)


class ImageDefense(torch.nn.Module):
    """A preprocessing defense usable in ``nn.Sequential`` and in torchvision v2 pipelines.

    Class attributes every defense sets: ``name`` (its registry name) and ``differentiable``
    (whether autograd gives a useful gradient through it; the others return outputs that do not
    require grad and need BPDA to be attacked).
    """

    name: ClassVar[str] = ""
    differentiable: ClassVar[bool] = False

    def forward(self, inpt: Any, *more: Any) -> Any:
        """One plain tensor (the ``nn.Module`` use) goes straight to the defense; samples (tuples,
        dicts, tv_tensors, PIL images) take torchvision's v2 route.

        The first input is named so that ``torch.export``'s ``dynamic_shapes`` can address it as
        it does any module's: ``({0: Dim("batch"), 2: Dim("height"), 3: Dim("width")},)``.
        """
        refuse_torchscript(f"the {self.name or type(self).__name__} defense")
        # Plain tensors by isinstance, not type(): the tensors a tracer passes (fake, functional,
        # proxies) are subclasses, and a type() test would hand them back undefended.
        if not more and is_pure_tensor(inpt):
            return self._defend(inpt)
        return _sample_transform()(self)(inpt, *more)

    @property
    def spec(self) -> str:
        """The registry spec string that rebuilds this defense, e.g. ``"jpeg:30"``."""
        raise NotImplementedError

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __prepare_scriptable__(self) -> None:
        # torch.jit.script asks this first; v2 transforms refuse in the same words.
        raise RuntimeError(
            f"{type(self).__name__} cannot be JIT scripted: it routes samples through torchvision's v2 "
            "transforms, which cannot be scripted either; use torch.export or torch.compile"
        )


@functools.cache
def _sample_transform() -> type:
    """The torchvision v2 transform that applies a defense to the images of a sample (imports torchvision)."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    class SampleTransform(v2.Transform):
        _transformed_types = (tv_tensors.Image, PIL.Image.Image, is_pure_tensor)

        def __init__(self, defense: ImageDefense) -> None:
            super().__init__()
            object.__setattr__(self, "defense", defense)  # not a submodule: this wrapper lives for one call

        def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
            if isinstance(inpt, PIL.Image.Image):
                return TF.to_pil_image(self.defense._defend(TF.pil_to_tensor(inpt)), mode=inpt.mode)
            if isinstance(inpt, tv_tensors.Image):
                return tv_tensors.wrap(self.defense._defend(inpt.as_subclass(torch.Tensor)), like=inpt)
            return self.defense._defend(inpt)

    return SampleTransform
