"""Reading and writing image files for the command line: PNG and JPEG, decoded by torchvision."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

with warnings.catch_warnings():
    # torchvision 0.29 announces that its codecs will move to TorchCodec; they work and are what we use.
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchCodec.*")
    from torchvision.io import ImageReadMode, decode_image, encode_jpeg, encode_png

from ._files import atomic_write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def find_images(inputs: list[str | Path]) -> list[tuple[Path, Path]]:
    """Expand files and folders into ``(image path, output path relative to the output folder)``.

    Folders are searched recursively and keep their structure under their own name; files keep
    their name. Raises ``ValueError`` for a path that does not exist, a file that is not a PNG
    or JPEG, inputs with no image at all, or two inputs that would write the same output.

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
                raise ValueError(f"{given} is not a PNG or JPEG file (accepted: {', '.join(IMAGE_SUFFIXES)})")
            found.append((given, Path(given.name)))
        else:
            raise ValueError(f"{given} does not exist")
    if not found:
        raise ValueError(f"no PNG or JPEG image found in {', '.join(map(str, inputs))}")
    outputs: dict[Path, Path] = {}
    for path, relative in found:
        key = relative.with_suffix("")
        if key in outputs and outputs[key].resolve() != path.resolve():
            raise ValueError(f"{outputs[key]} and {path} would both be written as {key}: rename one or pass folders")
        outputs[key] = path
    return found


def read_image(path: str | Path) -> torch.Tensor:
    """Decode a PNG or JPEG into a ``[3, H, W]`` uint8 RGB tensor (grey and alpha are converted)."""
    return decode_image(str(path), mode=ImageReadMode.RGB)


def write_image(image: torch.Tensor, path: str | Path, jpeg_quality: int = 95) -> None:
    """Encode a ``[C, H, W]`` uint8 tensor as PNG or JPEG (by ``path``'s suffix), written atomically."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        encoded = encode_png(image.cpu())
    elif path.suffix.lower() in (".jpg", ".jpeg"):
        encoded = encode_jpeg(image.cpu(), quality=jpeg_quality)
    else:
        raise ValueError(f"cannot write {path}: the suffix must be one of {', '.join(IMAGE_SUFFIXES)}")
    atomic_write_bytes(path, encoded.numpy().tobytes())
