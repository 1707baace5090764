"""The parts of torch below its public API that the package reads, each behind a guard.

Every function here answers on every supported torch; where this torch lacks what it reads, it
gives the answer that keeps results correct (at some cost in speed or in what a graph holds) and
records why in :func:`degraded`, which ``lgs-gpu info`` prints. Nothing here imports Inductor
until a compiler is at work.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

_DEGRADED: dict[str, str] = {}


def degraded() -> dict[str, str]:
    """What this torch lacks of the internals the package reads, and what the package does instead.

    Checks each internal (importing Inductor's ``virtualized`` module, about a second); the others are
    resolved when this module is imported.

    Example:
        >>> isinstance(degraded(), dict)
        True
    """
    try:
        import torch._inductor.virtualized as virtualized
    except ImportError:
        virtualized = None
    present = {
        "torch._inductor.virtualized.V.aot_compilation": virtualized is not None
        and hasattr(virtualized.V, "aot_compilation"),
        "torch._C._aoti.AOTIModelPackageLoader": hasattr(getattr(torch._C, "_aoti", None), "AOTIModelPackageLoader"),
    }
    for what, found in present.items():
        if not found:
            _degrade(what)
    return dict(_DEGRADED)


# What the package does where this torch lacks an internal.
_INSTEAD = {
    "torch._subclasses.fake_tensor.is_fake": "fake tensors are told by their class name",
    "torch.compiler.is_exporting": "a torch.export trace is treated as a torch.compile trace (the exported graph "
    "still holds the lgs_gpu operators)",
    "torch._inductor.virtualized.V.aot_compilation": "every Inductor compile of LGS on CPU compiles its traced form "
    "(no call into the cached CPU programs)",
    "torch.onnx._internal.exporter._flags": "under the ONNX exporter's dynamo capture LGS is seen as torch.compile; "
    "the export then refuses the lgs_gpu operator instead of writing standard ops",
    "torch._C._aoti.AOTIModelPackageLoader": "packages load through torch._inductor.aoti_load_package (imports "
    "Inductor)",
}


def _degrade(what: str) -> None:
    _DEGRADED.setdefault(what, f"torch {torch.__version__} has no {what}: {_INSTEAD[what]}")


# Resolved once, at import: code that dynamo traces must not import (a failed import there is a compile error).
try:
    from torch._subclasses.fake_tensor import is_fake as _is_fake
except ImportError:
    _is_fake = None
    _degrade("torch._subclasses.fake_tensor.is_fake")
_is_exporting = getattr(torch.compiler, "is_exporting", None)
if _is_exporting is None:
    _degrade("torch.compiler.is_exporting")
try:
    from torch.onnx._internal.exporter import _flags as _onnx_flags  # light: not the exporter itself
except ImportError:
    _onnx_flags = None
    _degrade("torch.onnx._internal.exporter._flags")


def is_fake(x: torch.Tensor) -> bool:
    """Whether ``x`` is a fake tensor (a tracer's stand-in with shapes and no data)."""
    if _is_fake is None:
        return any(cls.__name__ == "FakeTensor" for cls in type(x).__mro__)
    return _is_fake(x)


def exporting() -> bool:
    """Whether ``torch.export`` is tracing (``torch.compiler.is_exporting``, public from torch 2.7)."""
    return False if _is_exporting is None else _is_exporting()


def aot_compiling() -> bool:
    """Whether AOTInductor is compiling (Inductor's ``V.aot_compilation``); call only while a compiler traces."""
    try:
        from torch._inductor.virtualized import V

        return bool(V.aot_compilation)
    except (ImportError, AttributeError):
        # Assume it is: a package then holds the traced form, which needs nothing of this package.
        _degrade("torch._inductor.virtualized.V.aot_compilation")
        return True


def onnx_exporter_flag() -> bool:
    """The ONNX exporter's own flag, which dynamo reads while it traces (where ``is_in_onnx_export`` reads False)."""
    return bool(getattr(_onnx_flags, "_is_onnx_exporting", False))


def is_operator_overload(target: object) -> bool:
    """Whether an FX node's target is an operator overload (``torch.ops.namespace.name.overload``)."""
    overload = getattr(getattr(torch, "_ops", None), "OpOverload", None)
    return overload is not None and isinstance(target, overload)


def aoti_package_runner(path: str) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    """``run(inputs) -> outputs`` of an AOTInductor package on CPU.

    The runtime's loader directly: ``torch._inductor.aoti_load_package`` wraps the same object but
    imports the whole compiler first (about a second), which a new process would pay on its first call.
    """
    loader_class = getattr(getattr(torch._C, "_aoti", None), "AOTIModelPackageLoader", None)
    try:  # (path, model name, run single-threaded, threads, device index)
        return loader_class(path, "model", False, 1, -1).run
    except TypeError:  # absent, or another signature
        _degrade("torch._C._aoti.AOTIModelPackageLoader")
    from torch._inductor import aoti_load_package

    compiled = aoti_load_package(path)

    def run(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = compiled(*inputs)
        return list(outputs) if isinstance(outputs, tuple | list) else [outputs]

    return run
