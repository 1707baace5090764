"""Defend image files at dataset scale with LGS or any baseline defense: the work behind ``lgs-gpu defend``.

Pipeline of one process (one per rank under ``torchrun``, each on every ``world``-th file)::

    files ─► decode      DataLoader workers (Pillow); on CUDA, JPEGs are only read and their
                         header's size checked here, then decoded in batches by nvJPEG
          ─► group       images of one size, up to ``batch_size``, become one batch
          ─► defend      one call of the defense per batch, on the device
          ─► write       encode + atomic write (temp file + os.replace) in a thread pool
          ─► manifest    one JSON line per output, appended once its whole batch is written

:mod:`lgs_gpu.app.defend_outputs` owns the output folder: its manifest, which records the defense
spec that made each output, and what ``resume`` and ``overwrite`` do with outputs that exist.

Ctrl-C (or any error) stops decoding and defending, finishes writing what was already defended
(a second Ctrl-C drops what has not started), and records it: every file is written whole or not at
all, and the manifest names only whole files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..core.imageio import find_images
from ..core.transform import ImageDefense
from ..defenses import get
from .configs import DefendConfig
from .defend_inputs import decoded_inputs, group_batches, on_device
from .defend_outputs import (
    Decoded,
    Job,
    WriteFailure,
    Writer,
    manifest_path,
    read_manifest,
    recorded_outputs,
    remove_stale_temporaries,
    retire_existing,
    sort_out,
)
from .resources import BYTES_PER_PIXEL, ThreadPlan, default_batch_memory
from .runs import Distributed, check_output_folder, rank_device

_LOG = logging.getLogger("lgs_gpu")


@dataclass
class DefendSummary:
    """What one process did: outputs written and kept (``resume``), inputs skipped and why."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (input, why)
    kept: list[Path] = field(default_factory=list)  # finished by an earlier run (resume)
    notes: list[tuple[Path, str]] = field(default_factory=list)  # (input, what the reader did: first frame only, ...)
    rank: int = 0
    world: int = 1
    threads: str = ""  # who ran on the CPUs (ThreadPlan.describe)


def spec_of(defense: ImageDefense) -> str:
    """The spec string recorded in the manifest: the registry spec, or the class of a custom defense.

    A custom defense without a ``spec`` is recorded by its class only, so ``resume`` cannot tell
    two of its settings apart.

    Example:
        >>> spec_of(get("median:3"))
        'median:3'
    """
    try:
        return defense.spec
    except NotImplementedError:
        return f"{type(defense).__module__}.{type(defense).__qualname__}"


def plan_jobs(
    inputs: list[str | Path], output_dir: Path, output_format: str, save_map: bool, records: dict[str, dict]
) -> list[Job]:
    """Every input image and its output paths (``records``: the output folder's manifest, :func:`read_manifest`).

    ``ValueError`` when an output would overwrite an input, or when two inputs would write the
    same output or map (``a.png`` and ``a.jpg`` as PNG, ``a.png``'s map and an input ``a_map.png``):
    every collision is named in one error. Outputs are never taken as inputs: neither what lies
    under an output folder inside an input folder, nor a file the output folder's manifest names.
    """
    recorded = recorded_outputs(output_dir, records)  # outputs beside their inputs (an input folder inside output_dir)
    found = [(path, relative) for path, relative in find_images(inputs, output_dir) if path.resolve() not in recorded]
    inputs_resolved = {path.resolve() for path, _ in found}
    jobs, writers = [], {}  # writers: output -> the inputs that would write it
    for index, (path, relative) in enumerate(found):
        name = relative.with_suffix(path.suffix if output_format == "same" else f".{output_format}")
        target = output_dir / name
        map_target = target.with_name(f"{target.stem}_map.png") if save_map else None
        jobs.append(Job(index, path, target, map_target, name.as_posix()))
        for candidate in filter(None, (target, map_target)):
            if candidate.resolve() in inputs_resolved:
                raise ValueError(f"refusing to overwrite the input {candidate}: choose another output folder")
            writers.setdefault(candidate.resolve(), []).append(path)
    collisions = [(output, sources) for output, sources in writers.items() if len(sources) > 1]
    if collisions:
        named = "; ".join(f"{' and '.join(map(str, sources))} -> {output}" for output, sources in collisions)
        same = (
            "" if output_format == "same" else ", or keep each input's suffix with --format same (output_format='same')"
        )
        raise ValueError(
            f"{len(collisions)} output(s) would be written by more than one input: {named}; rename the inputs{same}"
        )
    return jobs


# --- defending ---------------------------------------------------------------------------------


