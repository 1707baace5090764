"""Which LGS path runs a call and why, and running it: the routing table and the one function that reads it.

Five paths (:mod:`lgs_gpu.smoothing.backends`) implement one contract; ``backend`` names one, or ``"auto"``:

* ``"triton"``: fused kernels for CUDA tensors; no autograd.
* ``"torch"``: vectorised PyTorch, any device, differentiable.
* ``"compiled"``: CPU tensors: AOTInductor programs of the torch path's stages (cached per machine),
  and a fused C++ kernel for the output alone; no autograd. Images under 4 pixels run on torch.
* ``"reference"``: the literal equations, slow, differentiable; the tests' oracle.
* ``"auto"``: when no gradient is needed, the first of Triton and the compiled path that is
  usable for the images' device (:func:`.programs.backend_info` says why not); else torch.

While a compiler traces a call, ``lgs`` and ``lgs_map`` go through :mod:`.operators` (not for ONNX nor
a call that needs a gradient); traced calls run Triton through ``wrap_triton`` and the other backends
as the traced form (:mod:`.backends.traced_path`). docs/deploy.md says what each compiler sees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..core.torch_internals import aot_compiling, exporting
from ..core.tracing import exporting_to_onnx, tracing
from ..core.validate import check_backend, from_unit_float, to_unit_float
from .backends import compiled_path, reference, torch_path, traced_path
from .backends.triton_path import interpreting, triton_import_error, triton_unusable_reason

_LOG = logging.getLogger("lgs_gpu")


@dataclass(frozen=True)
class Path:
    """One row of the routing table: a path, what it supports, and whether it can run here."""

    name: str
    devices: tuple[str, ...]  # the device types it computes on; () for any
    differentiable: bool
    min_side: int  # smaller images (height or width) run on the torch path
    auto_unavailable: Callable[[torch.Tensor], str | None]  # why auto does not pick it for these images, or None

    def runs_on(self, device: torch.device) -> bool:
        """Whether an explicit ``backend=<name>`` computes on ``device`` here."""
        if self.name == "triton":
            return triton_unusable_reason(torch.empty(0, device=device)) is None
        return not self.devices or device.type in self.devices


def _triton_for_auto(images: torch.Tensor) -> str | None:
    reason = triton_unusable_reason(images)
    if reason is None and images.device.type != "cuda":
        return "interpreted on CPU (TRITON_INTERPRET=1): for tests, hundreds of times slower; auto skips it"
    return reason


def _compiled_for_auto(images: torch.Tensor) -> str | None:
    return "CPU tensors only" if images.device.type != "cpu" else compiled_path.unusable_reason()


# torch and reference are always available; auto tries these first, in this order.
AUTO_PREFERENCE = ("triton", "compiled")
PATHS = {
    "triton": Path("triton", ("cuda",), False, 1, _triton_for_auto),
    "compiled": Path("compiled", ("cpu",), False, compiled_path.MIN_SIDE, _compiled_for_auto),
    "torch": Path("torch", (), True, 1, lambda images: None),
    "reference": Path("reference", (), True, 1, lambda images: None),
}


@dataclass(frozen=True)
class Route:
    """Where a call goes: a path of :data:`PATHS`, ``"traced"``, ``"operator"`` (``torch.ops.lgs_gpu.lgs`` or
    ``lgs_map``, which the front calls), or ``"cpu operator"`` (``torch.ops.lgs_gpu.lgs_cpu``, opaque)."""

    path: str
    reason: str
    traced: bool = False  # a compiler traces the call


def route(
    backend: str, batch: torch.Tensor, wanted: tuple[str, ...], *, operator: bool = False, inside_operator: bool = False
) -> Route:
    """Which path computes the ``wanted`` stages of a validated ``[B, C, H, W]`` batch, and why; ``ValueError``
    for a backend that cannot run the call, naming one that can. ``operator``: the caller (``lgs``,
    ``lgs_map``) hands a traced call to the operator; ``inside_operator``: the call is that operator's body.

    Example:
        >>> route("auto", torch.rand(1, 3, 2, 2), ("output",)).path  # under 4 pixels: the torch path
        'torch'
    """
    check_backend(backend)
    needs_grad = torch.is_grad_enabled() and batch.requires_grad
    traced = tracing(batch)
    onnx = traced and exporting_to_onnx()  # ONNX has no LGS operator and no Triton: the traced form's standard ops
    if (
        operator
        and traced
        and not needs_grad
        and not onnx
        and backend in ("auto", "triton", "compiled")
        and batch.shape[0] > 0
        and tuple(wanted) in (("output",), ("suppression_map",))  # what lgs_gpu::lgs and ::lgs_map compute
    ):
        return Route("operator", "a compiler traces the call: its graph keeps one LGS node")
    if (
        inside_operator
        and traced
        and batch.device.type == "cpu"
        and not onnx
        and not aot_compiling()
        and not exporting()
        and compiled_path.unusable_reason() is None
    ):
        # Not for AOTInductor (a package must not depend on this package's cache) nor torch.export (its
        # graph keeps lgs_gpu::lgs itself): under torch.compile Inductor's code for the traced form is slower.
        return Route("cpu operator", "torch.compile on CPU: the compiled path as one opaque call")
    if batch.shape[0] == 0:
        return Route("torch", "no images: the torch path gives their empty results")
    if needs_grad and backend != "auto" and not PATHS[backend].differentiable:
        raise ValueError(
            f"the {backend} backend has no backward pass but the input requires grad; "
            "use backend='torch' (or 'auto', which picks it) to differentiate through LGS"
        )
    if traced:
        triton_traceable = batch.device.type == "cuda" and triton_import_error() is None and not interpreting()
        if backend in ("auto", "triton") and not needs_grad and not onnx and triton_traceable:
            return Route("triton", "traced on CUDA: Inductor sees the Triton kernels", traced=True)
        if backend == "triton":
            where = "into ONNX" if onnx else "here: it needs CUDA tensors and compiled Triton"
            raise ValueError(f"backend='triton' cannot be traced {where}; use backend='auto'")
        if backend == "reference":
            raise ValueError(
                "LGS with backend='reference' cannot be traced: the reference is the literal oracle, a Python "
                "loop over windows that branches on the data; use backend='auto' or 'torch', which trace"
            )
        return Route("traced", "a compiler traces the call: the torch path's stages in traceable form")
    if backend == "auto":
        if needs_grad:
            return Route("torch", "a gradient is needed: the differentiable torch path")
        for name in AUTO_PREFERENCE:
            path = PATHS[name]
            if batch.device.type in path.devices and path.auto_unavailable(batch) is None:
                return _sized(path, batch, "auto's first usable path")
        return Route("torch", "no faster path is usable for these images")
    path = PATHS[backend]
    if not path.runs_on(batch.device):
        if backend == "compiled":
            raise ValueError(
                f"backend='compiled' runs on CPU tensors; got {batch.device.type} (use 'triton' or 'auto')"
            )
        raise ValueError(f"backend='triton' is not available: {triton_unusable_reason(batch)}")
    return _sized(path, batch, "asked for")


def _sized(path: Path, batch: torch.Tensor, reason: str) -> Route:
    if min(batch.shape[-2:]) < path.min_side:
        return Route("torch", f"images under {path.min_side} pixels tall or wide: the torch path")
    return Route(path.name, reason)


_MODULES = {"torch": torch_path, "reference": reference, "traced": traced_path}


def compute(
    batch: torch.Tensor,
    smoothing_factor: float,
    threshold: float,
    window_size: int,
    overlap: int,
    backend: str,
    wanted: tuple[str, ...],
    out: torch.Tensor | None = None,
    *,
    decided: Route | None = None,
    inside_operator: bool = False,
) -> dict[str, torch.Tensor]:
    """The ``wanted`` stages of a validated ``[B, C, H, W]`` batch on the path :func:`route` picks (``decided``
    when the caller already asked): ``output`` in ``batch``'s dtype and memory format (into ``out`` when
    given), the ``[B, H, W]`` planes and the window means in the compute dtype."""
    decided = decided or route(backend, batch, wanted, inside_operator=inside_operator)
    path = decided.path
    parameters = (smoothing_factor, threshold, window_size, overlap)
    if path == "cpu operator":
        (stage,) = wanted
        return {stage: torch.ops.lgs_gpu.lgs_cpu(batch, *parameters, stage)}
    elif path == "compiled":
        try:
            return compiled_path.stages(batch, *parameters, wanted, out)
        except compiled_path.ProgramBuildError as error:
            if backend != "auto":
                raise
            # auto promised a result, not a path: say why once (the path is unusable from now on), then eager torch.
            _LOG.warning("lgs_gpu: %s; using the eager torch path", error)
            computed = _eager("torch", batch, parameters, wanted)
    elif path == "triton":
        from .backends.triton_path.kernels import stages as triton_stages

        computed = triton_stages(batch, *parameters, wanted, traced=decided.traced)
    else:
        computed = _eager(path, batch, parameters, wanted)
    if out is not None and "output" in computed:
        computed["output"] = out.copy_(computed["output"])
    return computed


def _eager(path: str, batch: torch.Tensor, parameters: tuple, wanted: tuple[str, ...]) -> dict[str, torch.Tensor]:
    computed = _MODULES[path].stages(to_unit_float(batch), *parameters, wanted)
    if "output" in computed:
        computed["output"] = from_unit_float(computed["output"], batch.dtype)
    return computed
