"""Image files: the one reader (with Pillow's decompression-bomb guard), the writer, the suffixes.

Every part of the package that reads image files (``lgs-gpu defend``, image folders and ImageNet
in :mod:`lgs_gpu.data`) goes through :func:`read_image`, so they accept the same files and
refuse the same ones, with the same plain reasons (:class:`UnreadableImage`). On CUDA,
``lgs-gpu defend`` decodes JPEGs on the GPU: :func:`read_jpeg_bytes` reads a file and checks its
header's size against the same pixel limit before :func:`decode_jpegs` decodes a batch of them.
"""

from __future__ import annotations

import errno
import io
import re
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import torch

with warnings.catch_warnings():
    # torchvision 0.29 announces that its codecs will move to TorchCodec; they work and are what we use.
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchCodec.*")
    from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg, encode_png

from ._files import atomic_write_bytes

# Suffixes read (and, with the same suffix, written) everywhere in the package.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
JPEG_SUFFIXES = (".jpg", ".jpeg")

# File signatures, to name the format of a file that a decoder refused.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class UnreadableImage(ValueError):
    """An image file that cannot be decoded; ``reason`` says why in plain words.

    Example:
        >>> str(UnreadableImage("a.jpg", "truncated or incomplete JPEG"))
        'cannot read a.jpg: truncated or incomplete JPEG'
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def find_images(inputs: list[str | Path], output_dir: str | Path | None = None) -> list[tuple[Path, Path]]:
    """Expand files and folders into ``(image path, output path relative to the output folder)``.

    Folders are searched recursively and keep their structure under their own name; files keep
    their name. A file given twice (or found twice) counts once. When ``output_dir`` lies inside
    an input folder, nothing under it is taken, and when it is the input folder itself, nothing
    under the subfolder its outputs go to: outputs are never read back as inputs. Raises
    ``ValueError`` for a path that does not exist, a file whose suffix is not in
    :data:`IMAGE_SUFFIXES`, or inputs with no image at all.

    Example:
        >>> find_images(["photos/"], output_dir="photos/defended")  # doctest: +SKIP
        [(PosixPath('photos/a.jpg'), PosixPath('photos/a.jpg')), ...]
    """
    found: dict[Path, tuple[Path, Path]] = {}  # by resolved path: each file once
    for given in map(Path, inputs):
        if given.is_dir():
            excluded = _outputs_inside(given.resolve(), Path(output_dir).resolve()) if output_dir is not None else None
            for path in sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                resolved = path.resolve()
                if excluded is None or not resolved.is_relative_to(excluded):
                    found.setdefault(resolved, (path, Path(given.resolve().name) / path.relative_to(given)))
        elif given.is_file():
            if given.suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(f"{given} is not an image file (accepted: {', '.join(IMAGE_SUFFIXES)})")
            found.setdefault(given.resolve(), (given, Path(given.name)))
        else:
            raise ValueError(f"{given} does not exist")
    if not found:
        raise ValueError(f"no image ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(map(str, inputs))}")
    return list(found.values())


def _outputs_inside(folder: Path, output_dir: Path) -> Path | None:
    """The part of input ``folder`` that holds outputs (both resolved), or None when none of it does."""
    if output_dir == folder:
        return folder / folder.name  # a folder's outputs go to <output_dir>/<its name>/
    return output_dir if output_dir.is_relative_to(folder) else None


def pixel_limit() -> int | None:
    """The most pixels an image may have: Pillow's ``MAX_IMAGE_PIXELS`` (read now; ``None``: no limit)."""
    return PIL.Image.MAX_IMAGE_PIXELS


def check_pixel_limit(path: str | Path, height: int, width: int) -> None:
    """Refuse (:class:`UnreadableImage`) an image of ``height x width`` past :func:`pixel_limit`."""
    limit = pixel_limit()
    if limit is not None and height * width > limit:
        raise UnreadableImage(path, f"image larger than the {limit:,}-pixel limit ({width} x {height} pixels)")