def defend_batch(
    defense: ImageDefense, images: torch.Tensor, save_map: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[B, 3, H, W]`` uint8 -> defended ``[B, 3, H, W]`` uint8 and ``ĝ`` as ``[B, 1, H, W]`` uint8 (or None), on the CPU.

    Example:
        >>> defended, maps = defend_batch(get("lgs"), torch.zeros(2, 3, 32, 32, dtype=torch.uint8), save_map=True)
        >>> defended.shape, maps.shape
        (torch.Size([2, 3, 32, 32]), torch.Size([2, 1, 32, 32]))
    """
    with torch.no_grad():
        if not save_map:
            return defense(images).cpu(), None
        defended, suppressed = defense.defend_with_map(images)  # the image and its map from one LGS pass
        return defended.cpu(), (suppressed * 255).round().to(torch.uint8).cpu()


def defend_group(
    defense: ImageDefense, pairs: list[tuple[Decoded, torch.Tensor]], save_map: bool
) -> tuple[list[tuple[Decoded, torch.Tensor, torch.Tensor | None]], list[tuple[Decoded, str]]]:
    """Defend ``(item, image)`` pairs of one size as one batch: ``(outputs (item, image, map), skipped (item, why))``.

    A defense that refuses the batch (``ValueError``) is tried image by image, so that only the
    images it refuses are skipped.
    """
    try:
        defended, maps = defend_batch(defense, torch.stack([image for _, image in pairs]), save_map)
    except ValueError as error:
        if len(pairs) == 1:
            return [], [(pairs[0][0], f"cannot defend: {error}")]
        each = [defend_group(defense, [pair], save_map) for pair in pairs]
        return [out for outputs, _ in each for out in outputs], [skip for _, skipped in each for skip in skipped]
    return [(item, defended[i], None if maps is None else maps[i]) for i, (item, _) in enumerate(pairs)], []


# --- the command -------------------------------------------------------------------------------


def _agree(runtime: Distributed, problem: str | None) -> None:
    """Raise the first rank's problem on every rank, so that no rank waits for one that stopped."""
    problems = [problem]
    if runtime.active:
        problems = [None] * runtime.world
        runtime.dist.all_gather_object(problems, problem)
    if any(problems):
        raise ValueError(next(filter(None, problems)))


def defend_files(
    inputs: list[str | Path], output_dir: str | Path, config: DefendConfig | None = None, **settings: Any
) -> DefendSummary:
    """Defend every image under ``inputs`` and write the results under ``output_dir``.

    ``config`` (:class:`.configs.DefendConfig`) says how; its fields may be given as keywords instead,
    or as well, to change them. ``defense`` is a defense module or a spec string of :func:`lgs_gpu.defenses.get`
    (``"lgs"``, ``"jpeg:30"``, ``"lgs+median:3"`` ...). Outputs keep the inputs' names (folders
    keep their structure) with the suffix of ``output_format`` (``"png"``, lossless, by default;
    ``"same"`` keeps the input's). With ``save_map`` the LGS map ``ĝ`` is written beside each
    output as ``<name>_map.png`` (LGS-based defenses only). No input is ever overwritten (checked
    before any work), every write is atomic, and an unreadable image is skipped with a plain
    reason, not fatal.

    At scale: ``workers`` processes decode (0: this one); images of one size are defended
    ``batch_size`` at a time on ``device``, fewer when a batch would need more than
    ``batch_memory`` bytes (default: :func:`default_batch_memory`; :data:`BYTES_PER_PIXEL` per
    pixel), and a single image past it alone; ``write_threads`` (default: one per CPU) encode and
    write, PNG at zlib level ``png_compression``; torch runs ``threads`` threads in this process
    for the run (default: the CPUs the workers leave, at least 1: see :class:`ThreadPlan`).
    ``decode_on_device`` (default: on CUDA) decodes JPEGs on the device. Existing outputs are refused unless ``resume`` (keep finished ones,
    see :mod:`lgs_gpu.app.defend_outputs`) or ``overwrite``. Under ``torchrun`` each rank takes every
    ``world``-th file; ``shard=(rank, world)`` does the same by hand (several machines, or tests).

    A write that fails for one file skips it (``"write failure: ..."`` in ``skipped``); a full
    disk or quota, or a read-only or failing file system, stops the run with
    :class:`WriteFailure`, whatever was written before it whole and recorded. Outputs get the
    mode ``open()`` would give them (the umask is respected). An output folder inside an input
    folder is not searched for inputs.

    Example:
        >>> summary = defend_files(["photos/"], "defended", defense="lgs", workers=2)  # doctest: +SKIP
        >>> len(summary.written), summary.skipped  # doctest: +SKIP
        (1000, [])
    """
    if config is not None and not isinstance(config, DefendConfig):
        raise TypeError(f"config must be a DefendConfig (or give its fields as keywords). Got {type(config).__name__}")
    config = DefendConfig(**settings) if config is None else replace(config, **settings)
    config.check()
    defense = get(config.defense) if isinstance(config.defense, str) else config.defense
    if not isinstance(defense, ImageDefense):
        raise TypeError(f"defense must be a spec string or an lgs_gpu defense. Got {type(defense).__name__}")
    if config.save_map and not callable(getattr(defense, "defend_with_map", None)):  # LGS gives its map ĝ
        raise ValueError(f"save_map needs an LGS-based defense (lgs, lgs+<filter>). Got {defense.spec!r}")
    output_dir = Path(output_dir)
    records = read_manifest(output_dir)  # once: for the input walk and for resume
    jobs = plan_jobs(inputs, output_dir, config.output_format, config.save_map, records)
    check_output_folder(output_dir)
    device = config.device if config.shard is not None else rank_device(config.device)
    runtime = Distributed(device, shard=config.shard is None)  # one process, unless under torchrun
    rank, world = config.shard or (runtime.rank, runtime.world)
    try:
        mine = jobs[rank::world]
        spec = spec_of(defense)
        todo, kept, problem = sort_out(mine, output_dir, spec, config.resume, config.overwrite, records)
        _agree(runtime, problem)  # every rank has read the folder before any writes to it
        remove_stale_temporaries(mine)
        manifest = manifest_path(output_dir, rank)
        if config.overwrite:
            retire_existing(mine, manifest)
        plan = ThreadPlan.choose(config.workers, config.write_threads, config.threads)
        _LOG.info("lgs-gpu defend: %s", plan.describe())
        resolved = replace(  # every choice left to the machine, made
            config,
            device=device,
            decode_on_device=torch.device(device).type == "cuda"
            if config.decode_on_device is None
            else config.decode_on_device,
            batch_memory=default_batch_memory(device) if config.batch_memory is None else config.batch_memory,
            write_threads=plan.write_threads,
            threads=plan.threads,
        )
        summary = DefendSummary(kept=[job.target for job in kept], rank=rank, world=world, threads=plan.describe())
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(plan.threads)  # for this run only: the caller's setting comes back after
        try:
            run_jobs(todo, defense, spec, resolved, manifest, summary)
        finally:
            torch.set_num_threads(previous_threads)
        return summary
    finally:
        runtime.close()


def run_jobs(
    jobs: list[Job], defense: ImageDefense, spec: str, config: DefendConfig, manifest: Path, summary: DefendSummary
) -> None:
    """Decode, group, defend and write ``jobs`` as ``config`` says (its run-time choices made: see
    :func:`defend_files`), into ``summary`` in job order."""
    batch_pixels = max(1, config.batch_memory // BYTES_PER_PIXEL)
    skipped, notes = [], []  # (job index, input, why or note)
    where = f" (rank {summary.rank} of {summary.world})" if summary.world > 1 else ""
    with tqdm(total=len(jobs), desc=f"lgs-gpu defend{where}", unit="image", disable=not config.progress) as bar:
        in_flight = max(2 * config.batch_size, 4 * config.write_threads)
        writer = Writer(manifest, spec, config.write_threads, config.png_compression, in_flight, 4 * batch_pixels, bar)

        def skip(item: Decoded, why: str) -> None:
            skipped.append((item.job.index, item.job.source, why))
            bar.update()

        def readable(items: Iterable[Decoded]) -> Iterator[Decoded]:
            for item in items:
                if item.error is None:
                    notes.extend((item.job.index, item.job.source, note) for note in item.notes)
                    yield item
                else:
                    skip(item, item.error)

        try:
            groups = group_batches(
                readable(decoded_inputs(jobs, config.workers, config.batch_size, config.decode_on_device)),
                lambda item: item.size,
                config.batch_size,
                max_waiting=4 * config.batch_size,
                weight=lambda size: size[0] * size[1],
                max_weight=batch_pixels,
                max_waiting_weight=4 * batch_pixels,
            )
            for group in groups:
                pairs, unreadable = on_device(group, config.device)
                for shape in dict.fromkeys(image.shape for _, image in pairs):  # a header may lie about the size
                    outputs, refused = defend_group(defense, [p for p in pairs if p[1].shape == shape], config.save_map)
                    unreadable += refused
                    writer.submit(outputs)
                for item, why in unreadable:
                    skip(item, why)
            writer.close()
        except BaseException as error:
            writer.abort()
            if isinstance(error, WriteFailure):
                raise WriteFailure(
                    f"{error}; stopped after {len(writer.written)} output(s), each whole and recorded: fix the "
                    "cause (free space, a writable folder) and add --resume (resume=True) to finish"
                ) from None
            raise
    summary.written = [target for _, target in sorted(writer.written)]
    summary.skipped = [(path, why) for _, path, why in sorted(skipped + writer.failed)]
    summary.notes = [(path, note) for _, path, note in sorted(notes)]
