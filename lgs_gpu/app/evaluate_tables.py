"""An evaluation's tables (the paper's Tables 1-3, the adaptive rows, PatchCleanser's certificates)
from its records, and its figures (Figures 2 and 4) from its first batch."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import certify, defenses
from ..models import Classifier
from ..smoothing import LocalGradientsSmoothing
from .configs import DEFAULT_LGS_SPEC, EvaluationConfig, percent
from .evaluate_plan import Unit, folder_name


def _rates(records: list[dict], unit: str, spec: str) -> tuple[float, float | None]:
    """(accuracy, target rate or None) of ``spec`` on ``unit``'s records."""
    correct = hits = count = 0
    has_targets = False
    for record in records:
        if record["unit"] != unit:
            continue
        predictions = record["predictions"][spec]
        correct += sum(p == label for p, label in zip(predictions, record["labels"], strict=True))
        if record["targets"] is not None:
            has_targets = True
            hits += sum(p == target for p, target in zip(predictions, record["targets"], strict=True))
        count += len(predictions)
    return correct / max(count, 1), (hits / max(count, 1) if has_targets else None)


def tables(config: EvaluationConfig, units: list[Unit], records: list[dict]) -> dict:
    """Tables 1-3 and the adaptive rows from the records (accuracies and target rates in [0, 1])."""
    keys = {unit.key for unit in units}
    lavan_keys = [unit.key for unit in units if unit.attack == "lavan" and unit.view == "none"]
    patch_key = f"patch-{percent(config.patch_fraction)}"
    table1, table2, table3 = [], [], []
    for spec in config.defenses:
        row = {"defense": spec, "clean": _rates(records, "clean", spec)[0]}
        for key in lavan_keys:
            row[key], row[f"{key} target"] = _rates(records, key, spec)
        table1.append(row)
        if patch_key in keys:
            accuracy, target_rate = _rates(records, patch_key, spec)
            table2.append(
                {"defense": spec, "clean": row["clean"], patch_key: accuracy, f"{patch_key} target": target_rate}
            )
    non_adaptive = f"lavan-{percent(config.bpda_fraction)}"
    for unit in units:
        if unit.view == "bpda" and unit.key.startswith("bpda-"):
            bpda_accuracy, bpda_rate = _rates(records, unit.key, unit.defense)
            row = {"defense": unit.defense, "BPDA success": bpda_rate, "BPDA accuracy": bpda_accuracy}
            if non_adaptive in keys and unit.defense in config.defenses:
                rate = _rates(records, non_adaptive, unit.defense)[1]
                row = {"defense": unit.defense, "non-adaptive success": rate, **row}
            table3.append(row)
    adaptive = []
    if "adaptive" in config.attacks:
        spec = config.adaptive_defense
        rows = [
            ("none (non-adaptive)", non_adaptive),
            ("exact gradient through LGS", f"exact-{spec}"),
            ("BPDA" + (f" + EOT x{config.eot_samples}" if config.eot_samples > 1 else ""), f"bpda-{spec}"),
        ]
        for label, key in rows:
            if key in keys and (key != non_adaptive or spec in config.defenses):
                accuracy, rate = _rates(records, key, spec)
                adaptive.append({"defense": spec, "attacker": label, "accuracy": accuracy, "success": rate})
    return {
        "table1": table1,
        "table2": table2,
        "table3": table3,
        "adaptive": adaptive,
        "certified": _certified_table(config, units, records),
    }


