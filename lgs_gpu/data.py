"""Real photographs that ship inside installed packages, usable with no network.

scikit-image bundles a few classic test photographs; they are the package's embedded default
for demos, tests and small evaluations.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF

# scikit-image's colour photographs, by their loader names in skimage.data
SKIMAGE_PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket")


def bundled_photographs(size: int | None = None, names: tuple[str, ...] = SKIMAGE_PHOTOGRAPHS) -> dict[str, torch.Tensor]:
    """The bundled colour photographs as ``[3, H, W]`` uint8 tensors.

    Args:
        size: if given, each photograph is resized (shorter side) and centre-cropped to
            ``size x size`` with antialiasing; otherwise returned at full resolution.
        names: which photographs (see :data:`SKIMAGE_PHOTOGRAPHS`).

    Example:
        >>> bundled_photographs(224)["astronaut"].shape
        torch.Size([3, 224, 224])
    """
    import skimage.data

    photographs = {}
    for name in names:
        if name not in SKIMAGE_PHOTOGRAPHS:
            raise ValueError(f"unknown photograph {name!r}; accepted: {', '.join(SKIMAGE_PHOTOGRAPHS)}")
        image = torch.from_numpy(getattr(skimage.data, name)().copy()).permute(2, 0, 1).contiguous()
        if size is not None:
            image = TF.center_crop(TF.resize(image, size, antialias=True), [size, size])
        photographs[name] = image
    return photographs
