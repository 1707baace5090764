"""Defend image files with LGS or any baseline defense: the work behind ``lgs-gpu defend``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from .._transform import ImageDefense
from ..defenses import get
from ..imageio import find_images, read_image, write_image


@dataclass
class DefendSummary:
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (input, why)


def _gives_map(defense: ImageDefense) -> bool:
    """Whether ``defense`` is LGS-based and can hand back its map ``ĝ`` (lgs, lgs+<filter>)."""
    return callable(getattr(defense, "defend_with_map", None))


def defend_files(
    inputs: list[str | Path],
    output_dir: str | Path,
    *,
    defense: str | ImageDefense = "lgs",
    device: str = "cpu",
    save_map: bool = False,
    output_format: str = "png",
    progress: bool = True,
) -> DefendSummary:
    """Defend every PNG / JPEG under ``inputs`` and write the results under ``output_dir``.

    ``defense`` is a defense module or a spec string of :func:`lgs_gpu.defenses.get`
    (``"lgs"``, ``"jpeg:30"``, ``"lgs+median:3"`` ...). Outputs keep the inputs' names (folders
    keep their structure) with the suffix of ``output_format`` (``"png"``, lossless, by default;
    ``"same"`` keeps the input's). With ``save_map`` the LGS map ``ĝ`` is written beside each
    output as ``<name>_map.png`` (LGS-based defenses only). No input is ever overwritten (checked
    before any work), every write is atomic, and an unreadable image is skipped and reported,
    not fatal.
    """
    if output_format not in ("png", "jpg", "same"):
        raise ValueError(f"output_format must be 'png', 'jpg' or 'same'. Got {output_format!r}")
    if isinstance(defense, str):
        defense = get(defense)
    if not isinstance(defense, ImageDefense):
        raise TypeError(f"defense must be a spec string or an lgs_gpu defense. Got {type(defense).__name__}")
    if save_map and not _gives_map(defense):
        raise ValueError(f"save_map needs an LGS-based defense (lgs, lgs+<filter>). Got {defense.spec!r}")
    output_dir = Path(output_dir)
    jobs = []
    inputs_resolved = set()
    for path, relative in find_images(inputs):
        suffix = path.suffix if output_format == "same" else f".{output_format}"
        target = output_dir / relative.with_suffix(suffix)
        jobs.append((path, target, target.with_name(f"{target.stem}_map.png")))
        inputs_resolved.add(path.resolve())
    for _, target, map_target in jobs:
        for candidate in (target, map_target) if save_map else (target,):
            if candidate.resolve() in inputs_resolved:
                raise ValueError(f"refusing to overwrite the input {candidate}: choose another output folder")

    summary = DefendSummary()
    for path, target, map_target in tqdm(jobs, desc="lgs-gpu defend", unit="image", disable=not progress):
        try:
            image = read_image(path)
        except (RuntimeError, OSError, ValueError) as error:
            summary.skipped.append((path, str(error).removeprefix(f"cannot read {path}: ")))
            continue
        image = image.to(device)
        with torch.no_grad():
            try:
                if save_map:  # the image and its map from one LGS pass
                    defended, suppressed = defense.defend_with_map(image)
                else:
                    defended = defense(image)
            except ValueError as error:  # e.g. JPEG of a 4-channel image: this file only
                summary.skipped.append((path, f"cannot defend: {error}"))
                continue
            write_image(defended, target)
            if save_map:
                write_image((suppressed * 255).round().to(torch.uint8), map_target)
        summary.written.append(target)
    return summary
