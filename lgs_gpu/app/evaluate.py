"""Attacks x defenses on a model and a set of images -> the paper's tables, resumable and distributed.

The work is cut into *units* (an attack setting, e.g. LaVAN at 2% or BPDA through JPEG 30) times
*batches* of images (fixed by index, ``batch_size`` each). For every (unit, batch) the attack's
adversarial images are cached on disk (``adversarial/<unit>/batch-NNNNN.pt``, uint8, as an image
file would hold them) and a record with every scored defense's top-1 prediction is written
atomically (``records/<unit>/batch-NNNNN.json``). A rerun skips finished records and re-scores
cached adversarial images without attacking again; what cached work depends on (the run's
:func:`conditions`; each file's unit, batch images and patch) is checked as :mod:`.runs` says. The
attacks step along the sign of the gradient, so last-bit differences (oneDNN splits convolutions by
thread) grow into other patches: each run pins its intra-op threads (``threads``, 1 by default) and
the same command on the same machine gives the same tables. Seeds derive from (seed, unit, batch),
so results do not depend on which process ran a batch: under ``torchrun --nproc-per-node N`` batch
``b`` goes to rank ``b % N``, and rank 0 merges the records into the tables.

Tables (see :mod:`.report` for the files):

* Table 1: top-1 accuracy, clean and under LaVAN at ≈2 / 3 / 4% of the image, per defense.
* Table 2: accuracy under the universal adversarial patch (≈10%, EoT), per defense.
* Table 3: LaVAN (≈2%) success rate (target is top-1) per defense, non-adaptive vs BPDA.
* Adaptive: the chosen LGS setting under the non-adaptive, exact-gradient and BPDA(+EOT) attacks.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import asdict
from pathlib import Path

import torch

from .. import attacks, certify, data, defenses
from ..core.validate import from_unit_float
from ..models import Classifier
from . import runs
from .configs import ATTACKS, EvaluationConfig
from .evaluate_plan import Unit, folder_name, lavan_unit, plan
from .evaluate_tables import tables, write_figures
from .report import write_results

# What calibrate and lgs_gpu.evaluate use: the config, the plan and its units, the run, its tables.
__all__ = [
    "ATTACKS",
    "EvaluationConfig",
    "Unit",
    "adversarial_batch",
    "conditions",
    "evaluate",
    "lavan_unit",
    "plan",
    "tables",
    "validate",
]


def conditions(config: EvaluationConfig) -> dict:
    """What the cached work depends on (:func:`.runs.conditions`): the inputs, the attacks' settings, the batches."""
    return runs.conditions(config, "lavan_iterations", "patch_steps", "eot_samples", "seed", "batch_size")


def resolved(spec: str) -> str:
    """A model preset's parameters (``lgs@efficientnet_lite0`` -> ``lgs:3,threshold=0.3``); other specs as given.

    Cached work scored or attacked through a preset records what it stood for, so a resume after the
    preset changed (another version of this package) redoes that work instead of reusing it.
    """
    if "@" not in spec:
        return spec
    if certify.is_spec(spec):  # PatchCleanser's "@" names the image defense before the model
        head, _, defense = "".join(spec.split()).partition("@")
        return spec if "@" not in defense else f"{head}@{resolved(defense)}"
    return defenses.get(spec).spec


def _check_spec(spec: str) -> None:
    """An image defense of the registry, or PatchCleanser (which gives labels and needs the model)."""
    if certify.is_spec(spec):
        defense = certify.parse_spec(spec)["defense"]
        if defense is not None:
            defenses.get(defense)
    else:
        defenses.get(spec)


