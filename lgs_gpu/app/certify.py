"""``lgs-gpu certify``: PatchCleanser's clean and certified accuracy on a model and a set of images.

The work is cut into (patch size, batch of images) pieces. Each piece's labels, certificates,
cases and forward passes are written atomically as a record (``records/patch-2pc/batch-00000.json``)
as soon as it is done, so an interrupted run resumes where it stopped; each record depends on its
patch size, mask count and batch of images (:mod:`.runs`). Under ``torchrun`` batch ``b`` goes to
rank ``b % N`` and rank 0 merges the records into ``certify.json``, ``certify.csv`` and ``certify.md``.

Per patch size: the model's clean accuracy, PatchCleanser's clean accuracy, its certified
accuracy (certified and correct), the share of cases I / II / III, the forward passes (masked
images through the model) and the images and forward passes per second.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..certify import PatchCleanser
from . import runs
from .configs import CertifyConfig
from .report import markdown_table, write_outputs

# What a record holds per image, in the order of certify.csv's columns.
_COLUMNS = ("labels", "bare_predictions", "predictions", "certified", "cases", "forward_passes")
# The table's shares of the images, each counting the images ``i`` of the records ``r`` it holds true for.
_SHARES = {
    "clean accuracy (model)": lambda r, i: r["bare_predictions"][i] == r["labels"][i],
    "clean accuracy (PatchCleanser)": lambda r, i: r["predictions"][i] == r["labels"][i],
    "certified accuracy": lambda r, i: r["certified"][i] and r["predictions"][i] == r["labels"][i],
    "case I": lambda r, i: r["cases"][i] == 1,
    "case II": lambda r, i: r["cases"][i] == 2,
    "case III": lambda r, i: r["cases"][i] == 3,
}


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
        return {"images": [], **{column: [] for column in _COLUMNS}, "model_calls": 0, "seconds": 0.0}
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
    geometry = cleanser.geometry_for(size, size)
    seconds = sum(record["seconds"] for record in records)
    passes = sum(sum(record["forward_passes"]) for record in records)
    return {
        "patch": f"{100 * fraction:g}% ({geometry.patch_size[0]} px)",
        "masks": f"{geometry.count} of {geometry.mask_size[0]} px, stride {geometry.stride[0]}",
        "images": count,
        **{
            name: sum(test(record, i) for record in records for i in range(len(record["labels"]))) / max(count, 1)
            for name, test in _SHARES.items()
        },
        "forward passes": passes,
        "model calls": sum(record["model_calls"] for record in records),
        "images / s": count / seconds if seconds else None,
        "forward passes / s": passes / seconds if seconds else None,
    }


def markdown(results: dict) -> str:
    """``certify.md``: the table, one row per patch size (its shares as percentages)."""
    return (
        "# PatchCleanser certification\n\n"
        f"Model `{results['model']}`, {results['images']} images, labels: {results['label_source']}; "
        f"{results['config']['masks_per_axis']} masks per axis.\n\n" + markdown_table(results["table"], _SHARES)
    )


def write_results(results: dict, folder: Path) -> None:
    """``certify.json``, ``certify.csv`` (one row per image and patch) and ``certify.md``, atomically."""
    rows = (
        [key, name, *(record[column][i] for column in _COLUMNS)]
        for key, records in results["records"].items()
        for record in records
        for i, name in enumerate(record["images"])
    )
    write_outputs(folder, "certify", results, ["patch", "image", *_COLUMNS], rows, markdown(results))


def certify(config: CertifyConfig, progress: bool = True) -> dict | None:
    """Run (or resume) a certification; rank 0 returns the results (other ranks None).

    Example:
        >>> results = certify(CertifyConfig(output_dir="out", patch_fractions=[0.02]))  # doctest: +SKIP
        >>> results["table"][0]["certified accuracy"]  # doctest: +SKIP
        0.25
    """
    validate(config)
    keys = [_key(fraction) for fraction in config.patch_fractions]
    with runs.session(config, runs.conditions(config, "masks_per_axis", "images_per_batch")) as run:
        model = run.model
        cleansers = {
            fraction: PatchCleanser(
                model, patch_fraction=fraction, masks_per_axis=config.masks_per_axis, batch_size=config.model_batch_size
            )
            for fraction in config.patch_fractions
        }
        work = run.work(config.images_per_batch, config.patch_fractions, _key, "certify", progress)
        for batch, labels, identity, fraction in work:
            path = runs.record_path(config.output_dir, _key(fraction), batch.index)
            depends_on = {"patch_fraction": fraction, "masks_per_axis": config.masks_per_axis, "images": identity}
            if runs.read_cached(path, depends_on, "certify") is None:
                record = _certify_batch(cleansers[fraction], model, batch.images.to(config.device), labels, batch.names)
                runs.store(path, {**record, "depends_on": depends_on, "skipped": batch.skipped, "notes": batch.notes})
        gathered = run.gather(keys, config.images_per_batch)
        if gathered is None:
            return None
        seen = run.seen(gathered[0])  # every patch size holds the same images
        results = {
            "config": asdict(config),
            "conditions": run.conditions,
            "model": model.name,
            "images": seen["count"],
            "names": seen["names"],
            "skipped": seen["skipped"],
            "notes": seen["notes"],
            "label_source": runs.label_source(run.images),
            "table": [
                summarise(fraction, cleansers[fraction], model.input_size, records)
                for fraction, records in zip(config.patch_fractions, gathered, strict=True)
            ],
            "records": dict(zip(keys, gathered, strict=True)),
        }
        write_results(results, Path(config.output_dir))
        return results
