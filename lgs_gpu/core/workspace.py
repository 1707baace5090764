"""Buffers a CPU path reuses from call to call in one thread, so that a loop does not fault memory in anew.

A fresh large tensor on CPU is fresh pages: with glibc's default malloc every buffer above 32 MiB
is a new mapping, and the kernel zero-fills each 4 KiB page on first touch, which on a virtual
machine costs more than the arithmetic done in it. The compiled path keeps its intermediates (the
gradient plane, a float copy of uint8 or half images, the output before it is converted back) here
instead: per thread, one flat buffer per role, dtype and device that grows to the largest call
and is viewed to each call's shape (images of many sizes share it), the least recently used
dropped first when a thread's buffers would exceed :data:`LIMIT_BYTES`. What a call returns is
never one of these buffers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

# The most a thread keeps between calls: 32 x 3 x 299^2 float32 images need about 80 MiB.
LIMIT_BYTES = 1 << 30


class Workspace:
    """Per-thread reusable buffers (see the module's text).

    Example:
        >>> workspace = Workspace(limit_bytes=1 << 20)
        >>> a = workspace.buffer("plane", (4, 8), torch.float32)
        >>> a.data_ptr() == workspace.buffer("plane", (2, 8), torch.float32).data_ptr()  # a smaller call: same memory
        True
        >>> workspace.held_bytes()
        128
    """

    def __init__(self, limit_bytes: int = LIMIT_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self._local = threading.local()

    def _buffers(self) -> OrderedDict:
        if not hasattr(self._local, "buffers"):
            self._local.buffers = OrderedDict()
        return self._local.buffers

    def buffer(
        self, role: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """A contiguous tensor of ``shape`` for ``role`` with undefined contents, in the memory of earlier calls'
        when it fits."""
        buffers = self._buffers()
        key = (role, dtype, torch.device(device))
        numel = 1
        for size in shape:
            numel *= size
        flat = buffers.get(key)
        if flat is None or flat.numel() < numel:
            buffers.pop(key, None)
            # Made outside inference mode: a buffer made inside it could not be written by a later call outside.
            with torch.inference_mode(False):
                flat = torch.empty(numel, dtype=dtype, device=device)
            if numel * flat.element_size() > self.limit_bytes:
                return flat.view(shape)  # too large to keep: this call's alone
            buffers[key] = flat
            while self.held_bytes() > self.limit_bytes:
                buffers.popitem(last=False)
        buffers.move_to_end(key)
        return flat[:numel].view(shape)

    def held_bytes(self) -> int:
        """Bytes this thread keeps."""
        return sum(tensor.numel() * tensor.element_size() for tensor in self._buffers().values())

    def clear(self) -> None:
        """Let this thread's buffers go."""
        self._buffers().clear()
