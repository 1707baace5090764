"""Peak memory a call allocates beyond what already exists, for torch (any device) and NumPy code."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def peak_torch_bytes(function: Callable[[], object], device: torch.device) -> int:
    """Highest total of the tensors ``function`` allocates and still holds at any moment (output included).

    CUDA: the caching allocator's peak statistic. CPU: the allocator's events as recorded by
    ``torch.profiler`` with ``profile_memory``, summed in time order (allocations are positive,
    frees negative), so temporaries freed early do not add up.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        function()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recorded:
        function()
    events = [event for event in recorded.profiler.kineto_results.events() if event.name() == "[memory]"]
    current = peak = 0
    for event in sorted(events, key=lambda event: event.start_ns()):
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def peak_numpy_bytes(function: Callable[[], object]) -> int:
    """Peak of the Python / NumPy allocations ``function`` makes (``tracemalloc``; NumPy reports to it)."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
