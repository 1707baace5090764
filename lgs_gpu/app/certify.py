"""``lgs-gpu certify``: PatchCleanser's clean and certified accuracy on a model and a set of images.

The work is cut into (patch size, batch of images) pieces. Each piece's labels, certificates,
cases and forward passes are written atomically as a record (``records/patch-2pc/batch-00000.json``)
as soon as it is done, so an interrupted run resumes where it stopped; ``conditions.json`` keeps
what the records depend on and a resume under other conditions is refused; each record also
stores its patch size, mask count and a digest of its images and labels, so a resume after files
were added to or removed from ``--data`` recomputes the batches whose images changed. Under ``torchrun``
batch ``b`` goes to rank ``b % N`` and rank 0 merges the records into ``certify.json``,
``certify.csv`` and ``certify.md``.

Per patch size: the model's clean accuracy, PatchCleanser's clean accuracy, its certified
accuracy (certified and correct), the share of cases I / II / III, the forward passes (masked
images through the model) and the images and forward passes per second.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .. import data
from ..certify import PatchCleanser
from ..core.files import atomic_write_bytes
from . import runs
from .configs import CertifyConfig
from .report import write_outputs

_RECORD_FIELDS = (
    "model",
    "weights",
    "data",
    "imagenet",
    "imagenet_labels",
    "limit",
    "masks_per_axis",
    "images_per_batch",
    "device",
    "threads",
)


def _key(fraction: float) -> str:
    return f"patch-{100 * fraction:g}pc"


def validate(config: CertifyConfig) -> None:
    """Check names, sizes and paths before any work (``ValueError`` naming what is wrong)."""
    if not config.patch_fractions:
        raise ValueError("at least one patch fraction is needed (e.g. 0.02)")
    for fraction in config.patch_fractions:
        if not 0 < fraction < 1:
            raise ValueError(f"patch fractions must be in (0, 1). Got {fraction}")
    keys = [_key(fraction) for fraction in config.patch_fractions]
    if len(set(keys)) != len(keys):
        raise ValueError(
            f"patch fractions must differ (their records would share a folder). Got {config.patch_fractions}"
        )
    for name in ("masks_per_axis", "images_per_batch", "model_batch_size", "threads"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1. Got {getattr(config, name)}")
    config.check()
    runs.check_output_folder(config.output_dir)


def _certify_batch(
    cleanser: PatchCleanser, model, images: torch.Tensor, labels: torch.Tensor, names: list[str]
) -> dict:
    if not names:  # every file of the batch failed to decode: an empty record keeps the cut
        empty = ("labels", "bare_predictions", "predictions", "certified", "cases", "forward_passes")
        return {"images": [], **{column: [] for column in empty}, "model_calls": 0, "seconds": 0.0}
    start = time.perf_counter()
    with torch.no_grad():
        bare = model(images).argmax(dim=1)
        result = cleanser.predict_and_certify(images)
    seconds = time.perf_counter() - start
    return {
        "images": names,
        "labels": labels.tolist(),
        "bare_predictions": bare.tolist(),
        "predictions": result.labels.tolist(),
        "certified": result.certified.tolist(),
        "cases": result.cases.tolist(),
        "forward_passes": result.forward_passes.tolist(),
        "model_calls": result.model_calls,
        "seconds": seconds,
    }


def summarise(fraction: float, cleanser: PatchCleanser, size: int, records: list[dict]) -> dict:
    """One row of the table from a patch size's records."""
    count = sum(len(record["labels"]) for record in records)

    def share(test) -> float:
        return sum(test(record, i) for record in records for i in range(len(record["labels"]))) / max(count, 1)

    geometry = cleanser.geometry_for(size, size)
    seconds = sum(record["seconds"] for record in records)
    passes = sum(sum(record["forward_passes"]) for record in records)
    return {
        "patch": f"{100 * fraction:g}% ({geometry.patch_size[0]} px)",
        "masks": f"{geometry.count} of {geometry.mask_size[0]} px, stride {geometry.stride[0]}",
        "images": count,
        "clean accuracy (model)": share(lambda r, i: r["bare_predictions"][i] == r["labels"][i]),
        "clean accuracy (PatchCleanser)": share(lambda r, i: r["predictions"][i] == r["labels"][i]),
        "certified accuracy": share(lambda r, i: r["certified"][i] and r["predictions"][i] == r["labels"][i]),
        "case I": share(lambda r, i: r["cases"][i] == 1),
        "case II": share(lambda r, i: r["cases"][i] == 2),
        "case III": share(lambda r, i: r["cases"][i] == 3),
        "forward passes": passes,
        "model calls": sum(record["model_calls"] for record in records),
        "images / s": count / seconds if seconds else None,
        "forward passes / s": passes / seconds if seconds else None,
    }


