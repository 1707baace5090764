"""What is already in a ``lgs-gpu defend`` output folder: the manifest, and resume or overwrite.

The manifest records which defense made each output. Each process appends to its own file in the
output folder, ``lgs-defend-manifest.rank<R>.jsonl`` (rank 0 without ``torchrun``), so that
processes never write the same file; one JSON line per output::

    {"bytes": 160139, "map": null, "output": "photos/a.png", "source": "photos/a.jpg", "source_bytes": 24576,
     "source_mtime_ns": 1795651200000000000, "spec": "lgs:2.3", "written_ns": 1795651260123456789}

``output`` is relative to the output folder (it keys the records); ``spec`` is the defense's spec
string (a custom defense without one is recorded by its class); ``map`` names the map file when
one was written; ``bytes`` is the output's size; ``source_bytes`` and ``source_mtime_ns`` are the
input's as it was read. A record with ``spec`` null *retires* its output (see ``overwrite``).
A batch's lines are appended in one ``write`` and fsync'd after its files are written, so the
manifest never names a file that is not whole. Across every rank's file, the record with the
newest ``written_ns`` counts, so a resume may use another number of processes than the run it
finishes; a line torn by a hard kill is ignored (its output is redone).

What a run does with outputs that exist (``docs/defend.md``, "The resume manifest"):

* default: refuse to start when any output (or map) already exists: nothing is overwritten by
  surprise;
* ``resume``: an existing output is *kept* when its newest record names this spec, its size is
  the recorded size, its input's size and modification time are the recorded ones, and (with
  maps) its map was written; *redone* when it has no record (written just before a kill), when it
  or its input changed, or when its map is missing; and the run is *refused* when an output was
  made by another spec (``overwrite`` redoes those): a folder holding two defenses' outputs would
  look like one;
* ``overwrite``: every output is redone; existing ones are first retired in the manifest, so that
  an interrupted overwrite can be finished with ``resume`` and the new spec.

Every check happens before any work. A process killed outright can leave temporary files
(``.<name>.<random>.part``) beside its outputs: the next run into the folder deletes its own.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

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
    """Append ``records`` as JSON lines in one ``write`` (O_APPEND) and fsync them.

    One call per finished batch: a batch's lines land together, and a reader ignores a line
    torn by a hard kill (its output is then redone).
    """
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
    paths = set()
    for name, record in records.items():
        output = output_dir / name
        paths.add(output.resolve())
        if isinstance(record.get("map"), str):
            paths.add(output.with_name(record["map"]).resolve())
    return paths


def output_record(job: Job, source_stat: tuple[int, int], spec: str, size: int) -> dict:
    """The manifest line of one written output; ``source_stat`` is the input's as it was read."""
    return {
        "output": job.name,
        "map": job.map_target.name if job.map_target is not None else None,
        "spec": spec,
        "bytes": size,
        "source": str(job.source),
        "source_bytes": source_stat[0],
        "source_mtime_ns": source_stat[1],
        "written_ns": time.time_ns(),
    }


def read_source_stat(path: Path) -> tuple[int, int]:
    """``(bytes, mtime_ns)`` of an input: recorded when it is read, compared on resume."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def output_state(job: Job, record: dict | None, spec: str) -> str:
    """``"todo"``, ``"finished"`` (keep it under resume) or ``"conflict"`` (made by another spec)."""
    if not job.target.exists():
        return "todo"
    if record is None or record.get("spec") is None:  # unrecorded or retired: made by nobody we know
        return "todo"
    if record["spec"] != spec:
        return "conflict"
    try:
        unchanged = job.target.stat().st_size == record.get("bytes") and read_source_stat(job.source) == (
            record.get("source_bytes"),
            record.get("source_mtime_ns"),
        )
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
    if not resume:
        return jobs, [], _existing_outputs(jobs, output_dir)
    states = {job.index: output_state(job, records.get(job.name), spec) for job in jobs}
    todo, finished, conflicts = (
        [job for job in jobs if states[job.index] == wanted] for wanted in ("todo", "finished", "conflict")
    )
    return todo, finished, _other_specs(conflicts, records, output_dir, spec)


def _existing_outputs(jobs: list[Job], output_dir: Path) -> str | None:
    """Why a run that neither resumes nor overwrites cannot start here, or None."""
    existing = [path for job in jobs for path in (job.target, job.map_target) if path is not None and path.exists()]
    if not existing:
        return None
    return (
        f"{len(existing)} output file(s) already exist in {output_dir} (first: {existing[0]}); pass --resume "
        "(resume=True) to keep the finished ones and do the rest, or --overwrite (overwrite=True) to redo them"
    )


def _other_specs(conflicts: list[Job], records: dict[str, dict], output_dir: Path, spec: str) -> str | None:
    """Why a resume cannot keep these outputs made by another spec, or None."""
    if not conflicts:
        return None
    first = conflicts[0]
    return (
        f"{len(conflicts)} output(s) in {output_dir} were made by another defense (first: {first.target}, made by "
        f"{records[first.name]['spec']!r}, now {spec!r}); --resume keeps only outputs of the same spec: pass "
        "--overwrite (overwrite=True) to redo them, or choose another output folder"
    )


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
    names_by_folder: dict[Path, set[str]] = {}
    for job in jobs:
        for path in (job.target, job.map_target):
            if path is not None:
                names_by_folder.setdefault(path.parent, set()).add(path.name)
    for folder, names in names_by_folder.items():
        if folder.is_dir():
            for stale in folder.glob(".*.part"):
                if stale.name[1 : -len(".part")].rpartition(".")[0] in names:
                    stale.unlink(missing_ok=True)
