"""PatchCleanser by spec string (``"patchcleanser:2%"``), and how an adaptive attacker sees it.

Grammar (whitespace ignored, names case-insensitive)::

    spec    := name (":" size)? ("," key "=" value)* ("@" defense)?
    name    := "patchcleanser" | "pc"
    size    := "2%" | "0.02"          # the patch's share of the image area (default 2%)
    keys    := masks (per axis, default 6) | patch (side in pixels, instead of size)

``"pc:2%@lgs:1.5"`` runs the image defense ``lgs:1.5`` on every masked image before the model:
mask -> defense -> model, the only order that keeps the certificate. A defense chained *before*
PatchCleanser (``"lgs|pc:2%"``) is refused: LGS normalises by each image's global gradient
maximum, so a patch anywhere could change pixels outside the mask that hides it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

from .double_masking import PatchCleanser

NAMES = ("patchcleanser", "pc")


def is_spec(spec: str) -> bool:
    """Whether a spec string names PatchCleanser anywhere (so it needs the model, not just images)."""
    if not isinstance(spec, str):
        return False
    parts = re.split(r"[@|+]", "".join(spec.split()).lower())
    return any(re.split("[:,]", part)[0] in NAMES for part in parts)


def parse_spec(spec: str) -> dict:
    """``{"patch_fraction" | "patch_size", "masks_per_axis", "defense"}`` from a spec string.

    Example:
        >>> parse_spec("pc:2%,masks=4@lgs:1.5")
        {'patch_fraction': 0.02, 'masks_per_axis': 4, 'defense': 'lgs:1.5'}
    """
    head, _, defense = "".join(spec.split()).partition("@")
    if any(separator in head for separator in "|+"):
        raise ValueError(
            f"PatchCleanser must see the image first (mask -> defense -> model) to keep its certificate; "
            f"write the defense after '@', e.g. 'patchcleanser:2%@lgs:2.3'. Got {spec!r}"
        )
    name, rest = re.fullmatch(r"([^:,]*):?(.*)", head).groups()  # "pc:2%,masks=4" or "pc,masks=4"
    if name.lower() not in NAMES:
        raise ValueError(f"a PatchCleanser spec starts with {' or '.join(NAMES)}. Got {spec!r}")
    options: dict = {"masks_per_axis": 6}
    accepted = "a size (2% or 0.02), masks=K, patch=PIXELS"
    for index, item in enumerate(rest.split(",")):
        if not item:
            continue
        key, equals, value = item.partition("=")
        key = key.lower()
        if equals and key not in ("masks", "patch"):
            raise ValueError(f"unknown PatchCleanser parameter {key!r} in {spec!r}; accepted: {accepted}")
        if not equals and index != 0:
            raise ValueError(f"expected key=value after the size in {spec!r}. Got {item!r}; accepted: {accepted}")
        try:
            if not equals:
                options["patch_fraction"] = float(key.rstrip("%")) / (100 if key.endswith("%") else 1)
            elif key == "masks":
                options["masks_per_axis"] = int(value)
            else:
                options["patch_size"] = int(value.lower().removesuffix("px"))
        except ValueError:
            raise ValueError(f"bad PatchCleanser parameter {item!r} in {spec!r}; accepted: {accepted}") from None
    if "patch_fraction" in options and "patch_size" in options:
        raise ValueError(f"give a patch share or patch=PIXELS, not both. Got {spec!r}")
    if "patch_size" not in options:
        options.setdefault("patch_fraction", 0.02)
        if not 0 < options["patch_fraction"] < 1:
            raise ValueError(f"the patch share must be in (0, 1), e.g. 2%. Got {spec!r}")
    if options["masks_per_axis"] < 1:
        raise ValueError(f"masks must be >= 1. Got {spec!r}")
    options["defense"] = defense or None
    return {
        key: options[key] for key in ("patch_fraction", "patch_size", "masks_per_axis", "defense") if key in options
    }


def from_spec(
    spec: str, model: nn.Module, build_defense: Callable[[str], nn.Module] | None = None, **options
) -> PatchCleanser:
    """The :class:`PatchCleanser` a spec names, around ``model`` (``options`` go to its constructor).

    ``build_defense`` turns the image-defense spec after ``@`` into a module (e.g.
    :func:`lgs_gpu.defenses.get`): this package does not depend on any particular defense.
    """
    parsed = parse_spec(spec)
    defense = parsed.pop("defense")
    if defense is not None:
        if build_defense is None:
            raise ValueError(
                f"{spec!r} names an image defense after '@': pass build_defense (e.g. lgs_gpu.defenses.get)"
            )
        parsed["defense"] = build_defense(defense)
    return PatchCleanser(model, **parsed, **options)


class RandomMask(nn.Module):
    """An adaptive attacker's view of PatchCleanser: each call covers each image with a random mask of its set.

    Put in an attack's loop with ``eot_samples`` draws per step, the attack's gradient is an
    expectation over the one-mask predictions of round 1 (plus the cleanser's image defense, if
    any, which must then be differentiable).
    """

    differentiable = True
    spec = "random-mask"

    def __init__(self, cleanser: PatchCleanser, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cleanser = cleanser
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = self.cleanser.masks_for(x.shape[-2], x.shape[-1], x.device)
        choice = torch.randint(0, masks.shape[0], (x.shape[0],), generator=self.generator).to(x.device)
        return self.cleanser._masked(x, masks[choice])
