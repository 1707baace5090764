"""Image files: the one reader (with Pillow's decompression-bomb guard), the writer, the suffixes.

Every part of the package that reads image files (``lgs-gpu defend``, image folders and ImageNet
in :mod:`lgs_gpu.data`) goes through :func:`read_image`, so they accept the same files and
refuse the same ones, with the same plain reasons (:class:`UnreadableImage`). On CUDA,
``lgs-gpu defend`` decodes JPEGs on the GPU: :func:`read_jpeg_bytes` reads a file and checks its
header's size against the same pixel limit before :func:`decode_jpegs` decodes a batch of them.
"""

from __future__ import annotations

import contextlib
import errno
import io
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch


def _torchvision_io():
    """``torchvision.io``, imported when a JPEG is decoded on the GPU or encoded: importing torchvision takes
    about 1.5 s, which a run that never needs its codecs should not pay."""
    with warnings.catch_warnings():
        # torchvision 0.29 announces that its codecs will move to TorchCodec; they work and are what we use.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchCodec.*")
        import torchvision.io

    return torchvision.io


# Suffixes read (and, with the same suffix, written) everywhere in the package.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
JPEG_SUFFIXES = (".jpg", ".jpeg")

# File signatures, to name the format of a file that a decoder refused. TIFF: classic, BigTIFF (+)
# and the byte-swapped variants Pillow also reads.
_SIGNATURES = {
    "JPEG": (b"\xff\xd8\xff",),
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "GIF": (b"GIF8",),
    "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+", b"MM*\x00", b"II\x00*"),
}


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
            folder = given.resolve()
            excluded = Path(output_dir).resolve() if output_dir is not None else None  # outputs: never read back
            if excluded == folder:
                excluded = folder / folder.name  # a folder's outputs go to <output_dir>/<its name>/
            elif excluded is not None and not excluded.is_relative_to(folder):
                excluded = None
            for path in sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                resolved = path.resolve()
                if excluded is None or not resolved.is_relative_to(excluded):
                    found.setdefault(resolved, (path, Path(folder.name) / path.relative_to(given)))
        elif given.is_file():
            if given.suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(f"{given} is not an image file (accepted: {', '.join(IMAGE_SUFFIXES)})")
            found.setdefault(given.resolve(), (given, Path(given.name)))
        else:
            raise ValueError(f"{given} does not exist")
    if not found:
        raise ValueError(f"no image ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(map(str, inputs))}")
    return list(found.values())


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
    return next((name for name, signatures in _SIGNATURES.items() if head.startswith(signatures)), None)


# Library messages -> what is wrong with the file. Matched in order, case-insensitively; "{format}"
# is the file's format. Pillow and torchvision (CPU and nvJPEG) word the same faults differently.
_PLAIN_REASONS = (
    (
        ("truncated", "incomplete", "premature end", "out of bound read", "broken data stream", "not enough data"),
        "truncated or incomplete {format}",
    ),
    (("decompression bomb", "exceeds limit"), "image larger than the {limit}-pixel limit"),
    (
        ("unsupported image file", "cannot identify image file", "not a jpeg", "unsupported marker"),
        "not an image file, or a format that cannot be read",
    ),
    (("crc", "checksum"), "corrupt {format} (a checksum does not match)"),
    (("out of memory",), "not enough memory to decode this {format}"),
)


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
    if not file_format(head):
        return "not an image file"
    text = str(error).strip()
    # The first line, without torchvision's "function, /source/path.cpp:123, " prefix.
    detail = re.sub(r"^[\w()]+, \S+:\d+, ", "", text.splitlines()[0] if text else "unknown error")
    return f"corrupt {kind} ({detail})"


class DecodeNote(UserWarning):
    """Something a reader did to an image that its user should know (first frame only, 16 bits scaled to 8)."""


HEAD_BYTES = 32  # enough for every signature in _SIGNATURES and a PNG's bit depth (byte 24)