def file_format(head: bytes) -> str | None:
    """The format a file's first bytes announce (``"JPEG"``, ``"PNG"``, ...), or ``None``.

    Example:
        >>> file_format(b"\\x89PNG\\r\\n\\x1a\\n..."), file_format(b"hello")
        ('PNG', None)
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for signature, name in _SIGNATURES if head.startswith(signature)), None)


# Library messages -> what is wrong with the file. Matched in order, case-insensitively; "{format}"
# is the file's format. Pillow and torchvision (CPU and nvJPEG) word the same faults differently.
_PLAIN_REASONS = (
    (("truncated", "incomplete", "premature end", "out of bound read", "broken data stream", "not enough data"),
     "truncated or incomplete {format}"),
    (("decompression bomb", "exceeds limit"), "image larger than the {limit}-pixel limit"),
    (("unsupported image file", "cannot identify image file", "not a jpeg", "unsupported marker"),
     "not an image file, or a format that cannot be read"),
    (("crc", "checksum"), "corrupt {format} (a checksum does not match)"),
    (("out of memory",), "not enough memory to decode this {format}"),
)  # fmt: skip


def plain_reason(error: BaseException, head: bytes = b"") -> str:
    """What a decoder's or the file system's ``error`` says about a file, in plain words.

    ``head`` (the file's first bytes) names its format. Library-internal details (source paths,
    line numbers, function names) are dropped.

    Example:
        >>> plain_reason(RuntimeError("decode_jpeg, /__w/vision/decode_jpeg.cpp:171, Image is incomplete or truncated"),
        ...              b"\\xff\\xd8\\xff\\xe0")
        'truncated or incomplete JPEG'
        >>> plain_reason(PermissionError(13, "Permission denied"))
        'unreadable: permission denied'
    """
    if isinstance(error, OSError) and error.errno is not None:  # the file system's, not a decoder's
        if error.errno in (errno.EACCES, errno.EPERM):
            return "unreadable: permission denied"
        if error.errno == errno.ENOENT:
            return "unreadable: the file does not exist (moved or deleted?)"
        if error.errno == errno.EISDIR:
            return "unreadable: a folder, not a file"
        return f"unreadable: {(error.strerror or str(error)).lower()}"
    kind = file_format(head) or "image"
    message = str(error).lower()
    limit = pixel_limit()
    for needles, reason in _PLAIN_REASONS:
        if any(needle in message for needle in needles):
            pixels = re.search(r"\((\d+) pixels\)", message)  # Pillow's bomb error names the image's pixels
            extra = f" ({int(pixels.group(1)):,} pixels)" if pixels and "limit" in reason else ""
            return reason.format(format=kind, limit=f"{limit:,}" if limit else "set") + extra
    return f"corrupt {kind} ({_without_internals(str(error))})" if file_format(head) else "not an image file"


def _without_internals(message: str) -> str:
    """A library message without torchvision's ``function, /source/path.cpp:123,`` prefix."""
    return re.sub(r"^[\w()]+, \S+:\d+, ", "", message.strip().splitlines()[0] if message.strip() else "unknown error")


