"""Image files: the one reader (with Pillow's decompression-bomb guard), the writer, the suffixes.

Every part of the package that reads image files (``lgs-gpu defend``, image folders and ImageNet
in :mod:`lgs_gpu.data`) goes through :func:`read_image`, so they accept the same files and
refuse the same ones.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import torch

with warnings.catch_warnings():
    # torchvision 0.29 announces that its codecs will move to TorchCodec; they work and are what we use.
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchCodec.*")
    from torchvision.io import encode_jpeg, encode_png

from ._files import atomic_write_bytes

# Suffixes read (and, with the same suffix, written) everywhere in the package.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def find_images(inputs: list[str | Path]) -> list[tuple[Path, Path]]:
    """Expand files and folders into ``(image path, output path relative to the output folder)``.

    Folders are searched recursively and keep their structure under their own name; files keep
    their name. Raises ``ValueError`` for a path that does not exist, a file whose suffix is not
    in :data:`IMAGE_SUFFIXES`, inputs with no image at all, or two inputs that would write the
    same output.

    Example:
        >>> find_images(["photos/"])  # doctest: +SKIP
        [(PosixPath('photos/a.jpg'), PosixPath('photos/a.png')), ...]
    """
    found: list[tuple[Path, Path]] = []
    for given in map(Path, inputs):
        if given.is_dir():
            for path in sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                found.append((path, Path(given.resolve().name) / path.relative_to(given)))
        elif given.is_file():
            if given.suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(f"{given} is not an image file (accepted: {', '.join(IMAGE_SUFFIXES)})")
            found.append((given, Path(given.name)))
        else:
            raise ValueError(f"{given} does not exist")
    if not found:
        raise ValueError(f"no image ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(map(str, inputs))}")
    outputs: dict[Path, Path] = {}
    for path, relative in found:
        key = relative.with_suffix("")
        if key in outputs and outputs[key].resolve() != path.resolve():
            raise ValueError(f"{outputs[key]} and {path} would both be written as {key}: rename one or pass folders")
        outputs[key] = path
    return found


def read_image(path: str | Path) -> torch.Tensor:
    """Decode an image file into ``[3, H, W]`` uint8 RGB (grey, palette and alpha are converted).

    Pillow's decompression-bomb guard stays on: an image past its pixel limit is refused like a
    corrupt one. Raises ``ValueError`` saying what is wrong for unreadable, corrupt, truncated,
    empty or oversized files.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)  # past the limit: refuse, not warn
            with PIL.Image.open(path) as image:
                image.load()
                rgb = np.array(image.convert("RGB"))
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as error:
        raise ValueError(f"cannot read {path}: too many pixels for a safe decode ({error})") from error
    except PIL.UnidentifiedImageError as error:
        raise ValueError(f"cannot read {path}: not an image file, or a format Pillow does not read") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot read {path}: corrupt or truncated file ({error})") from error
    if min(rgb.shape[:2]) == 0:
        raise ValueError(f"cannot read {path}: empty image")
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def write_image(image: torch.Tensor, path: str | Path, jpeg_quality: int = 95) -> None:
    """Encode a ``[C, H, W]`` uint8 tensor by ``path``'s suffix (any of :data:`IMAGE_SUFFIXES`), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"cannot write {path}: the suffix must be one of {', '.join(IMAGE_SUFFIXES)}")
    image = image.cpu()
    if suffix == ".png":
        encoded = encode_png(image).numpy().tobytes()
    elif suffix in (".jpg", ".jpeg"):
        encoded = encode_jpeg(image, quality=jpeg_quality).numpy().tobytes()
    else:  # the other formats through Pillow
        buffer = io.BytesIO()
        array = image.permute(1, 2, 0).numpy()
        PIL.Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format=_PILLOW_FORMATS[suffix])
        encoded = buffer.getvalue()
    atomic_write_bytes(path, encoded)


_PILLOW_FORMATS = {".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}