def validate(config: EvaluationConfig) -> None:
    """Check every name, spec and path before any work (``ValueError`` naming what is wrong)."""
    unknown = [name for name in config.attacks if name not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack(s) {', '.join(unknown)}; accepted: {', '.join(ATTACKS)}")
    for spec in config.defenses:
        _check_spec(spec)
    for spec in [*(config.bpda_defenses or []), config.adaptive_defense]:
        if certify.is_spec(spec):
            raise ValueError(f"{spec!r} gives labels, not images: BPDA and the LGS adaptive rows take image defenses")
        defenses.get(spec)
    if not config.defenses:
        raise ValueError("at least one defense spec is needed (e.g. none)")
    for fraction in [*config.lavan_fractions, config.patch_fraction, config.bpda_fraction]:
        if not 0 < fraction < 1:
            raise ValueError(f"patch area fractions must be in (0, 1). Got {fraction}")
    for name in ("lavan_iterations", "patch_steps", "patch_images", "batch_size", "eot_samples", "threads"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1. Got {getattr(config, name)}")
    config.check()
    runs.check_output_folder(config.output_dir)


def _depends_on(unit: Unit, identity: str, patch=None) -> dict:
    """What a unit's cached work for the images of digest ``identity`` (:func:`.runs.batch_identity`) depends on
    (the run-wide part is in ``conditions.json``); a cached file made from anything else is recomputed."""
    depends_on = {
        "unit": unit.key,
        "attack": unit.attack,
        "fraction": unit.fraction,
        "view": unit.view,
        "defense": unit.defense,
        "images": identity,
    }
    if unit.defense is not None and unit.defense != resolved(unit.defense):  # a preset: what it stood for when attacked
        depends_on["resolved"] = resolved(unit.defense)
    if patch is not None:
        depends_on["patch"] = hashlib.sha256(patch["patch"].numpy().tobytes()).hexdigest()[:32]
    return depends_on


def _patch(config: EvaluationConfig, unit: Unit, run: runs.Session):
    """The universal patch: trained once by rank 0 on the first ``patch_images`` images, cached, loaded by the others."""
    path = Path(config.output_dir) / "adversarial" / folder_name(unit.key) / "patch.pt"
    if run.runtime.rank == 0:
        training = next(run.images.batches(min(config.patch_images, len(run.images)), [0], config.decode_workers()))
        depends_on = _depends_on(unit, runs.batch_identity(training))
        if runs.read_cached(path, depends_on, "evaluate") is None:
            result = attacks.train_patch(
                run.model,
                training.images.to(config.device),
                area_fraction=unit.fraction,
                steps=config.patch_steps,
                batch_size=config.batch_size,
                seed=config.seed,
                progress=True,
            )
            patch = {"patch": result.patch.cpu(), "target": result.target, "losses": result.losses}
            runs.store(path, {**patch, "depends_on": depends_on})
    run.runtime.barrier()
    return torch.load(path, weights_only=True)


def _attack(config, unit: Unit, model, batch: torch.Tensor, labels: torch.Tensor, seed: int, patch):
    """Adversarial uint8 images and their targets for one batch."""
    if unit.attack == "patch":
        patched, _ = attacks.apply_patch(batch, patch["patch"].to(batch.device), seed=seed)
        return from_unit_float(patched, torch.uint8), torch.full_like(labels, patch["target"])
    if unit.view == "masks":
        cleanser = certify.from_spec(unit.defense, model, defenses.get)
        view = certify.RandomMask(cleanser, torch.Generator().manual_seed(seed))
    else:
        view = attacks.attacker_view(defenses.get(unit.defense) if unit.defense else None, unit.view)
    result = attacks.lavan(
        model,
        batch,
        labels,
        area_fraction=unit.fraction,
        iterations=config.lavan_iterations,
        defense=view,
        eot_samples=config.eot_samples,
        seed=seed,
    )
    return from_unit_float(result.adversarial, torch.uint8), result.targets


def _score(model: Classifier, adversarial: torch.Tensor, specs: tuple[str, ...], certificates: bool) -> dict:
    """Top-1 predictions (and confidences) per defense; PatchCleanser's labels, with certificates if asked."""
    predictions, confidences, certified = {}, {}, {}
    for spec in specs:
        if certify.is_spec(spec):
            cleanser = certify.from_spec(spec, model, defenses.get)
            if certificates:
                result = cleanser.predict_and_certify(adversarial)
                label, certified[spec] = result.labels, result.certified.tolist()
            else:
                label = cleanser(adversarial)
            predictions[spec], confidences[spec] = label.tolist(), None
            continue
        with torch.no_grad():
            label, confidence = model.predict(defenses.get(spec)(adversarial))
        predictions[spec] = label.tolist()
        confidences[spec] = [round(value, 6) for value in confidence.tolist()]
    return {"predictions": predictions, "confidences": confidences, **({"certified": certified} if certified else {})}


def adversarial_batch(config, unit: Unit, model, batch: data.Batch, labels: torch.Tensor, identity: str, patch=None):
    """One batch's uint8 adversarial images and targets (``None`` for clean), attacked once then cached.

    ``labels`` and ``identity``: the batch's, as :meth:`.runs.Session.work` gives them.
    The cache (``adversarial/<unit>/batch-NNNNN.pt`` under the output folder) is shared by every
    command that runs the same unit with the same :func:`conditions`: ``lgs-gpu calibrate``
    attacks once and ``evaluate`` in the same folder scores its images without attacking again.
    """
    images = batch.images.to(config.device)
    if unit.attack == "clean":
        return images, None
    cache = Path(config.output_dir) / "adversarial" / folder_name(unit.key) / f"batch-{batch.index:05d}.pt"
    depends_on = _depends_on(unit, identity, patch)
    cached = runs.read_cached(cache, depends_on, "evaluate")
    if cached is not None:
        return cached["adversarial"].to(config.device), cached["targets"]
    seed = zlib.crc32(f"{config.seed}:{unit.key}:{batch.index}".encode())
    adversarial, targets = _attack(config, unit, model, images, labels.to(config.device), seed, patch)
    runs.store(cache, {"adversarial": adversarial.cpu(), "targets": targets.cpu(), "depends_on": depends_on})
    return adversarial, targets


def run_unit_batch(config, unit, model, batch: data.Batch, labels: torch.Tensor, identity: str, patch) -> dict:
    """Attack (or load the cached attack) and score one batch of one unit; returns its record.

    The clean unit's record also keeps the batch's files that could not be decoded, and the reader's notes.
    """
    path = runs.record_path(config.output_dir, folder_name(unit.key), batch.index)
    depends_on = _depends_on(unit, identity, patch)
    clean = unit.attack == "clean"  # scored with PatchCleanser's certificates; keeps the reader's reports
    record = runs.read_cached(path, depends_on, "evaluate")
    if record is not None:
        missing = tuple(
            spec
            for spec in unit.scored
            if spec not in record["predictions"] or record.get("resolved", {}).get(spec, spec) != resolved(spec)
        )
        if not (missing and batch.names):
            return record
        # a resume with more defenses: score them on the cached images, attack nothing
        adversarial, _ = adversarial_batch(config, unit, model, batch, labels, identity, patch)
        for key, values in _score(model, adversarial, missing, certificates=clean).items():
            record.setdefault(key, {}).update(values)
    else:
        if batch.names:
            adversarial, targets = adversarial_batch(config, unit, model, batch, labels, identity, patch)
            scores = _score(model, adversarial, unit.scored, certificates=clean)
        else:  # every file of this batch failed to decode: an empty record keeps the cut
            targets = None if clean else labels
            scores = {column: {spec: [] for spec in unit.scored} for column in ("predictions", "confidences")}
            if clean and any(certify.is_spec(spec) for spec in unit.scored):
                scores["certified"] = {spec: [] for spec in unit.scored if certify.is_spec(spec)}
        record = {
            "unit": unit.key,
            "depends_on": depends_on,
            "batch": batch.index,
            "images": batch.names,
            "labels": labels.tolist(),
            "targets": None if targets is None else targets.tolist(),
            **scores,
            **({"skipped": batch.skipped, "notes": batch.notes} if clean else {}),
        }
    record["resolved"] = {spec: resolved(spec) for spec in unit.scored if resolved(spec) != spec}
    runs.store(path, record)
    return record


def evaluate(config: EvaluationConfig, progress: bool = True) -> dict | None:
    """Run (or resume) an evaluation; rank 0 returns the results (other ranks return None).

    An image folder is read batch by batch (decoded by ``config.workers`` processes), and every
    unit runs on a batch before the next is read: memory does not grow with the number of images.

    Example:
        >>> results = evaluate(EvaluationConfig(output_dir="out", lavan_iterations=50))  # doctest: +SKIP
        >>> results["tables"]["table1"][0]["defense"]  # doctest: +SKIP
        'none'
    """
    validate(config)
    units = plan(config)
    with runs.session(config, conditions(config)) as run:
        model = run.model
        patches = {unit.key: _patch(config, unit, run) for unit in units if unit.attack == "patch"}
        work = run.work(config.batch_size, units, lambda unit: unit.key, "evaluate", progress)
        for batch, labels, identity, unit in work:
            run_unit_batch(config, unit, model, batch, labels, identity, patches.get(unit.key))
        gathered = run.gather([folder_name(unit.key) for unit in units], config.batch_size)
        if gathered is None:
            return None
        records = [record for unit_records in gathered for record in unit_records]
        results = {
            "config": asdict(config),
            "conditions": run.conditions,
            "model": {"name": model.name, "input_size": model.input_size, "weights": model.weights},
            "images": run.seen(gathered[0]),  # the clean unit's records: the plan's first
            "label_source": runs.label_source(run.images),
            "units": [asdict(unit) for unit in units],
            "tables": tables(config, units, records),
            "records": records,
        }
        write_results(results, Path(config.output_dir))
        write_figures(config, units, model, run.images)
        return results