def _read_bytes(path: str | Path) -> bytes:
    """The whole file, refusing (with a plain reason) unreadable and empty files."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UnreadableImage(path, plain_reason(error)) from error
    if not data:
        raise UnreadableImage(path, "empty file (0 bytes)")
    return data


def read_image(path: str | Path) -> torch.Tensor:
    """Decode an image file into ``[3, H, W]`` uint8 RGB (grey, palette and alpha are converted).

    Pillow's decompression-bomb guard stays on: an image past :func:`pixel_limit` is refused
    before it is decoded. Raises :class:`UnreadableImage` (a ``ValueError``) saying in plain words
    what is wrong: unreadable, empty, not an image, truncated, corrupt or oversized.

    Example:
        >>> read_image("notes.txt")  # doctest: +SKIP
        Traceback (most recent call last):
        UnreadableImage: cannot read notes.txt: not an image file, or a format that cannot be read
    """
    data = _read_bytes(path)
    try:
        with warnings.catch_warnings():
            # Past the limit Pillow warns (2x: raises) at open; the check below refuses it, naming its size.
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(io.BytesIO(data)) as image:
                check_pixel_limit(path, image.height, image.width)  # before anything is decoded
                image.load()
                rgb = np.array(image.convert("RGB"))
    except UnreadableImage:
        raise
    except PIL.Image.DecompressionBombError as error:
        raise UnreadableImage(path, plain_reason(error, data[:16])) from error
    except PIL.UnidentifiedImageError as error:
        kind = file_format(data[:16])  # a known signature that Pillow cannot parse: cut short
        raise UnreadableImage(path, f"truncated or incomplete {kind}" if kind else plain_reason(error)) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UnreadableImage(path, plain_reason(error, data[:16])) from error
    if min(rgb.shape[:2]) == 0:
        raise UnreadableImage(path, "empty image (0 pixels)")
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # minus DHT, JPG, DAC
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn, TEM: no length field


def jpeg_size(data: bytes) -> tuple[int, int]:
    """``(height, width)`` from a JPEG's start-of-frame header, without decoding it.

    Reads markers up to the first SOF segment (a few hundred bytes in most files). Raises
    ``ValueError`` when ``data`` is not a JPEG or ends before its SOF.

    Example:
        >>> jpeg_size(encode_jpeg(torch.zeros(3, 20, 30, dtype=torch.uint8)).numpy().tobytes())
        (20, 30)
    """
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG (no start-of-image marker)")
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise ValueError(f"not a JPEG marker at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header
            raise ValueError("JPEG scan before its frame header")
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in _SOF_MARKERS:
            if position + 9 > len(data):
                break
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            if height == 0 or width == 0:  # height 0: given later by a DNL marker; leave it to Pillow
                raise ValueError(f"JPEG header without a size ({width} x {height})")
            return height, width
        position += 2 + length
    raise ValueError("truncated or incomplete JPEG header")


def read_jpeg_bytes(path: str | Path) -> tuple[torch.Tensor, tuple[int, int]]:
    """A JPEG file's bytes as a 1-D uint8 tensor and its ``(height, width)``, for :func:`decode_jpegs`.

    The header's size is checked against :func:`pixel_limit` here, before anything is decoded.
    Raises :class:`UnreadableImage` for unreadable, empty or oversized files and ``ValueError``
    for a header this parser cannot read (decode such a file with :func:`read_image`).
    """
    data = _read_bytes(path)
    height, width = jpeg_size(data)
    check_pixel_limit(path, height, width)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8), (height, width)


def decode_jpegs(encoded: list[torch.Tensor], device: str | torch.device) -> list[torch.Tensor]:
    """Decode JPEG byte tensors on ``device`` (nvJPEG on CUDA) in one batched call: ``[3, H, W]`` uint8 RGB each.

    Raises ``RuntimeError`` when any of them fails; decode them one by one to find which.
    """
    if not encoded:
        return []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchCodec.*")
        return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)


def encode_image(image: torch.Tensor, suffix: str, jpeg_quality: int = 95, png_compression: int = 6) -> bytes:
    """Encode a ``[C, H, W]`` uint8 tensor in the format of ``suffix`` (any of :data:`IMAGE_SUFFIXES`).

    ``png_compression`` is zlib's level, 0 (fastest, largest) to 9; 6 is torchvision's and zlib's
    default. PNG is lossless at every level: the level trades encoding time against file size.

    Example:
        >>> encode_image(torch.zeros(3, 8, 8, dtype=torch.uint8), ".png")[:4]
        b'\\x89PNG'
    """
    suffix = suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"cannot encode as {suffix!r}: the suffix must be one of {', '.join(IMAGE_SUFFIXES)}")
    if not 0 <= png_compression <= 9:
        raise ValueError(f"png_compression must be a zlib level in 0..9. Got {png_compression}")
    image = image.cpu()
    if suffix == ".png":
        return encode_png(image, compression_level=png_compression).numpy().tobytes()
    if suffix in JPEG_SUFFIXES:
        return encode_jpeg(image, quality=jpeg_quality).numpy().tobytes()
    buffer = io.BytesIO()  # the other formats through Pillow
    array = image.permute(1, 2, 0).numpy()
    PIL.Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format=_PILLOW_FORMATS[suffix])
    return buffer.getvalue()


def write_image(image: torch.Tensor, path: str | Path, jpeg_quality: int = 95, png_compression: int = 6) -> None:
    """Encode a ``[C, H, W]`` uint8 tensor by ``path``'s suffix (any of :data:`IMAGE_SUFFIXES`), atomically."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"cannot write {path}: the suffix must be one of {', '.join(IMAGE_SUFFIXES)}")
    atomic_write_bytes(path, encode_image(image, path.suffix, jpeg_quality, png_compression))


_PILLOW_FORMATS = {".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}
