"""The units of work an evaluation runs: each attack setting with the defenses that score its images."""

from __future__ import annotations

from dataclasses import dataclass

from .. import certify
from .configs import EvaluationConfig, percent


@dataclass(frozen=True)
class Unit:
    """One attack setting and the defenses its adversarial images are scored with."""

    key: str  # folder name, e.g. "lavan-2%" or "bpda-jpeg:30"
    attack: str  # "clean", "lavan" or "patch"
    fraction: float
    view: str  # how the attacker sees `defense`: "none", "exact", "bpda", or "masks" (PatchCleanser's masks, EoT)
    defense: str | None  # the defense the attacker sees (None: the bare model)
    scored: tuple[str, ...]  # defense specs the adversarial images are scored with


def lavan_unit(
    fraction: float, scored: tuple[str, ...], view: str = "none", defense: str | None = None, key: str | None = None
) -> Unit:
    """A LaVAN unit: patches of ``fraction`` of the image area made against the bare model (``view`` "none") or
    through ``defense`` ("exact", "bpda", "masks"), scored with ``scored``; ``key`` names its records
    (default ``lavan-<percent>``, or ``<view>-<defense>``; the name is its cache folder).

    Example:
        >>> lavan_unit(0.02, ("none", "lgs")).key, lavan_unit(0.02, ("lgs",), "bpda", "lgs").key
        ('lavan-2%', 'bpda-lgs')
    """
    if key is None:
        key = f"lavan-{percent(fraction)}" if view == "none" else f"{view}-{defense}"
    return Unit(key, "lavan", fraction, view, defense, scored)


def plan(config: EvaluationConfig) -> list[Unit]:
    """The units a config asks for, in the order they run."""
    scored = tuple(config.defenses)
    units = [Unit("clean", "clean", 0.0, "none", None, scored)]
    fractions = list(config.lavan_fractions) if "lavan" in config.attacks else []
    if ({"bpda", "adaptive"} & set(config.attacks)) and config.bpda_fraction not in fractions:
        fractions.append(config.bpda_fraction)  # Table 3 and the adaptive rows compare against it
    units += [lavan_unit(f, scored) for f in fractions]
    if "patch" in config.attacks:
        units.append(
            Unit(f"patch-{percent(config.patch_fraction)}", "patch", config.patch_fraction, "none", None, scored)
        )
    bpda_specs = config.bpda_defenses if config.bpda_defenses is not None else [s for s in scored if s != "none"]
    if "bpda" in config.attacks:
        units += [lavan_unit(config.bpda_fraction, (spec,), "bpda", spec) for spec in bpda_specs]
    if "adaptive" in config.attacks:
        spec = config.adaptive_defense
        units.append(lavan_unit(config.bpda_fraction, (spec,), "exact", spec))
        if not ("bpda" in config.attacks and spec in bpda_specs):
            units.append(lavan_unit(config.bpda_fraction, (spec,), "bpda", spec))
        # PatchCleanser's adaptive attacker: LaVAN through its round-1 masked predictions (EoT over masks).
        units += [
            lavan_unit(config.bpda_fraction, (spec,), "masks", spec)
            for spec in config.defenses
            if certify.is_spec(spec)
        ]
    return units


def folder_name(key: str) -> str:
    """A unit key as a folder name: ``lavan-2%`` -> ``lavan-2pc``."""
    return key.translate(str.maketrans({":": "_", "|": "_", "+": "_plus_", "%": "pc", ",": "_", "@": "_at_"}))
