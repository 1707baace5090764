"""Real photographs that ship inside installed packages, usable with no network.

scikit-image and scikit-learn bundle a few classic test photographs; they are the package's
embedded default for demos, tests and small evaluations.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF

# scikit-image's colour photographs, by their loader names in skimage.data
SKIMAGE_PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket")
# scikit-learn's two sample photographs (sklearn.datasets.load_sample_images), by file stem
SKLEARN_PHOTOGRAPHS = ("china", "flower")
ALL_PHOTOGRAPHS = SKIMAGE_PHOTOGRAPHS + SKLEARN_PHOTOGRAPHS


def _load(name: str):
    """One bundled photograph as an ``[H, W, 3]`` uint8 numpy array."""
    if name in SKIMAGE_PHOTOGRAPHS:
        import skimage.data

        return getattr(skimage.data, name)()
    try:
        from sklearn.datasets import load_sample_images
    except ImportError as error:
        raise ValueError(f"photograph {name!r} ships with scikit-learn, which is not installed") from error
    samples = load_sample_images()
    stems = [path.replace("\\", "/").rsplit("/", 1)[-1].split(".")[0] for path in samples.filenames]
    return samples.images[stems.index(name)]


def bundled_photographs(size: int | None = None, names: tuple[str, ...] = SKIMAGE_PHOTOGRAPHS) -> dict[str, torch.Tensor]:
    """The bundled colour photographs as ``[3, H, W]`` uint8 tensors.

    Args:
        size: if given, each photograph is resized (shorter side) and centre-cropped to
            ``size x size`` with antialiasing; otherwise returned at full resolution.
        names: which photographs (see :data:`ALL_PHOTOGRAPHS`; scikit-learn's need it installed).

    Example:
        >>> bundled_photographs(224)["astronaut"].shape
        torch.Size([3, 224, 224])
    """
    photographs = {}
    for name in names:
        if name not in ALL_PHOTOGRAPHS:
            raise ValueError(f"unknown photograph {name!r}; accepted: {', '.join(ALL_PHOTOGRAPHS)}")
        image = torch.from_numpy(_load(name).copy()).permute(2, 0, 1).contiguous()
        if size is not None:
            image = TF.center_crop(TF.resize(image, size, antialias=True), [size, size])
        photographs[name] = image
    return photographs
