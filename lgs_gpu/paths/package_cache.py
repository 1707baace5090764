"""Ahead-of-time compiled CPU programs, kept in a per-machine cache folder: built once, loaded in milliseconds.

A program is a ``torch.export`` graph compiled by AOTInductor into a ``.pt2`` package (generated
C++ with OpenMP loops, built by the machine's C++ compiler). Building one takes seconds to tens of
seconds; loading one takes milliseconds, so a new process pays nothing once the cache holds it.

The folder is ``$LGS_GPU_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/lgs_gpu`` (``~/.cache/lgs_gpu``).
``LGS_GPU_CACHE_DIR=off`` switches the cache off: ``backend="auto"`` then uses the eager torch
path, and an explicit ``backend="compiled"`` builds into a temporary folder for this process only.
Packages sit under a subfolder named by everything that makes them invalid when it changes (the
torch version, the CPU's vector ISA, a hash of the source that defines the graphs), and are
written atomically (a temporary file, then ``os.replace``), so concurrent builders and
interrupted builds never leave a half-written package.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

CACHE_ENVIRONMENT_VARIABLE = "LGS_GPU_CACHE_DIR"
_OFF = "off"
_LOG = logging.getLogger("lgs_gpu")


def cache_folder() -> Path | None:
    """The cache's root folder, or ``None`` when ``LGS_GPU_CACHE_DIR=off``.

    Example:
        >>> import os
        >>> saved = os.environ.get("LGS_GPU_CACHE_DIR")
        >>> os.environ["LGS_GPU_CACHE_DIR"] = "~/scratch/lgs"
        >>> cache_folder() == Path.home() / "scratch" / "lgs"
        True
        >>> os.environ["LGS_GPU_CACHE_DIR"] = "off"
        >>> cache_folder() is None
        True
        >>> _ = os.environ.pop("LGS_GPU_CACHE_DIR") if saved is None else os.environ.update(LGS_GPU_CACHE_DIR=saved)
    """
    configured = os.environ.get(CACHE_ENVIRONMENT_VARIABLE, "").strip()
    if configured.lower() == _OFF:
        return None
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "lgs_gpu"


def compiler_missing_reason() -> str | None:
    """Why AOTInductor cannot build on this machine (no C++ compiler, no AOT runtime), or ``None``."""
    if not hasattr(torch._C, "_aoti"):
        return f"this torch build ({torch.__version__}) has no AOTInductor runtime"
    if not compiler_on_path():
        return "no C++ compiler on PATH (AOTInductor needs one to build the CPU programs)"
    return None


@functools.cache
def compiler_on_path() -> bool:
    """Whether ``$CXX`` or a usual C++ compiler is on ``PATH`` (looked up once per process)."""
    return any(shutil.which(name) for name in (os.environ.get("CXX") or "c++", "g++", "clang++"))


def _fingerprint(sources: tuple[Path, ...]) -> str:
    # Every call asks (three times per LGS call), so the hash is kept per version of the files.
    return _fingerprint_of(tuple((source, source.stat().st_mtime_ns, source.stat().st_size) for source in sources))


@functools.lru_cache(maxsize=16)
def _fingerprint_of(versions: tuple[tuple[Path, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for source, _, _ in versions:
        digest.update(source.read_bytes())
    isa = torch.backends.cpu.get_cpu_capability()
    return f"torch-{torch.__version__.replace('+', '_')}-{platform.machine()}-{isa}-{digest.hexdigest()[:12]}"


class PackageCache:
    """Named AOT programs of one source: loaded from the cache folder, built there when missing.

    Args:
        subfolder: the cache's subfolder for these programs (e.g. ``"cpu-kernels"``).
        sources: the files defining the graphs; a change in any of them invalidates every package.
    """

    def __init__(self, subfolder: str, sources: tuple[Path, ...]) -> None:
        self.subfolder = subfolder
        self.sources = sources
        # Keyed by where the package lives: moving or switching the cache mid-process loads anew.
        self._loaded: dict[Path, Callable[[list[torch.Tensor]], list[torch.Tensor]]] = {}
        self._lock = threading.Lock()
        self._scratch: tempfile.TemporaryDirectory | None = None

    def folder(self) -> Path | None:
        """Where this machine's packages live now, or ``None`` when the cache is off."""
        root = cache_folder()
        return None if root is None else root / self.subfolder / _fingerprint(self.sources)

    def cached(self, name: str) -> bool:
        """Whether the package ``name`` is built in the cache folder."""
        folder = self.folder()
        return folder is not None and (folder / f"{name}.pt2").is_file()

    def program(self, name: str, build: Callable[[Path], None]) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
        """The program ``name``: ``run(inputs) -> outputs`` (flat lists of tensors).

        ``build(path)`` writes the package to ``path``; it runs only when neither this process
        nor the cache folder has the package yet.
        """
        with self._lock:  # one build per package per process, however many threads ask
            path = self._package(name, build)
            if path not in self._loaded:
                self._loaded[path] = _load(path)
            return self._loaded[path]

    def _package(self, name: str, build: Callable[[Path], None]) -> Path:
        folder = self.folder()
        if folder is None:  # cache off: this process only
            if self._scratch is None:
                self._scratch = tempfile.TemporaryDirectory(prefix="lgs_gpu-packages-")
            folder = Path(self._scratch.name)
        path = folder / f"{name}.pt2"
        if path.is_file():
            return path
        folder.mkdir(parents=True, exist_ok=True)
        _LOG.warning(
            "lgs_gpu: building the CPU program %r once (tens of seconds) into %s; later processes load it in "
            "milliseconds (`lgs-gpu warmup` builds ahead, %s moves the cache or switches it off)",
            name, folder, CACHE_ENVIRONMENT_VARIABLE,
        )  # fmt: skip
        started = time.perf_counter()
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part.pt2")
        os.close(handle)
        try:
            build(Path(temporary))
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _LOG.info("lgs_gpu: built %s in %.1f s", path.name, time.perf_counter() - started)
        return path


def _load(path: Path) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    # The runtime's loader directly: ``torch._inductor.aoti_load_package`` wraps the same object but
    # imports the whole compiler first (about a second), which a new process would pay on its first call.
    try:
        loader = torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, -1)
    except (AttributeError, TypeError):  # another torch's signature: the public route
        from torch._inductor import aoti_load_package

        compiled = aoti_load_package(str(path))
        return lambda inputs: list(compiled(*inputs))
    return loader.run
