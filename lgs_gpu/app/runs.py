"""What long, resumable, shardable runs share (``lgs-gpu evaluate``, ``lgs-gpu certify``, ``lgs-gpu defend``).

* :class:`Distributed`: rank and world size under ``torchrun`` (gloo on CPU, NCCL on CUDA);
  :func:`rank_device` gives each rank its own GPU.
* :func:`conditions` and :func:`check_conditions`: a run's folder keeps the conditions its cached
  work was made under in ``conditions.json``, and a resume under other ones is refused: the
  attacks amplify last-bit differences (thread count, CPU, torch build) into other results.
* :func:`session`: the skeleton every run shares: threads pinned (and restored), the conditions
  checked, the model and images loaded, then this rank's batches with their labels, each with the
  units of work to run on it, on one progress bar (:meth:`Session.work`); at the end rank 0 reads
  every rank's records back (:meth:`Session.gather`).
* :func:`load_images`, :func:`check_output_folder`: the data and output checks every run makes.
* :func:`batch_identity`, :func:`read_cached` and :func:`store`: each cached unit of work (a record,
  a batch of adversarial images, a patch) stores what it was made from (``depends_on``: the attack,
  its fraction, the defense, and a digest of the batch's images), and a resume reuses it only when
  that matches; a truncated or foreign file is named and recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import platform
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

from .. import data
from ..core.files import atomic_write_bytes
from ..models import load_model
from ..smoothing import backend_info
from .configs import RunInputs

_LOG = logging.getLogger("lgs_gpu")


def rank_device(device: str) -> str:
    """Under torchrun, ``"cuda"`` means this rank's GPU (``LOCAL_RANK``), so that ranks on one machine share none.

    ``"cuda"`` becomes ``"cuda:<LOCAL_RANK>"`` and that GPU becomes the current one
    (``torch.cuda.set_device``), so a plain ``"cuda"`` used later (a config's device, recorded
    alike by every rank) also means this rank's GPU. An explicit index (``"cuda:0"``), another
    device, and one process (``WORLD_SIZE`` 1 or unset) are left as they are. Call it before
    :class:`Distributed`, so that NCCL starts on the rank's own GPU.

    Example:
        >>> rank_device("cpu")
        'cpu'
    """
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        torch.cuda.set_device(device)
    return device


class Distributed:
    """Rank and world size under torchrun (one process otherwise), and a barrier."""

    def __init__(self, device: str, shard: bool = True) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.started, self.shard = False, shard
        if not shard:  # a run that does not shard (calibrate) is one process under torchrun too
            self.active, self.rank, self.world = False, 0, 1
            return
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
            self.started = True
        self.active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1

    def barrier(self) -> None:
        if self.active:
            self.dist.barrier()

    def close(self) -> None:
        if self.started:
            self.dist.destroy_process_group()


def cpu_model() -> str:
    """The processor's model name (oneDNN picks its kernels by it), or the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.machine()


def numerics() -> dict:
    """What this machine and torch build contribute to a run's numbers."""
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu_model(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),  # read by oneDNN when torch loads
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        # The compiled and eager CPU paths of LGS round differently (within the parity tolerances).
        "lgs_cpu_backend": backend_info("cpu")["auto"],
    }


def conditions(config: RunInputs, *fields: str) -> dict:
    """What every cached work of a run folder depends on: the run's inputs (not ``workers``: the pixels are the
    same), the config's ``fields``, its device and threads, and this machine's :func:`numerics`."""
    names = [name for name in config.inputs() if name != "workers"] + [*fields, "device", "threads"]
    return {name: getattr(config, name) for name in names} | numerics()


