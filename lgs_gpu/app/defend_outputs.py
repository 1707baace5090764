"""A ``lgs-gpu defend`` output folder: what is in it (the manifest, resume or overwrite) and what writes to it.

:class:`Writer` encodes and atomically writes the outputs in a thread pool and appends each batch's
records to the manifest in one fsync'd ``write`` once the whole batch is written, so the manifest
never names a file that is not whole.

Each process appends to its own manifest, ``lgs-defend-manifest.rank<R>.jsonl`` in the output folder:
one JSON line per output with the spec of the defense that made it, the output's size and its
input's size and modification time (:func:`output_record`). Across every rank's file the record with
the newest ``written_ns`` counts; a record with ``spec`` null *retires* its output (``overwrite``);
a line torn by a hard kill is ignored. The format, and which outputs ``resume`` keeps, redoes or
refuses (:func:`output_state`), are described in ``docs/defend.md``, "The resume manifest".

Every check happens before any work. A process killed outright can leave temporary files
(``.<name>.<random>.part``) beside its outputs: the next run into the folder deletes its own.
"""

from __future__ import annotations

import errno
import json
import math
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..core.files import atomic_write_bytes
from ..core.imageio import encode_image

MANIFEST_STEM = "lgs-defend-manifest"


@dataclass(frozen=True)
class Job:
    """One input and where its outputs go; ``name`` (relative to the output folder) keys the manifest."""

    index: int
    source: Path
    target: Path
    map_target: Path | None
    name: str


def manifest_path(output_dir: Path, rank: int) -> Path:
    """This rank's manifest file: ``<output_dir>/lgs-defend-manifest.rank<rank>.jsonl``."""
    return output_dir / f"{MANIFEST_STEM}.rank{rank}.jsonl"


def append_manifest(path: Path, records: list[dict]) -> None:
    """Append ``records`` as JSON lines in one ``write`` (O_APPEND) and fsync them: one call per finished
    batch, so that a batch's lines land together."""
    if not records:
        return
    data = memoryview("".join(json.dumps(record, sort_keys=True) + "\n" for record in records).encode())
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        end = os.lseek(handle, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(handle, data) :]
            os.fsync(handle)
        except OSError:  # a full disk mid-batch: take the torn lines back, so the next batch starts a clean line
            try:
                os.ftruncate(handle, end)
            except OSError:
                pass
            raise
    finally:
        os.close(handle)