@contextlib.contextmanager
def _opened(path: str | Path) -> Iterator[tuple[PIL.Image.Image, bytes]]:
    """The file opened by Pillow (its header parsed, nothing decoded, checked against :func:`pixel_limit`)
    and its first :data:`HEAD_BYTES`; what goes wrong inside, there or in the caller's decoding, becomes an
    :class:`UnreadableImage` with the plain reason."""
    head = b""
    try:
        with open(path, "rb") as stream, warnings.catch_warnings():
            head = stream.read(HEAD_BYTES)
            if not head:
                raise UnreadableImage(path, "empty file (0 bytes)")
            if file_format(head) is None:  # a 2 GB text file named .png is refused from its first 32 bytes
                raise UnreadableImage(path, "not an image file, or a format that cannot be read")
            stream.seek(0)
            # Past the limit Pillow warns (2x: raises) at open; the check below refuses it, naming its size.
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(stream) as image:
                check_pixel_limit(path, image.height, image.width)  # before anything is decoded
                yield image, head
    except UnreadableImage:
        raise
    except PIL.UnidentifiedImageError as error:  # a known signature that Pillow cannot parse
        kind = file_format(head)  # TIFF: valid files too, not only cut-short ones
        reason = "a TIFF that cannot be read (float colour samples, an unsupported compression), or a truncated one"
        raise UnreadableImage(path, reason if kind == "TIFF" else f"truncated or incomplete {kind}") from error
    except (PIL.Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise UnreadableImage(path, plain_reason(error, head)) from error


def probe_image_file(path: str | Path) -> tuple[int, int]:
    """An image file's ``(height, width)`` from its header, refusing (:class:`UnreadableImage`) what
    :func:`decode_image_file` would refuse before decoding: unreadable, empty, not an image, an
    unparsable header, past :func:`pixel_limit`. A file cut short in its pixel data passes here
    and is refused when decoded.

    Example:
        >>> probe_image_file("photo.jpg")  # doctest: +SKIP
        (375, 500)
    """
    with _opened(path) as (image, _):
        return image.height, image.width


def decode_image_file(path: str | Path) -> tuple[torch.Tensor, list[str]]:
    """Decode an image file into ``[3, H, W]`` uint8 RGB, and notes on what was done to it.

    What :func:`read_image` does; the notes (also issued there as :class:`DecodeNote` warnings)
    say that only the first frame of a multi-frame file was used, or that 16-bit or float
    samples were scaled to 8 bits.

    Example:
        >>> image, notes = decode_image_file("scan.tif")  # doctest: +SKIP
        >>> notes  # doctest: +SKIP
        ['16-bit samples scaled to 8 bits (the top 8 bits of each)']
    """
    with _opened(path) as (image, head):
        frames = getattr(image, "n_frames", 1)
        image.load()
        if image.getexif().get(_ORIENTATION_TAG, 1) in range(2, 9):  # as viewers show it
            image = PIL.ImageOps.exif_transpose(image)
        rgb, notes = _to_rgb8(path, image, head)
    if min(rgb.shape[:2]) == 0:
        raise UnreadableImage(path, "empty image (0 pixels)")
    if frames > 1 and file_format(head) != "JPEG":  # a JPEG's extra "frames" are MPF gain or depth maps, not pictures
        notes.insert(0, f"{frames} frames (an animated or multi-page file): only the first is used")
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), notes


_ORIENTATION_TAG = 0x0112  # EXIF; 1 is upright, 2..8 a mirror and/or a rotation


def _to_rgb8(path: str | Path, image: PIL.Image.Image, head: bytes) -> tuple[np.ndarray, list[str]]:
    """``[H, W, 3]`` uint8 of a loaded image, scaling 16-bit and float samples (Pillow's convert clips them)."""
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit grey (and 32-bit integer) samples
        samples = np.asarray(image)
        low, high = int(samples.min()), int(samples.max())
        if low < 0 or high > 65535:
            raise UnreadableImage(path, f"32-bit integer samples in [{low}, {high}]: their range is unknown")
        grey = (samples.astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1), [_SIXTEEN_BITS]
    if image.mode == "F":  # 32-bit float grey (TIFF)
        samples = np.asarray(image)
        if not np.isfinite(samples).all():
            raise UnreadableImage(path, "float samples that are NaN or infinite")
        low, high = float(samples.min()), float(samples.max())
        if low < 0 or high > 1:
            raise UnreadableImage(path, f"float samples in [{low:g}, {high:g}], not 0..1: their scale is unknown")
        grey = np.round(samples * 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1), ["float samples (0..1) scaled to 8 bits"]
    notes = [_SIXTEEN_BITS] if _sixteen_bit_colour(image, head) else []  # Pillow keeps their top 8 bits
    return np.array(image.convert("RGB")), notes


_SIXTEEN_BITS = "16-bit samples scaled to 8 bits (the top 8 bits of each)"


def _sixteen_bit_colour(image: PIL.Image.Image, head: bytes) -> bool:
    """Whether a colour image had 16-bit samples that Pillow read as 8-bit (PNG, TIFF)."""
    if head.startswith(b"\x89PNG") and len(head) > 24:
        return head[24] == 16  # IHDR's bit depth
    bits = getattr(image, "tag_v2", {}).get(258)  # TIFF BitsPerSample
    return bits is not None and max(bits if isinstance(bits, tuple) else (bits,)) > 8


