"""Figures: the stages of LGS side by side, as in the paper's Figure 2."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ._files import atomic_write_bytes


def _as_picture(image: torch.Tensor):
    """``[C, H, W]`` (uint8 or float in [0, 1]) or ``[H, W]`` to a NumPy array matplotlib shows."""
    image = image.detach().cpu()
    if image.dtype == torch.uint8:
        image = image.float() / 255
    image = image.float().clamp(0, 1)
    return image.permute(1, 2, 0).numpy() if image.dim() == 3 else image.numpy()


def figure_lgs_stages(rows: list[dict], path: str | Path, dpi: int = 110) -> Path:
    """Write a grid with one row per image: the input, ``g``, ``ĝ`` after windowing, the defended image.

    Args:
        rows: dicts with ``name`` (str), ``image`` and ``defended`` (``[C, H, W]``), ``normalised``
            and ``suppressed`` (``[H, W]`` in [0, 1]), and an optional ``note`` under the name.
        path: the PNG to write (atomically).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = ("input (with patch)", "g: normalised gradient", "ĝ: kept windows", "LGS output")
    figure, axes = plt.subplots(len(rows), 4, figsize=(12, 3.1 * len(rows)), squeeze=False)
    for axes_row, row in zip(axes, rows, strict=True):
        panels = (row["image"], row["normalised"], row["suppressed"], row["defended"])
        for column, (axis, panel) in enumerate(zip(axes_row, panels, strict=True)):
            picture = _as_picture(panel)
            axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if axes_row is axes[0]:
                axis.set_title(titles[column])
        axes_row[0].set_ylabel(row["name"] + ("\n" + row["note"] if row.get("note") else ""), fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