def check_conditions(folder: str | Path, now: dict, rank: int) -> None:
    """Refuse to resume into ``folder`` when its cached work was made under other conditions.

    The first run writes ``conditions.json`` (rank 0); later runs compare with it.
    """
    path = Path(folder) / "conditions.json"
    if path.exists():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(before, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:  # JSONDecodeError is a ValueError
            raise ValueError(
                f"{path} is unreadable ({error}): it says what this folder's cached work was made under, so nothing "
                "there can be trusted without it; use a new output folder (or delete the folder to start over)"
            ) from error
        changed = {key: (before.get(key), value) for key, value in now.items() if before.get(key) != value}
        if changed:
            listed = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changed.items())
            raise ValueError(f"{folder} holds work made under other conditions ({listed}); use a new output folder")
    elif rank == 0:
        atomic_write_bytes(path, json.dumps(now, indent=1).encode())


def check_output_folder(folder: str | Path) -> None:
    """Create ``folder`` and check that it is writable (``ValueError`` otherwise), before any work."""
    output = Path(folder)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output folder {output} is a file, not a folder: give a folder for the outputs")
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"output folder {output} is not writable: {error}") from error


def load_images(
    folder: str | None, size: int, imagenet: bool = False, imagenet_labels: str | None = None, limit: int | None = None
) -> data.ImageSet | data.ImageFiles:
    """The bundled photographs (``folder`` None, decoded: eight of them) or an image folder, listed and labelled
    but not decoded (:func:`lgs_gpu.data.image_files`: runs read it batch by batch, so memory does not grow
    with the number of images); ``imagenet`` requires ground-truth labels."""
    if folder is not None:
        return data.image_files(folder, size, limit, labels_file=imagenet_labels, require_labels=imagenet)
    images = data.bundled(size)
    if limit is not None:
        images = images.subset(list(range(min(limit, len(images)))))
    return images


def label_source(images: data.ImageSet | data.ImageFiles) -> str:
    """Where a run's labels come from: the layout's ground truth, or the model's clean predictions."""
    if images.labels is not None:
        return images.label_source or "ground truth"
    return "the model's clean top-1 prediction (no ground truth for these images)"


def batch_identity(batch: data.Batch, labels: torch.Tensor | None = None) -> str:
    """A digest of which images a batch holds: their names, decoded pixels and labels.

    Cached work is keyed by it, so a resume after files were added to, removed from or changed
    in the data folder recomputes the batches whose images differ instead of reusing others'.
    """
    digest = hashlib.sha256()
    digest.update("\0".join(batch.names).encode())
    digest.update(batch.images.cpu().contiguous().numpy().tobytes())
    if labels is not None:  # on the run's device (CUDA in a GPU run): bytes come from a CPU copy
        digest.update(labels.to("cpu", torch.int64).numpy().tobytes())
    return digest.hexdigest()[:32]


def record_path(folder: str | Path, key: str, index: int) -> Path:
    """Where a run in ``folder`` keeps the record of batch ``index`` of the work ``key`` (a folder name)."""
    return Path(folder) / "records" / key / f"batch-{index:05d}.json"


def load(path: Path) -> Any:
    """Cached work as :func:`store` wrote it: JSON (a ``.json`` path) or tensors."""
    return (
        json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else torch.load(path, weights_only=True)
    )


def store(path: Path, work: dict) -> None:
    """Write cached work atomically: a record as JSON (a ``.json`` path), tensors as a torch file."""
    if path.suffix == ".json":
        atomic_write_bytes(path, json.dumps(work).encode())
    else:
        buffer = io.BytesIO()
        torch.save(work, buffer)
        atomic_write_bytes(path, buffer.getvalue())


def read_cached(path: Path, depends_on: dict, command: str) -> Any:
    """What :func:`load` read when ``path`` holds whole work made under ``depends_on`` (its ``"depends_on"``
    entry), else ``None``: missing, or (said in a warning naming the file, for ``lgs-gpu command``) truncated,
    malformed or made from other inputs, so the caller recomputes it."""
    if not path.exists():
        return None
    try:
        stored = load(path)
        stored_depends_on = stored.get("depends_on") if isinstance(stored, dict) else None
    except Exception as error:  # truncated JSON or tensor file, a foreign file: recompute it
        why = f"{path} is unreadable ({type(error).__name__}: {str(error).splitlines()[0][:120]})"
    else:
        if stored_depends_on == depends_on:
            return stored
        if not isinstance(stored_depends_on, dict):
            why = f"{path} does not say what it was made from (an older version's file)"
        else:
            changed = sorted(
                key for key in {*depends_on, *stored_depends_on} if depends_on.get(key) != stored_depends_on.get(key)
            )
            why = f"{path} was made under other conditions ({', '.join(changed)} differ)"
    _LOG.warning("lgs-gpu %s: %s; recomputing it", command, why)
    return None