def read_image(path: str | Path) -> torch.Tensor:
    """Decode an image file into ``[3, H, W]`` uint8 RGB (grey, palette and alpha are converted).

    The file's first bytes are checked before the rest is read: a file that is no image format is
    refused without reading it whole. Pillow's decompression-bomb guard stays on: an image past
    :func:`pixel_limit` is refused before it is decoded. The image is turned upright as its EXIF
    orientation says; 16-bit samples keep their top 8 bits, float samples in 0..1 are scaled to
    0..255 (others are refused), and a multi-frame file gives its first frame: each of these is
    said in a :class:`DecodeNote` warning (:func:`decode_image_file` returns them instead).
    Raises :class:`UnreadableImage` (a ``ValueError``) saying in plain words what is wrong:
    unreadable, empty, not an image, truncated, corrupt or oversized.

    Example:
        >>> read_image("notes.txt")  # doctest: +SKIP
        Traceback (most recent call last):
        UnreadableImage: cannot read notes.txt: not an image file, or a format that cannot be read
    """
    image, notes = decode_image_file(path)
    for note in notes:
        warnings.warn(f"{path}: {note}", DecodeNote, stacklevel=2)
    return image


def read_jpeg_bytes(path: str | Path) -> tuple[torch.Tensor, tuple[int, int]]:
    """A JPEG file's bytes as a 1-D uint8 tensor and its ``(height, width)``, for :func:`decode_jpegs`.

    Pillow reads the header (nothing is decoded) and its size is checked against :func:`pixel_limit`
    before the rest is read. Raises :class:`UnreadableImage` for unreadable, empty, non-image,
    truncated or oversized files and ``ValueError`` for a file that is not a JPEG inside or a JPEG
    with an EXIF orientation (decode those with :func:`read_image`, which turns it upright).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp(), "tiny.jpg")
        >>> PIL.Image.new("RGB", (30, 20)).save(path)
        >>> read_jpeg_bytes(path)[1]
        (20, 30)
    """
    with _opened(path) as (image, _):
        size, kind = (image.height, image.width), image.format
        jpeg = kind in ("JPEG", "MPO")  # MPO: a JPEG whose header lists more frames; the first is the image
        turned = jpeg and int(image.getexif().get(_ORIENTATION_TAG, 1)) != 1
    if not jpeg:
        raise ValueError(f"not a JPEG inside ({kind}): decoded by read_image")
    if turned:  # nvJPEG ignores the orientation (torchvision applies it on the CPU only): Pillow turns it.
        raise ValueError("a JPEG with an EXIF orientation: decoded by read_image")
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UnreadableImage(path, plain_reason(error)) from error
    return torch.frombuffer(bytearray(data), dtype=torch.uint8), size


def decode_jpegs(encoded: list[torch.Tensor], device: str | torch.device) -> list[torch.Tensor]:
    """Decode JPEG byte tensors on ``device`` (nvJPEG on CUDA) in one batched call: ``[3, H, W]`` uint8 RGB each.

    On the CPU each is turned upright as its EXIF orientation says, as :func:`read_image` does;
    nvJPEG ignores the orientation, so :func:`read_jpeg_bytes` sends turned JPEGs to
    :func:`read_image` instead.

    Raises ``RuntimeError`` when any of them fails; decode them one by one to find which.
    """
    if not encoded:
        return []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchCodec.*")
        codecs = _torchvision_io()
        return codecs.decode_jpeg(encoded, mode=codecs.ImageReadMode.RGB, device=device, apply_exif_orientation=True)


def encode_image(image: torch.Tensor, suffix: str, jpeg_quality: int = 95, png_compression: int = 6) -> bytes:
    """Encode a ``[C, H, W]`` uint8 tensor in the format of ``suffix`` (any of :data:`IMAGE_SUFFIXES`).

    ``png_compression`` is zlib's level, 0 (fastest, largest) to 9; 6 is zlib's default. PNG is
    lossless at every level: the level trades encoding time against file size. PNG, like the
    formats other than JPEG, is encoded by Pillow, faster than torchvision's ``encode_png`` for files
    of the same size, and it releases the GIL (docs/defend.md, "Against plain Pillow").

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
    if suffix in JPEG_SUFFIXES:
        return _torchvision_io().encode_jpeg(image, quality=jpeg_quality).numpy().tobytes()
    buffer = io.BytesIO()  # the other formats through Pillow
    array = image.permute(1, 2, 0).numpy()
    options = {"compress_level": png_compression} if suffix == ".png" else {}
    PIL.Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(
        buffer, format=PIL.Image.registered_extensions()[suffix], **options
    )
    return buffer.getvalue()