def read_manifest(output_dir: Path) -> dict[str, dict]:
    """The newest record of each output (by ``written_ns``) across every rank's manifest file."""
    newest: dict[str, dict] = {}
    for path in sorted(output_dir.glob(f"{MANIFEST_STEM}.rank*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # torn by a hard kill: its output counts as unrecorded
                continue
            if not isinstance(record, dict) or not isinstance(record.get("output"), str):
                continue
            previous = newest.get(record["output"])
            if previous is None or record.get("written_ns", 0) >= previous.get("written_ns", 0):
                newest[record["output"]] = record
    return newest


def recorded_outputs(output_dir: Path, records: dict[str, dict]) -> set[Path]:
    """Every output and map the manifest ``records`` of ``output_dir`` (:func:`read_manifest`) name, resolved."""
    paths = [output_dir / name for name in records]
    paths += [(output_dir / name).with_name(r["map"]) for name, r in records.items() if isinstance(r.get("map"), str)]
    return {path.resolve() for path in paths}


def output_record(item: Decoded, spec: str, size: int) -> dict:
    """The manifest line of one written output; ``item.source_stat`` is the input's as it was read."""
    job = item.job
    return {
        "output": job.name,
        "map": job.map_target.name if job.map_target is not None else None,
        "spec": spec,
        "bytes": size,
        "source": str(job.source),
        "source_bytes": item.source_stat[0],
        "source_mtime_ns": item.source_stat[1],
        "written_ns": time.time_ns(),
    }


def read_source_stat(path: Path) -> tuple[int, int]:
    """``(bytes, mtime_ns)`` of an input: recorded when it is read, compared on resume."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def output_state(job: Job, record: dict | None, spec: str) -> str:
    """``"todo"``, ``"finished"`` (keep it under resume) or ``"conflict"`` (made by another spec)."""
    if not job.target.exists() or record is None or record.get("spec") is None:  # retired: made by nobody we know
        return "todo"
    if record["spec"] != spec:
        return "conflict"
    recorded = (record.get("bytes"), record.get("source_bytes"), record.get("source_mtime_ns"))
    try:
        unchanged = (job.target.stat().st_size, *read_source_stat(job.source)) == recorded
    except OSError:
        return "todo"
    has_map = job.map_target is None or (record.get("map") is not None and job.map_target.exists())
    return "finished" if unchanged and has_map else "todo"


def sort_out(
    jobs: list[Job], output_dir: Path, spec: str, resume: bool, overwrite: bool, records: dict[str, dict]
) -> tuple[list[Job], list[Job], str | None]:
    """``(to do, finished, problem)``: which outputs to make, which to keep, and why to refuse (or None).

    ``records`` is the folder's manifest as :func:`read_manifest` read it.
    """
    if overwrite:
        return jobs, [], None
    problem = None
    if not resume:
        existing = [path for job in jobs for path in (job.target, job.map_target) if path is not None and path.exists()]
        if existing:
            problem = (
                f"{len(existing)} output file(s) already exist in {output_dir} (first: {existing[0]}); pass --resume "
                "(resume=True) to keep the finished ones and do the rest, or --overwrite (overwrite=True) to redo them"
            )
        return jobs, [], problem
    states = {job.index: output_state(job, records.get(job.name), spec) for job in jobs}
    todo, finished, conflicts = (
        [job for job in jobs if states[job.index] == wanted] for wanted in ("todo", "finished", "conflict")
    )
    if conflicts:
        first = conflicts[0]
        problem = (
            f"{len(conflicts)} output(s) in {output_dir} were made by another defense (first: {first.target}, made by "
            f"{records[first.name]['spec']!r}, now {spec!r}); --resume keeps only outputs of the same spec: pass "
            "--overwrite (overwrite=True) to redo them, or choose another output folder"
        )
    return todo, finished, problem


def retire_existing(jobs: list[Job], manifest: Path) -> None:
    """Before an overwrite: a record with no spec for each existing output, so an interrupted overwrite resumes."""
    now = time.time_ns()
    append_manifest(
        manifest, [{"output": job.name, "spec": None, "written_ns": now} for job in jobs if job.target.exists()]
    )


def remove_stale_temporaries(jobs: list[Job]) -> None:
    """Delete the temporary files a killed run left beside these jobs' outputs (``.<name>.<random>.part``).

    Only the jobs' own temporaries: under torchrun each output, and so its temporary, has one owner.
    """
    outputs = {path for job in jobs for path in (job.target, job.map_target) if path is not None}
    for folder in {path.parent for path in outputs}:
        for stale in folder.glob(".*.part"):  # none in a folder that does not exist
            if folder / stale.name[1 : -len(".part")].rpartition(".")[0] in outputs:
                stale.unlink(missing_ok=True)


# --- writing -------------------------------------------------------------------------------------


@dataclass
class Decoded:
    """A decoded input (``image``, ``[3, H, W]`` uint8), JPEG bytes for the device decoder (``encoded``), or ``error``."""

    job: Job
    size: tuple[int, int] = (0, 0)  # (H, W)
    image: torch.Tensor | None = None
    encoded: torch.Tensor | None = None
    source_stat: tuple[int, int] = (0, 0)  # (bytes, mtime_ns) when read: a later change means redo
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # what the reader did (first frame only, 16 bits scaled)


def encode_and_write(job: Job, image: torch.Tensor, map_image: torch.Tensor | None, png_compression: int) -> int:
    """Encode and atomically write one output (and its map); the output's size in bytes (JPEG: quality 95)."""
    data = encode_image(image, job.target.suffix, png_compression=png_compression)
    writes = [(job.target, data)]
    if map_image is not None and job.map_target is not None:
        writes.append((job.map_target, encode_image(map_image, ".png", png_compression=png_compression)))
    for path, content in writes:
        try:
            atomic_write_bytes(path, content)
        except OSError as error:
            error.filename = str(path)  # the output, not its temporary file: what a failure message names
            raise
    return len(data)


# A full disk or quota, a read-only or failing file system: every later write would fail too.
STOPPING_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


class WriteFailure(RuntimeError):
    """An output could not be written (or recorded) for a reason that stops the run (:data:`STOPPING_ERRNOS`).

    What was written before it is whole and recorded, so ``resume`` finishes the run once the
    cause is fixed.
    """


def write_reason(path: Path, error: OSError, doing: str = "write") -> str:
    """A failed write in plain words, saying it is a write failure.

    Example:
        >>> write_reason(Path("out/a.png"), OSError(errno.ENOSPC, "No space left on device"))
        'write failure: cannot write out/a.png: no space left on device'
    """
    return f"write failure: cannot {doing} {path}: {(error.strerror or str(error)).lower()}"


class Writer:
    """Encodes and writes outputs in a thread pool; records a batch in the manifest once all of it is written.

    At most ``max_in_flight`` images, of at most ``max_pixels_in_flight`` pixels in all, wait for
    their writes (the oldest batch is waited for beyond that), so a fast defense cannot fill
    memory with encoded-to-be images. A write that fails for one file (permission denied, name
    too long) skips that image; one that no later write could escape (:data:`STOPPING_ERRNOS`),
    or a manifest that cannot be appended to, stops the run with :class:`WriteFailure`.
    """

    def __init__(
        self,
        manifest: Path,
        spec: str,
        threads: int,
        png_compression: int,
        max_in_flight: int,
        max_pixels_in_flight: int,
        progress: tqdm,
    ) -> None:
        self.manifest, self.spec, self.png_compression = manifest, spec, png_compression
        self.max_in_flight, self.max_pixels_in_flight, self.progress = max_in_flight, max_pixels_in_flight, progress
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lgs-defend-write")
        self.batches: deque[list[tuple[Decoded, Future]]] = deque()
        self.in_flight = self.pixels_in_flight = 0
        self.written: list[tuple[int, Path]] = []
        self.failed: list[tuple[int, Path, str]] = []
        self.stopped: str | None = None  # why the run must stop, once a write failed for good

    def submit(self, outputs: list[tuple[Decoded, torch.Tensor, torch.Tensor | None]]) -> None:
        """Queue one batch's outputs (item, image, map) for writing, then record the batches already written."""
        batch = [
            (item, self.pool.submit(encode_and_write, item.job, image, map_image, self.png_compression))
            for item, image, map_image in outputs
        ]
        self.batches.append(batch)
        self.in_flight += len(batch)
        self.pixels_in_flight += sum(math.prod(item.size) for item, _ in batch)
        self._record_written(self.max_in_flight, self.max_pixels_in_flight)

    def _record_written(self, most_in_flight: int, most_pixels: int) -> None:
        """Record written batches in order, waiting on the oldest while more than ``most_in_flight`` images
        (or ``most_pixels`` pixels) are in flight."""
        while self.batches:
            head = self.batches[0]
            within = self.in_flight <= most_in_flight and self.pixels_in_flight <= most_pixels
            if within and not all(future.done() for _, future in head):
                return
            wait([future for _, future in head])
            # Leaves the queue only once recorded: a Ctrl-C before that lets abort() record it (again, harmlessly).
            self._record(head)
            self.batches.popleft()
            self.in_flight -= len(head)
            self.pixels_in_flight -= sum(math.prod(item.size) for item, _ in head)
            if self.stopped is not None:
                raise WriteFailure(self.stopped)

    def _record(self, batch: list[tuple[Decoded, Future]], aborting: bool = False) -> None:
        records, written = [], []
        for item, future in batch:
            job = item.job
            if future.cancelled():
                continue
            try:
                size = future.result()
            except OSError as error:
                why = write_reason(Path(error.filename) if error.filename else job.target, error)
                self.failed.append((job.index, job.source, why))
                if error.errno in STOPPING_ERRNOS and self.stopped is None:
                    self.stopped = why
                continue
            except Exception:
                if aborting:  # the error being raised already says what went wrong
                    continue
                raise
            records.append(output_record(item, self.spec, size))
            written.append((job.index, job.target))
        try:
            append_manifest(self.manifest, records)
        except OSError as error:  # the files are whole but unrecorded: a resume redoes them
            self.stopped = self.stopped or write_reason(self.manifest, error, doing="append to")
        else:
            self.written += written
        self.progress.update(sum(not future.cancelled() for _, future in batch))

    def close(self) -> None:
        """Wait for every write and record it."""
        self._record_written(0, 0)
        self.pool.shutdown()

    def abort(self) -> None:
        """Finish the writes already queued, record what is whole; a second Ctrl-C drops the writes not started.

        What is queued was already defended and is at most ``max_in_flight`` images: finishing it
        costs a fraction of a second and spares a resume from redoing it. After a
        :class:`WriteFailure` the writes not started are dropped: they would fail the same way.
        """
        try:
            self.pool.shutdown(wait=True, cancel_futures=self.stopped is not None)
        except KeyboardInterrupt:  # the caller re-raises the first one
            self.pool.shutdown(wait=True, cancel_futures=True)
        finally:
            while self.batches:
                self._record(self.batches.popleft(), aborting=True)