T = TypeVar("T")


@dataclass
class Session:
    """A started run: its config and :func:`conditions`, this process's rank among the run's, the model and the images."""

    config: Any  # a RunInputs with output_dir, device, threads
    conditions: dict
    runtime: Distributed
    model: Any
    images: data.ImageSet | data.ImageFiles

    def work(
        self,
        batch_size: int,
        units: Sequence[T],
        name: Callable[[T], str],
        desc: str,
        progress: bool,
    ) -> Iterator[tuple[data.Batch, torch.Tensor, str, T]]:
        """This rank's batches, each with its labels on the CPU (its ground truth, else the model's clean top-1
        prediction) and its :func:`batch_identity`, and for each batch every unit of work in turn: every unit runs
        on a batch before the next is decoded, so memory does not grow with the number of images. Counted on one
        progress bar, by ``name(unit)``."""
        count = data.batch_count(len(self.images), batch_size)
        mine = [index for index in range(count) if index % self.runtime.world == self.runtime.rank]
        rank = f" (rank {self.runtime.rank})" if self.runtime.shard else ""
        config = self.config
        with tqdm(total=len(units) * len(mine), desc=desc + rank, unit="batch", disable=not progress) as bar:
            for batch in self.images.batches(batch_size, mine, config.decode_workers()):
                if batch.labels is not None:
                    labels = batch.labels
                elif batch.names:
                    labels = self.model.predict(batch.images.to(config.device), batch_size)[0].cpu()
                else:  # every file of the batch failed to decode: nothing to predict
                    labels = torch.empty(0, dtype=torch.long)
                identity = batch_identity(batch, labels)
                for unit in units:
                    bar.set_postfix_str(name(unit))
                    yield batch, labels, identity, unit
                    bar.update()

    def gather(self, keys: Sequence[str], batch_size: int) -> list[list[dict]] | None:
        """Wait for every rank's work; then rank 0, which writes the results, reads the records of every batch
        of each of ``keys`` (:func:`record_path`); the other ranks get ``None``."""
        self.runtime.barrier()
        if self.runtime.rank != 0:
            return None
        count = data.batch_count(len(self.images), batch_size)
        return [[load(record_path(self.config.output_dir, key, index)) for index in range(count)] for key in keys]

    def seen(self, records: list[dict]) -> dict:
        """The images the records of one pass over the batches hold, then the files skipped and the reader's
        notes: the folder's, then each batch's."""
        return {
            "count": sum(len(record["images"]) for record in records),
            "names": [name for record in records for name in record["images"]],
            "skipped": self.images.skipped + [tuple(item) for record in records for item in record.get("skipped", [])],
            "notes": self.images.notes + [tuple(item) for record in records for item in record.get("notes", [])],
        }


@contextmanager
def session(config: RunInputs, conditions: dict, shard: bool = True) -> Iterator[Session]:
    """Start a run: its CPU threads pinned to ``config.threads`` (restored after), its folder's conditions checked
    (:func:`check_conditions`), then the model and the images loaded; under torchrun each rank on its own GPU
    and every ``world``-th batch (``shard``)."""
    # "cuda": this rank's GPU from here on
    runtime = Distributed(rank_device(config.device) if shard else config.device, shard=shard)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(config.threads)
        check_conditions(config.output_dir, conditions, runtime.rank)
        runtime.barrier()
        model = load_model(config.model, config.weights, config.device)
        images = load_images(config.data, model.input_size, config.imagenet, config.imagenet_labels, config.limit)
        yield Session(config, conditions, runtime, model, images)
    finally:
        torch.set_num_threads(threads)
        runtime.close()
