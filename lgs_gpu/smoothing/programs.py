"""What this machine offers LGS: which backends ``auto`` can pick, and the compiled CPU path's programs
(build them ahead of first use, say where they are cached)."""

from __future__ import annotations

import torch

from ..core.parameters import DEFAULT_WINDOW_SIZE
from ..core.validate import is_integer, stage_names, window_parameters
from .backends import compiled_path
from .routing import AUTO_PREFERENCE, PATHS


def backend_info(device: torch.device | str = "cpu") -> dict[str, str]:
    """For each backend, ``"available"`` or why ``auto`` does not pick it on ``device`` (and what ``auto`` picks).

    Example:
        >>> backend_info("cpu")["torch"]
        'available'
    """
    images = torch.empty(0, device=device)
    info = {name: path.auto_unavailable(images) or "available" for name, path in PATHS.items()}
    info["auto"] = next((name for name in AUTO_PREFERENCE if info[name] == "available"), "torch")
    return info


def compiled_cache_info() -> str:
    """Where the compiled CPU path keeps its programs and which are built (``"off (...)"`` when off)."""
    return compiled_path.cache_description()


def warmup(
    dtypes: tuple[torch.dtype, ...] = (torch.float32,),
    window_sizes: tuple[int, ...] = (DEFAULT_WINDOW_SIZE,),
    stages: tuple[str, ...] = ("output", "suppression_map"),
    channels: tuple[int, ...] = (3,),
) -> list[str]:
    """Build the compiled CPU path's programs now rather than on first use; returns their names.

    ``dtypes`` are compute dtypes (float32 serves uint8, float16 and bfloat16 images too;
    float64); ``channels`` the images' channel counts (compiled in). Images at least
    ``window_size`` pixels tall and wide use only these programs. Built programs are loaded from
    the cache (``LGS_GPU_CACHE_DIR``), not rebuilt.
    """
    for dtype in dtypes:
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtypes must be torch.float32 or torch.float64 (compute dtypes). Got {dtype}")
    for window_size in window_sizes:
        window_parameters(window_size, 0)
    for count in channels:
        if not is_integer(count) or count < 1:
            raise ValueError(f"channels must be ints >= 1. Got {count!r}")
    if not compiled_path.cache_enabled():
        raise ValueError("nothing to warm up: the cache is off (LGS_GPU_CACHE_DIR=off); unset it or name a folder")
    return compiled_path.warmup(tuple(dtypes), tuple(window_sizes), stage_names(stages), tuple(channels))