def _certified_table(config: EvaluationConfig, units: list[Unit], records: list[dict]) -> list[dict]:
    """PatchCleanser rows: clean and certified accuracy, accuracy under each attack, and a check.

    ``certificates broken`` counts images certified (and correct) on the clean image whose label
    an attack with a patch inside the threat model still changed: it must be 0, and larger
    patches (the 10% universal patch, LaVAN above the certified size) are reported, not claimed.
    """
    rows = []
    clean = [r for r in records if r["unit"] == "clean"]
    for spec in (spec for spec in config.defenses if certify.is_spec(spec)):
        certified = {
            name: bool(ok and p == label)
            for r in clean
            for name, ok, p, label in zip(
                r["images"], r["certified"][spec], r["predictions"][spec], r["labels"], strict=True
            )
        }
        row = {
            "defense": spec,
            "clean": _rates(records, "clean", spec)[0],
            "certified": sum(certified.values()) / max(len(certified), 1),
        }
        threat = certify.parse_spec(spec).get("patch_fraction")
        broken = 0
        for unit in units:
            if unit.attack == "clean" or spec not in unit.scored:
                continue
            row["adaptive (EoT over masks)" if unit.view == "masks" else unit.key] = _rates(records, unit.key, spec)[0]
            if threat is not None and unit.attack == "lavan" and unit.fraction <= threat:
                for r in (r for r in records if r["unit"] == unit.key):
                    broken += sum(
                        certified.get(name, False) and p != label
                        for name, p, label in zip(r["images"], r["predictions"][spec], r["labels"], strict=True)
                    )
        row["certificates broken"] = broken
        rows.append(row)
    return rows


def _first_lgs(specs: list[str]) -> LocalGradientsSmoothing:
    """The LGS module of the first spec that holds one (alone, inside its windows as ``lgs+median:3``, or in a
    chain as ``median:3|lgs``), else the paper's default: the one whose stages Figure 2 shows."""
    for spec in specs:
        if certify.is_spec(spec):
            continue
        found = next((m for m in defenses.get(spec).modules() if isinstance(m, LocalGradientsSmoothing)), None)
        if found is not None:
            return found
    return defenses.get(DEFAULT_LGS_SPEC)


def write_figures(config: EvaluationConfig, units: list[Unit], model: Classifier, images) -> None:
    """``figure4_defenses.png`` and ``figure2_lgs_stages.png`` on the first batch of the strongest attack."""
    from ..models import class_names
    from .report import figure_defended_examples, figure_lgs_stages

    shown = [unit for unit in units if unit.attack in ("lavan", "patch") and unit.view == "none"]
    unit = max(shown, key=lambda u: (u.attack == "lavan", u.fraction)) if shown else units[0]
    cache = Path(config.output_dir) / "adversarial" / folder_name(unit.key) / "batch-00000.pt"
    first = next(images.batches(config.batch_size, [0], 0))
    adversarial = torch.load(cache, weights_only=True)["adversarial"] if cache.exists() else first.images
    adversarial = adversarial[:4].to(config.device)
    count = adversarial.shape[0]
    if count == 0:  # no image of the first batch could be decoded: nothing to show
        return
    names = class_names()
    families = {}  # the first image defense of each name (one LGS, one JPEG, ...), in order
    for spec in config.defenses:
        if not certify.is_spec(spec):
            families.setdefault(spec.split(":")[0].split(",")[0], spec)
    rows = list(families.values())[:8]
    panels = {}  # per defense, each image's (defended image, top-1 label, confidence)
    for spec in rows:
        defended = defenses.get(spec)(adversarial)
        labels, confidences = model.predict(defended)
        panels[spec] = [(defended[i], names[labels[i]], float(confidences[i])) for i in range(count)]
    columns = [
        {"name": f"{first.names[i]} ({unit.key})", "panels": {spec: panels[spec][i] for spec in rows}}
        for i in range(count)
    ]
    folder = Path(config.output_dir)
    figure_defended_examples(columns, rows, folder / "figure4_defenses.png")
    lgs_module = _first_lgs(config.defenses)
    with torch.no_grad():
        result = lgs_module.stages(adversarial, stages=("output", "normalised_gradient", "suppression_map"))
        stage_rows = [
            {
                "name": first.names[i],
                "note": unit.key,
                "image": adversarial[i],
                "normalised": result.normalised_gradient[i, 0],
                "suppressed": result.suppression_map[i, 0],
                "defended": result.output[i],
            }
            for i in range(count)
        ]
    figure_lgs_stages(stage_rows, folder / "figure2_lgs_stages.png")
