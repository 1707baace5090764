"""What ``lgs-gpu defend`` reads: each file decoded (in DataLoader workers, or as JPEG bytes for the
device's decoder), grouped into batches of one size under a memory budget, and put on the device."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from itertools import chain
from typing import TypeVar

import torch
from torch.utils.data import DataLoader, Dataset

from ..core.imageio import (
    JPEG_SUFFIXES,
    UnreadableImage,
    decode_image_file,
    decode_jpegs,
    plain_reason,
    read_image,
    read_jpeg_bytes,
)
from .defend_outputs import Decoded, Job, read_source_stat

T = TypeVar("T")


def decode_job(job: Job, jpeg_bytes: bool) -> Decoded:
    """Read one input: decoded on the CPU, or (``jpeg_bytes``, for a JPEG) its bytes for the device decoder."""
    try:
        stat = read_source_stat(job.source)
    except OSError as error:
        return Decoded(job.index, error=plain_reason(error))
    if jpeg_bytes and job.source.suffix.lower() in JPEG_SUFFIXES:
        try:
            encoded, size = read_jpeg_bytes(job.source)
            return Decoded(job.index, size, encoded=encoded, source_stat=stat)
        except UnreadableImage as error:
            return Decoded(job.index, error=error.reason)
        except ValueError:  # not a JPEG inside, or turned by its EXIF orientation: decoded below
            pass
    try:
        image, notes = decode_image_file(job.source)
    except UnreadableImage as error:
        return Decoded(job.index, error=error.reason)
    return Decoded(job.index, (image.shape[-2], image.shape[-1]), image=image, source_stat=stat, notes=notes)


class _DecodeSet(Dataset):
    """The jobs as a map-style dataset whose items are :class:`Decoded` (for DataLoader workers)."""

    def __init__(self, jobs: list[Job], jpeg_bytes: bool) -> None:
        self.jobs, self.jpeg_bytes = jobs, jpeg_bytes

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, position: int) -> Decoded:
        return decode_job(self.jobs[position], self.jpeg_bytes)


def decoded_inputs(jobs: list[Job], workers: int, chunk: int, jpeg_bytes: bool) -> Iterator[Decoded]:
    """The jobs' :class:`Decoded`, in job order, read by ``workers`` processes (0: this one) ``chunk`` at a time."""
    loader = DataLoader(
        _DecodeSet(jobs, jpeg_bytes),
        batch_size=chunk,
        shuffle=False,
        num_workers=workers,
        collate_fn=list,  # keep the items: images of different sizes do not stack
        prefetch_factor=4 if workers else None,
    )
    return chain.from_iterable(loader)


def group_batches(
    items: Iterable[T],
    key: Callable[[T], Hashable],
    batch_size: int,
    max_waiting: int,
    weight: Callable[[Hashable], int] = lambda group_key: 1,
    max_weight: int | None = None,
    max_waiting_weight: int | None = None,
) -> Iterator[list[T]]:
    """Group items of equal ``key`` into batches of up to ``batch_size``, in arrival order.

    Each item of a group weighs ``weight(key)`` (1 by default; its pixels in ``defend``). A group
    leaves when it holds ``batch_size`` items, or when one more would weigh more than
    ``max_weight`` (a single item always makes a batch); when more than ``max_waiting`` items
    wait, or they weigh more than ``max_waiting_weight`` (many sizes), the oldest group leaves
    early, so memory stays bounded. The batches depend only on the items' order.

    Example:
        >>> list(group_batches(["a", "bb", "c", "dd", "e"], len, batch_size=2, max_waiting=8))
        [['a', 'c'], ['bb', 'dd'], ['e']]
        >>> list(group_batches(["a", "bb", "ccc", "dd"], len, batch_size=2, max_waiting=2))  # "a" leaves early
        [['a'], ['bb', 'dd'], ['ccc']]
        >>> list(group_batches(["a", "a", "bb", "bb"], len, batch_size=8, max_waiting=99, weight=lambda n: n, max_weight=2))
        [['a', 'a'], ['bb'], ['bb']]
    """
    waiting: dict[Hashable, list[T]] = {}
    count = load = 0
    for item in items:
        group_key = key(item)
        group = waiting.setdefault(group_key, [])
        group.append(item)
        each = weight(group_key)
        count, load = count + 1, load + each
        if len(group) == batch_size or (max_weight is not None and (len(group) + 1) * each > max_weight):
            count, load = count - len(group), load - len(group) * each
            yield waiting.pop(group_key)
        elif count > max_waiting or (max_waiting_weight is not None and load > max_waiting_weight):
            oldest = next(iter(waiting))
            count, load = count - len(waiting[oldest]), load - len(waiting[oldest]) * weight(oldest)
            yield waiting.pop(oldest)
    yield from waiting.values()


def on_device(
    items: list[Decoded], jobs: dict[int, Job], device: str
) -> tuple[list[Decoded], list[torch.Tensor], list[tuple[Decoded, str]]]:
    """Put a group's images on ``device``: ``(items, images [3, H, W] uint8, skipped (item, why))``.

    JPEG bytes are decoded there in one batched call; when it fails, one by one, and a file the
    device decoder refuses is decoded by :func:`read_image` on the CPU (which names the fault).
    """
    encoded = [item for item in items if item.encoded is not None]
    decoded: dict[int, torch.Tensor] = {}
    try:
        decoded = dict(
            zip([item.index for item in encoded], decode_jpegs([i.encoded for i in encoded], device), strict=True)
        )
    except RuntimeError:
        for item in encoded:
            try:
                decoded[item.index] = decode_jpegs([item.encoded], device)[0]
            except RuntimeError:
                try:
                    decoded[item.index] = read_image(jobs[item.index].source).to(device)
                except UnreadableImage as error:
                    item.error = error.reason
    kept, images, skipped = [], [], []
    for item in items:
        if item.error is not None:
            skipped.append((item, item.error))
            continue
        kept.append(item)
        images.append(decoded[item.index] if item.encoded is not None else item.image.to(device))
        item.image = item.encoded = None  # the device copy is all that is needed from here on
    return kept, images, skipped
