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

A package is native code that the process loads and runs, so, as ssh does with ``~/.ssh`` and
pip with its cache, the cache is trusted only when nobody else can change it: every folder from
the cache root down to the package, and the package itself, must be owned by this user (or root)
and not writable by group or others, and no folder above the root may let others rename it
(writable by others without the sticky bit, as ``/tmp`` has). Otherwise :func:`untrusted_reason`
says why and nothing is loaded from or built into it. The folders are created ``0700``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .torch_internals import aoti_package_runner

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


class UntrustedCache(PermissionError):
    """The cache folder or a package in it could be changed by another user: nothing is loaded from it."""


def _owner(uid: int) -> str:
    try:
        import pwd  # POSIX only, like the ownership check itself

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _trusted_owner(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def untrusted_reason(root: Path, below: tuple[Path, ...] = ()) -> str | None:
    """Why native code must not be loaded from the cache ``root`` (and the existing ``below`` it), or ``None``.

    ``below`` are folders and packages under ``root``; those that do not exist yet are skipped
    (they will be created private). The owner must be this user or root, and group and others
    must not be able to write; a folder above ``root`` must not let others rename it.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     os.chmod(folder, 0o777)
        ...     print(untrusted_reason(Path(folder)).split(":")[0].endswith("mode 0777)"))
        True
    """
    fix = f"set {CACHE_ENVIRONMENT_VARIABLE} to a folder only you can write"
    for path in (root, *below):
        try:
            status = path.stat()
        except FileNotFoundError:
            continue
        except OSError as error:  # not a folder, not searchable: nothing can be built or loaded there
            return f"cannot check {path}: {(error.strerror or str(error)).lower()}; {fix}"
        if not _trusted_owner(status.st_uid):
            return (
                f"{path} is owned by {_owner(status.st_uid)}, not by you ({_owner(os.geteuid())}): its owner could "
                f"replace the native code loaded from it; {fix}"
            )
        if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return (
                f"{path} is writable by {'others' if status.st_mode & stat.S_IWOTH else 'its group'} (mode "
                f"{stat.S_IMODE(status.st_mode):04o}): they could replace the native code loaded from it; "
                f"`chmod go-w {path}`, or {fix}"
            )
    for parent in root.resolve().parents:
        try:
            status = parent.stat()
        except OSError:
            continue
        if not _trusted_owner(status.st_uid):
            why = f"owned by {_owner(status.st_uid)}"
        # Group or others who can write a folder without the sticky bit can rename what is in it.
        elif status.st_mode & (stat.S_IWOTH | stat.S_IWGRP) and not status.st_mode & stat.S_ISVTX:
            why = f"writable by group or others without the sticky bit (mode {stat.S_IMODE(status.st_mode):04o})"
        else:
            continue
        return f"{parent}, a folder above the cache {root}, is {why}: the cache could be swapped for another; {fix}"
    return None


def make_private_folders(path: Path) -> None:
    """Create ``path`` and its missing parents, each ``0700`` whatever the umask (``mkdir(parents=True)`` applies the mode to the last only)."""
    for folder in reversed([path, *path.parents]):
        if not folder.exists():
            folder.mkdir(mode=0o700, exist_ok=True)


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
    """Named native programs of one source: loaded from the cache folder, built there when missing.

    Args:
        subfolder: the cache's subfolder for these programs (e.g. ``"cpu-kernels"``).
        sources: the files defining the programs; a change in any of them invalidates every package.
        suffix: the packages' file suffix (``.pt2``: AOTInductor packages; ``.so``: shared libraries).
        loader: a package's path -> the loaded program (default: AOTInductor's runner).
    """

    def __init__(
        self,
        subfolder: str,
        sources: tuple[Path, ...],
        suffix: str = ".pt2",
        loader: Callable[[Path], Any] | None = None,
    ) -> None:
        self.subfolder = subfolder
        self.sources = sources
        self.suffix = suffix
        self.loader = loader or _load
        # Keyed by where the package lives: moving or switching the cache mid-process loads anew.
        self._loaded: dict[Path, Callable[[list[torch.Tensor]], list[torch.Tensor]]] = {}
        self._lock = threading.Lock()
        self._trust: dict[Path, str | None] = {}  # folder -> why it is not trusted (None: it is)
        self._scratch: tempfile.TemporaryDirectory | None = None

    def folder(self) -> Path | None:
        """Where this machine's packages live now, or ``None`` when the cache is off."""
        root = cache_folder()
        return None if root is None else root / self.subfolder / _fingerprint(self.sources)

    def untrusted_reason(self) -> str | None:
        """Why this cache must not be used (see :func:`untrusted_reason`), or ``None`` (also when it is off).

        Checked once per folder per process, as ssh checks its files once per connection: a
        process that found the folder private keeps using it.
        """
        folder = self.folder()
        if folder is None:
            return None
        if folder not in self._trust:
            root = cache_folder()
            self._tighten(root, folder)
            self._trust[folder] = untrusted_reason(root, (root / self.subfolder, folder))
        return self._trust[folder]

    def _tighten(self, root: Path, folder: Path) -> None:
        """``chmod go-w`` the folders of this package's making that this user owns: earlier versions created
        them with the umask's mode (0775 under 002). A root the user chose (LGS_GPU_CACHE_DIR) is theirs to set."""
        default_root = not os.environ.get(CACHE_ENVIRONMENT_VARIABLE, "").strip()
        for own in ((root,) if default_root else ()) + (root / self.subfolder, folder):
            try:
                status = own.stat()
            except OSError:
                continue
            if status.st_uid == os.geteuid() and status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                mode = stat.S_IMODE(status.st_mode)
                own.chmod(mode & ~0o022)
                message = "lgs_gpu: made the program cache folder %s private to you (mode %04o -> %04o)"
                _LOG.warning(message, own, mode, mode & ~0o022)

    def cached(self, name: str) -> bool:
        """Whether the package ``name`` is built in the cache folder."""
        folder = self.folder()
        return folder is not None and (folder / f"{name}{self.suffix}").is_file()

    def program(
        self, name: str, build: Callable[[dict[str, Path]], None]
    ) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
        """The program ``name``: ``run(inputs) -> outputs`` (flat lists of tensors); see :meth:`programs`."""
        return self.programs([name], build)[0]

    def programs(
        self, names: list[str], build: Callable[[dict[str, Path]], None]
    ) -> list[Callable[[list[torch.Tensor]], list[torch.Tensor]]]:
        """The programs ``names``, in order: each ``run(inputs) -> outputs`` (flat lists of tensors).

        ``build(targets)`` writes each missing package ``name`` to the temporary path
        ``targets[name]``, all in one call; it runs only when neither this process nor the cache
        folder has them. A package appears in the cache whole (moved into place) or not at all.
        """
        folder = self.folder()
        if folder is not None:
            loaded = [self._loaded.get(folder / f"{name}{self.suffix}") for name in names]
            if all(program is not None for program in loaded):  # loaded (and checked) earlier in this process
                return loaded
        with self._lock:  # one build per package per process, however many threads ask
            paths = self._packages(names, build)
            for path in paths:
                if path not in self._loaded:
                    self._loaded[path] = self.loader(path)
            return [self._loaded[path] for path in paths]

    def _packages(self, names: list[str], build: Callable[[dict[str, Path]], None]) -> list[Path]:
        root, folder = cache_folder(), self.folder()
        if folder is None:  # cache off: this process only
            if self._scratch is None:
                self._scratch = tempfile.TemporaryDirectory(prefix="lgs_gpu-packages-")
            folder = Path(self._scratch.name)
        paths = {name: folder / f"{name}{self.suffix}" for name in names}
        if root is not None:
            self._tighten(root, folder)
            for path in paths.values():
                self._check(root, folder, path)
        missing = [name for name, path in paths.items() if not path.is_file()]
        if not missing:
            return list(paths.values())
        if root is not None:
            make_private_folders(folder)  # private from the start (under umask 002 or 000 too)
            self._check(root, folder, folder)  # again: a folder someone else made meanwhile is refused
        _remove_abandoned_parts(folder, self.suffix)
        _LOG.warning(
            "lgs_gpu: building the CPU program%s %s once (tens of seconds) into %s; later processes load them in "
            "milliseconds (`lgs-gpu warmup` builds ahead, %s moves the cache or switches it off)",
            "s" if len(missing) > 1 else "",
            ", ".join(map(repr, missing)),
            folder,
            CACHE_ENVIRONMENT_VARIABLE,
        )
        started = time.perf_counter()
        temporaries: dict[str, Path] = {}
        try:
            for name in missing:
                handle, temporary = tempfile.mkstemp(
                    dir=folder, prefix=f".{name}.{_builder_tag()}.", suffix=_PART + self.suffix
                )
                os.close(handle)
                temporaries[name] = Path(temporary)
            build(dict(temporaries))
            for name, temporary in temporaries.items():
                if temporary.stat().st_size == 0:
                    raise RuntimeError(f"the build wrote nothing for {name}")
                os.replace(temporary, paths[name])
        except BaseException:
            for temporary in temporaries.values():
                temporary.unlink(missing_ok=True)
            raise
        _LOG.info("lgs_gpu: built %s in %.1f s", ", ".join(missing), time.perf_counter() - started)
        return list(paths.values())

    def _check(self, root: Path, folder: Path, path: Path) -> None:
        reason = untrusted_reason(root, (root / self.subfolder, folder, path))
        if reason is not None:
            raise UntrustedCache(f"refusing the CPU program cache: {reason}")


_PART = ".part"  # before the package's suffix: ".gradient-float32.<host>-<pid>.<random>.part.pt2"


def _builder_tag() -> str:
    """``host-pid`` of this process, in the names of its partial packages, so that a later build can tell
    those whose builder died (killed mid-build) from those another live process is writing."""
    host = "".join(character if character.isalnum() else "_" for character in socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def _remove_abandoned_parts(folder: Path, suffix: str = ".pt2") -> None:
    """Delete partial packages left by builders on this machine that are no longer running."""
    host = _builder_tag().rsplit("-", 1)[0]
    for part in folder.glob(f".*{_PART}{suffix}"):
        fields = part.name.split(".")  # "", name, host-pid, random, "part", suffix
        if len(fields) != 6 or "-" not in fields[2]:
            continue
        builder_host, _, pid = fields[2].rpartition("-")
        if builder_host != host or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)  # signal 0: only whether the builder still runs
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except OSError:  # it runs, owned by someone else
            pass


def _load(path: Path) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    return aoti_package_runner(str(path))
