"""Which LGS path runs a call, and running it: the front's dispatch (:mod:`lgs_gpu.front` is its public face).

Five paths (:mod:`lgs_gpu.paths`) implement one contract; ``backend`` names one, or ``"auto"``:

* ``"triton"``: fused kernels for CUDA tensors; no autograd.
* ``"torch"``: vectorised PyTorch, any device, differentiable.
* ``"compiled"``: the torch path's stages compiled ahead of time for CPU tensors (AOTInductor
  programs in a per-machine cache, built once); no autograd.
* ``"reference"``: the literal equations, slow, differentiable; the tests' oracle.
* ``"auto"``: when no gradient is needed, Triton for CUDA tensors and the compiled path for CPU
  images at least 4 pixels tall and wide (each when usable: :func:`backend_info` says why not);
  else torch.

While a compiler traces the call (``torch.compile``, ``torch.export``, AOTInductor, the ONNX
exporter), the torch and compiled backends run as the traced form (:mod:`.paths.traced_path`:
the same stages, traceable for any image size), and Triton through ``torch.library.wrap_triton``
so that Inductor sees its kernels. (The operators of :mod:`lgs_gpu.ops` add one case above this
choice: on CPU under ``torch.compile`` they keep the compiled programs as one opaque call.)
"""

from __future__ import annotations

import logging

import torch

from ._validate import compute_dtype, from_unit_float, to_unit_float
from .parameters import BACKENDS
from .paths import compiled_path, reference, torch_path, traced_path
from .paths.triton_path import interpreting, triton_import_error, triton_unusable_reason, triton_usable
from .tracing import exporting_to_onnx, tracing
from .windows import axis_windows

_LOG = logging.getLogger("lgs_gpu")


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}. Got {backend!r}")


def backend_info(device: torch.device | str = "cpu") -> dict[str, str]:
    """For each backend, ``"available"`` or why it cannot run on ``device`` (and what ``auto`` picks).

    Example:
        >>> backend_info("cpu")["torch"]
        'available'
    """
    device = torch.device(device)
    info = {"reference": "available", "torch": "available"}
    reason = triton_unusable_reason(torch.empty(0, device=device))
    if reason is None and device.type != "cuda":
        reason = "interpreted on CPU (TRITON_INTERPRET=1): for tests, hundreds of times slower; auto skips it"
    info["triton"] = "available" if reason is None else reason
    if device.type != "cpu":
        info["compiled"] = "CPU tensors only"
    else:
        reason = compiled_path.unusable_reason()
        info["compiled"] = "available" if reason is None else reason
    if info["triton"] == "available":
        info["auto"] = "triton"
    elif info["compiled"] == "available":
        info["auto"] = "compiled"
    else:
        info["auto"] = "torch"
    return info


def _triton_traceable(batch: torch.Tensor) -> bool:
    """Triton for a traced CUDA call: importable and compiled (the interpreter cannot be traced)."""
    return batch.device.type == "cuda" and triton_import_error() is None and not interpreting()


def choose(backend: str, batch: torch.Tensor) -> str:
    """The path that runs ``batch``: a backend name, or ``"traced"`` while a compiler traces the call."""
    check_backend(backend)
    needs_grad = torch.is_grad_enabled() and batch.requires_grad
    if backend in ("triton", "compiled") and needs_grad:
        raise ValueError(
            f"the {backend} backend has no backward pass but the input requires grad; "
            "use backend='torch' (or 'auto', which picks it) to differentiate through LGS"
        )
    if tracing(batch):
        onnx = exporting_to_onnx()  # ONNX has no Triton: the traced form's standard ops
        if backend in ("auto", "triton") and not needs_grad and not onnx and _triton_traceable(batch):
            return "triton"
        if backend == "triton":
            where = "into ONNX" if onnx else "here: it needs CUDA tensors and compiled Triton"
            raise ValueError(f"backend='triton' cannot be traced {where}; use backend='auto'")
        if backend == "reference":
            raise ValueError(
                "LGS with backend='reference' cannot be traced: the reference is the literal oracle, a Python "
                "loop over windows that branches on the data; use backend='auto' or 'torch', which trace"
            )
        return "traced"
    if backend == "auto":
        if needs_grad:
            return "torch"
        if triton_usable(batch):
            return "triton"
        small = min(batch.shape[-2:]) < compiled_path.MIN_SIDE
        return (
            "compiled"
            if batch.device.type == "cpu" and not small and compiled_path.unusable_reason() is None
            else "torch"
        )
    if backend == "compiled" and batch.device.type != "cpu":
        raise ValueError(f"backend='compiled' runs on CPU tensors; got {batch.device.type} (use 'triton' or 'auto')")
    if backend == "triton":
        reason = triton_unusable_reason(batch)
        if reason is not None:
            raise ValueError(f"backend='triton' is not available: {reason}")
    return backend


def empty_stages(batch: torch.Tensor, window_size: int, overlap: int, wanted: tuple[str, ...]) -> dict:
    _, channels, height, width = batch.shape
    dtype, device = compute_dtype(batch.dtype), batch.device
    rows, cols = axis_windows(height, window_size, overlap), axis_windows(width, window_size, overlap)
    shapes = {
        "output": ((0, channels, height, width), batch.dtype), "normalised_gradient": ((0, height, width), dtype),
        "window_mask": ((0, height, width), torch.bool), "suppression_map": ((0, height, width), dtype),
        "window_means": ((0, rows.count, cols.count), dtype),
    }  # fmt: skip
    return {name: torch.empty(shapes[name][0], dtype=shapes[name][1], device=device) for name in wanted}


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
) -> dict[str, torch.Tensor]:
    """The ``wanted`` stages of a validated ``[B, C, H, W]`` batch on ``backend``'s path.

    ``output`` in ``batch``'s dtype and memory format, written into ``out`` when given (checked by
    the front); the planes ``[B, H, W]`` and the window means in the compute dtype (see
    :func:`lgs_gpu.front.lgs_stages`).
    """
    if batch.shape[0] == 0:
        return empty_stages(batch, window_size, overlap, wanted) | ({"output": out} if out is not None else {})
    path = choose(backend, batch)
    if path == "compiled" and min(batch.shape[-2:]) < compiled_path.MIN_SIDE:
        path = "torch"  # smaller images: eager torch
    if path == "compiled":
        try:
            return compiled_path.stages(batch, smoothing_factor, threshold, window_size, overlap, wanted, out)
        except compiled_path.ProgramBuildError as error:
            if backend != "auto":
                raise
            # auto promised a result, not a path: say why once, then stay on eager torch.
            _LOG.warning("lgs_gpu: %s; using the eager torch path", error)
            path = "torch"
    if path == "triton":
        from .paths.triton_path.kernels import stages as triton_stages

        computed = triton_stages(batch, smoothing_factor, threshold, window_size, overlap, wanted, traced=tracing(batch))
    else:
        unit = to_unit_float(batch)
        computed = _MODULES[path].stages(unit, smoothing_factor, threshold, window_size, overlap, wanted)
        if "output" in computed:
            computed["output"] = from_unit_float(computed["output"], batch.dtype)
    if out is not None and "output" in computed:
        computed["output"] = out.copy_(computed["output"])
    return computed
