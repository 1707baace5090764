"""How much of the machine a command may use: CPUs (affinity and a container's quota), threads and batch memory.

``lgs-gpu defend`` sizes its decoding workers, write threads, torch threads and batches from these,
and ``lgs-gpu info`` reports them; the evaluation's decoding workers count CPUs the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

CGROUP = Path("/sys/fs/cgroup")  # cgroup v2: a container's CPU quota and memory limit


def usable_cpus() -> int:
    """The CPUs this process may use, at least 1: its affinity mask, and a container's CPU quota (cgroup v2 ``cpu.max``)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = (CGROUP / "cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def default_workers() -> int:
    """Decoding processes of ``lgs-gpu defend`` by default: one per CPU, at most 4."""
    return min(4, usable_cpus())


@dataclass(frozen=True)
class ThreadPlan:
    """Who runs on the CPUs during ``defend``: decoding processes, write threads, torch's threads in this process.

    The torch threads of the main process default to the CPUs the decoding workers leave, at
    least 1: OpenMP threads spin while they wait, so more threads than free cores made the
    defense several times slower (``docs/defend.md``, "Threads").

    Example:
        >>> ThreadPlan.choose(workers=2, write_threads=None, threads=None, cpus=2).describe()
        '2 decoding workers, 2 write threads, 1 torch thread in the main process (2 CPUs)'
    """

    workers: int
    write_threads: int
    threads: int
    cpus: int

    @classmethod
    def choose(
        cls, workers: int, write_threads: int | None, threads: int | None, cpus: int | None = None
    ) -> ThreadPlan:
        cpus = usable_cpus() if cpus is None else cpus
        return cls(workers, write_threads or cpus, threads or max(1, cpus - workers), cpus)

    def describe(self) -> str:
        plural = lambda count, word: f"{count} {word}" + ("s" if count != 1 else "")  # noqa: E731
        return (
            f"{plural(self.workers, 'decoding worker')}, {plural(self.write_threads, 'write thread')}, "
            f"{plural(self.threads, 'torch thread')} in the main process ({plural(self.cpus, 'CPU')})"
        )


# Peak memory per pixel of a batch: the largest the registry's defenses were measured to use (tvm,
# 258 on the CPU; lgs 43) with a margin, by `python benchmarks/defense_memory.py`. Batches are sized
# so that their images' pixels times this stay within their budget.
BYTES_PER_PIXEL = 320


def default_batch_memory(device: str) -> int:
    """Bytes a defended batch may use by default: half the free memory of a CUDA device, else a quarter of the
    available RAM (the machine's, or what a container's cgroup v2 ``memory.max`` leaves, whichever is less)."""
    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return free // 2
    available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int((CGROUP / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(1, available // 4)
