"""Border extension by index, for the filters checked against scipy.ndimage.

scipy's ``mode="reflect"`` repeats the edge pixel (``d c b a | a b c d | d c b a``), which
``torch.nn.functional.pad`` does not offer (its "reflect" is scipy's "mirror"). Gathering with a
precomputed index also extends images smaller than the padding, as scipy does.
"""

from __future__ import annotations

import torch


def reflect_indices(length: int, pad: int, device: torch.device) -> torch.Tensor:
    """Source index of each position of an axis of ``length`` extended by ``pad`` on both sides.

    Example:
        >>> reflect_indices(3, 2, torch.device("cpu")).tolist()
        [1, 0, 0, 1, 2, 2, 1]
    """
    # The period as a tensor, not a Python int: for a traced (symbolic) length the ONNX exporter
    # translates tensor % tensor but not tensor % symbol.
    period = torch.full((), 2 * length, dtype=torch.long, device=device)
    positions = torch.remainder(torch.arange(-pad, length + pad, device=device), period)
    return torch.where(positions < length, positions, 2 * length - 1 - positions)


def pad_reflect(x: torch.Tensor, pad: int) -> torch.Tensor:
    """``[..., H, W]`` -> ``[..., H + 2 pad, W + 2 pad]`` extended like scipy's ``mode="reflect"``."""
    if pad == 0:
        return x
    rows = reflect_indices(x.shape[-2], pad, x.device)
    cols = reflect_indices(x.shape[-1], pad, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)
