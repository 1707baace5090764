"""What ``lgs-gpu defend`` reads: each file decoded (in DataLoader workers, or as JPEG bytes for the
device's decoder), grouped into batches of one size under a memory budget, and put on the device."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from functools import partial
from itertools import chain
from typing import TypeVar

import torch
from torch.utils.data import DataLoader

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
        return Decoded(job, error=plain_reason(error))
    if jpeg_bytes and job.source.suffix.lower() in JPEG_SUFFIXES:
        try:
            encoded, size = read_jpeg_bytes(job.source)
            return Decoded(job, size, encoded=encoded, source_stat=stat)
        except UnreadableImage as error:
            return Decoded(job, error=error.reason)
        except ValueError:  # not a JPEG inside, or turned by its EXIF orientation: decoded below
            pass
    try:
        image, notes = decode_image_file(job.source)
    except UnreadableImage as error:
        return Decoded(job, error=error.reason)
    return Decoded(job, (image.shape[-2], image.shape[-1]), image=image, source_stat=stat, notes=notes)


def _decode_chunk(jobs: list[Job], jpeg_bytes: bool) -> list[Decoded]:
    return [decode_job(job, jpeg_bytes) for job in jobs]


def decoded_inputs(jobs: list[Job], workers: int, chunk: int, jpeg_bytes: bool) -> Iterator[Decoded]:
    """The jobs' :class:`Decoded`, in job order, read by ``workers`` processes (0: this one) ``chunk`` at a time."""
    loader = DataLoader(
        jobs,
        batch_size=chunk,
        num_workers=workers,
        collate_fn=partial(_decode_chunk, jpeg_bytes=jpeg_bytes),  # in the workers; a list: sizes differ
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
        full = len(group) == batch_size or (max_weight is not None and (len(group) + 1) * each > max_weight)
        if full or count > max_waiting or (max_waiting_weight is not None and load > max_waiting_weight):
            leaving = group_key if full else next(iter(waiting))  # too many wait: the oldest group leaves early
            count, load = count - len(waiting[leaving]), load - len(waiting[leaving]) * weight(leaving)
            yield waiting.pop(leaving)
    yield from waiting.values()


def on_device(
    items: list[Decoded], device: str
) -> tuple[list[tuple[Decoded, torch.Tensor]], list[tuple[Decoded, str]]]:
    """Put a group's images on ``device``: ``(kept (item, image [3, H, W] uint8), skipped (item, why))``.

    JPEG bytes are decoded there in one batched call; when it fails, one by one, and a file the
    device decoder refuses is decoded by :func:`read_image` on the CPU (which names the fault).
    """
    encoded = [item for item in items if item.encoded is not None]
    try:
        for item, image in zip(encoded, decode_jpegs([item.encoded for item in encoded], device), strict=True):
            item.image = image
    except RuntimeError:
        for item in encoded:
            try:
                item.image = decode_jpegs([item.encoded], device)[0]
            except RuntimeError:
                try:
                    item.image = read_image(item.job.source)
                except UnreadableImage as error:
                    item.error = error.reason
    kept, skipped = [], []
    for item in items:
        if item.error is None:
            kept.append((item, item.image.to(device)))
        else:
            skipped.append((item, item.error))
        item.image = item.encoded = None  # the device copy is all that is needed from here on
    return kept, skipped