def markdown(results: dict) -> str:
    rows = results["table"]
    percent = {
        "clean accuracy (model)",
        "clean accuracy (PatchCleanser)",
        "certified accuracy",
        "case I",
        "case II",
        "case III",
    }

    def cell(key, value):
        if value is None:
            return "–"
        if key in percent:
            return f"{value:.1%}"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    header = list(rows[0]) if rows else []
    lines = [
        "# PatchCleanser certification",
        "",
        f"Model `{results['model']}`, {results['images']} images, labels: {results['label_source']}; "
        f"{results['config']['masks_per_axis']} masks per axis.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(cell(key, row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(results: dict, folder: Path) -> None:
    """``certify.json``, ``certify.csv`` (one row per image and patch) and ``certify.md``, atomically."""
    columns = ("labels", "bare_predictions", "predictions", "certified", "cases", "forward_passes")
    rows = (
        [key, name, *(record[column][i] for column in columns)]
        for key, records in results["records"].items()
        for record in records
        for i, name in enumerate(record["images"])
    )
    write_outputs(folder, "certify", results, ["patch", "image", *columns], rows, markdown(results))


def certify(config: CertifyConfig, progress: bool = True) -> dict | None:
    """Run (or resume) a certification; rank 0 returns the results (other ranks None).

    Example:
        >>> results = certify(CertifyConfig(output_dir="out", patch_fractions=[0.02]))  # doctest: +SKIP
        >>> results["table"][0]["certified accuracy"]  # doctest: +SKIP
        0.25
    """
    validate(config)
    now = {**{name: getattr(config, name) for name in _RECORD_FIELDS}, **runs.numerics()}
    folder = Path(config.output_dir)
    with runs.session(config, now) as run:
        model, images = run.model, run.images
        cleansers = {
            fraction: PatchCleanser(
                model, patch_fraction=fraction, masks_per_axis=config.masks_per_axis, batch_size=config.model_batch_size
            )
            for fraction in config.patch_fractions
        }
        work = run.work(config.images_per_batch, config.patch_fractions, _key, "certify", progress)
        for batch, labels, identity, fraction in work:
            path = folder / "records" / _key(fraction) / f"batch-{batch.index:05d}.json"
            depends_on = {"patch_fraction": fraction, "masks_per_axis": config.masks_per_axis, "images": identity}
            if runs.read_cached(path, depends_on, runs.read_json, "certify") is None:
                record = _certify_batch(cleansers[fraction], model, batch.images.to(config.device), labels, batch.names)
                record.update(depends_on=depends_on, skipped=batch.skipped, notes=batch.notes)
                atomic_write_bytes(path, json.dumps(record).encode())
        if not run.writes_results():
            return None
        count = data.batch_count(len(images), config.images_per_batch)
        records = {
            _key(fraction): [
                json.loads((folder / "records" / _key(fraction) / f"batch-{b:05d}.json").read_text())
                for b in range(count)
            ]
            for fraction in config.patch_fractions
        }
        first = next(iter(records.values()))  # every patch size holds the same images
        results = {
            "config": asdict(config),
            "conditions": now,
            "model": model.name,
            "images": sum(len(record["images"]) for record in first),
            "names": [name for record in first for name in record["images"]],
            "skipped": images.skipped + [tuple(item) for record in first for item in record.get("skipped", [])],
            "notes": images.notes + [tuple(item) for record in first for item in record.get("notes", [])],
            "label_source": runs.label_source(images),
            "table": [
                summarise(fraction, cleansers[fraction], model.input_size, records[_key(fraction)])
                for fraction in config.patch_fractions
            ],
            "records": records,
        }
        write_results(results, folder)
        return results
