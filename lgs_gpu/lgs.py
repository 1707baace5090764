"""Local Gradients Smoothing: the public function, the map, the module, and backend dispatch.

``lgs`` defends ``[B, C, H, W]`` (or ``[C, H, W]``) images against localized adversarial
patches by suppressing pixels of high, concentrated gradient: see :mod:`lgs_gpu.reference` for
the equations and the meaning of every parameter. Four backends implement the same contract:

* ``"triton"``: fused kernels (:mod:`lgs_gpu.kernels.lgs_triton`) for CUDA tensors; no autograd.
* ``"torch"``: vectorised PyTorch (:mod:`lgs_gpu.lgs_torch`), any device, differentiable.
* ``"compiled"``: the torch path's stages fused by ``torch.compile`` (:mod:`lgs_gpu.lgs_compiled`)
  for CPU tensors; no autograd; compiles on first use, so ``"auto"`` never picks it.
* ``"reference"``: the literal equations (:mod:`lgs_gpu.reference`), slow, differentiable.
* ``"auto"``: Triton for CUDA tensors when usable and no gradient is needed, else torch.
"""

from __future__ import annotations

from typing import Any

import torch

from . import lgs_torch, reference
from ._transform import ImageDefense
from ._validate import as_image_batch, compute_dtype, from_unit_float, real_scalar, to_unit_float, window_parameters
from .kernels import triton_unusable_reason, triton_usable

BACKENDS = ("auto", "triton", "compiled", "torch", "reference")
DEFAULT_SMOOTHING_FACTOR = 2.3
DEFAULT_THRESHOLD = 0.1
DEFAULT_WINDOW_SIZE = 15
DEFAULT_OVERLAP = 5

_DIFFERENTIABLE_PATHS = {"torch": lgs_torch, "reference": reference}


def _vectorised_path(path: str, batch: torch.Tensor):
    """The module computing ``path`` on ``batch`` (unit-float, compute dtype) and the batch it expects."""
    if path == "compiled" and min(batch.shape[-2:]) >= 3:  # smaller images have no interior: eager torch
        from . import lgs_compiled

        # Detached: no gradient is asked for here, and one compiled graph serves every input.
        return lgs_compiled, batch.detach().contiguous()
    return _DIFFERENTIABLE_PATHS.get(path, lgs_torch), batch


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}. Got {backend!r}")


def _choose_backend(backend: str, batch: torch.Tensor) -> str:
    _check_backend(backend)
    needs_grad = torch.is_grad_enabled() and batch.requires_grad
    if backend == "auto":
        return "triton" if not needs_grad and triton_usable(batch) else "torch"
    if backend in ("triton", "compiled") and needs_grad:
        raise ValueError(
            f"the {backend} backend has no backward pass but the input requires grad; "
            "use backend='torch' (or 'auto', which picks it) to differentiate through LGS"
        )
    if backend == "compiled" and batch.device.type != "cpu":
        raise ValueError(f"backend='compiled' runs on CPU tensors; got {batch.device.type} (use 'triton' or 'auto')")
    if backend == "triton":
        reason = triton_unusable_reason(batch)
        if reason is not None:
            raise ValueError(f"backend='triton' is not available: {reason}")
    return backend


def _prepare(x: Any, smoothing_factor: Any, threshold: Any, window_size: Any, overlap: Any):
    batch, single = as_image_batch(x)
    # λ = ±inf would turn 0 * λ into NaN; γ = ±inf is meaningful (no window / every window passes).
    smoothing_factor = real_scalar(smoothing_factor, "smoothing_factor", batch.device, finite=True)
    threshold = real_scalar(threshold, "threshold", batch.device)
    window_size, overlap = window_parameters(window_size, overlap)
    return batch, single, smoothing_factor, threshold, window_size, overlap


def lgs(
    x: torch.Tensor,
    smoothing_factor: float = DEFAULT_SMOOTHING_FACTOR,
    threshold: float = DEFAULT_THRESHOLD,
    window_size: int = DEFAULT_WINDOW_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    backend: str = "auto",
) -> torch.Tensor:
    """Defend images with Local Gradients Smoothing: ``x * (1 - clip(λ·ĝ, 0, 1))``.

    Args:
        x: ``[B, C, H, W]`` or ``[C, H, W]`` images; float16/bfloat16/float32/float64 in [0, 1]
            or uint8 in [0, 255]; any device, strides or memory format.
        smoothing_factor: λ, how strongly high-gradient pixels are suppressed.
        threshold: γ, a window is kept when its mean normalised gradient is strictly above it.
        window_size: side of the square windows, in pixels.
        overlap: pixels shared by neighbouring windows (``0 <= overlap < window_size``).
        backend: ``"auto"``, ``"triton"``, ``"compiled"``, ``"torch"`` or ``"reference"``.
    Returns:
        The defended images: same shape, dtype and device as ``x`` (uint8 rounded and clamped).

    Example:
        >>> images = torch.rand(4, 3, 224, 224)
        >>> lgs(images).shape
        torch.Size([4, 3, 224, 224])
    """
    batch, single, smoothing_factor, threshold, window_size, overlap = _prepare(
        x, smoothing_factor, threshold, window_size, overlap
    )
    if batch.shape[0] == 0:
        return x.clone()
    path = _choose_backend(backend, batch)
    if path == "triton":
        from .kernels.lgs_triton import lgs_triton

        output, _ = lgs_triton(batch, smoothing_factor, threshold, window_size, overlap)
    else:
        unit = to_unit_float(batch)
        module, ready = _vectorised_path(path, unit)
        computed = module.lgs(ready, smoothing_factor, threshold, window_size, overlap)
        if ready.data_ptr() != unit.data_ptr():  # the compiled path took a contiguous copy: give back the layout
            computed = torch.empty_like(unit).copy_(computed)
        output = from_unit_float(computed, batch.dtype)
    return output[0] if single else output


def lgs_map(
    x: torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
    window_size: int = DEFAULT_WINDOW_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    backend: str = "auto",
) -> torch.Tensor:
    """The suppression map ``ĝ``: the normalised gradient kept only inside passing windows.

    Args: as :func:`lgs` (without ``smoothing_factor``).
    Returns:
        ``[B, 1, H, W]`` (``[1, H, W]`` for a single image) in [0, 1], float32 (float64 for
        float64 input).

    Example:
        >>> lgs_map(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """
    batch, single, _, threshold, window_size, overlap = _prepare(x, 0.0, threshold, window_size, overlap)
    dtype = compute_dtype(batch.dtype)
    if batch.shape[0] == 0:
        return torch.empty((0, 1, *batch.shape[2:]), dtype=dtype, device=batch.device)
    path = _choose_backend(backend, batch)
    if path == "triton":
        from .kernels.lgs_triton import lgs_triton

        _, suppressed = lgs_triton(batch, 0.0, threshold, window_size, overlap, write_output=False, write_map=True)
    else:
        module, unit = _vectorised_path(path, to_unit_float(batch))
        suppressed = module.lgs_map(unit, threshold, window_size, overlap)
    suppressed = suppressed[:, None]
    return suppressed[0] if single else suppressed


class LocalGradientsSmoothing(ImageDefense):
    """Local Gradients Smoothing as an ``nn.Module`` and a torchvision v2 transform.

    Works on ``[B, C, H, W]`` batches (e.g. in ``nn.Sequential`` before ``Normalize``) and, as a
    v2 transform, on single images inside samples: plain tensors, ``tv_tensors.Image`` and PIL
    images are defended; boxes, masks and labels pass through untouched.

    Args: as :func:`lgs`.

    Example:
        >>> model = torch.nn.Sequential(LocalGradientsSmoothing(), v2.Normalize([0.5] * 3, [0.5] * 3))
        >>> model(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
    """

    name = "lgs"
    differentiable = True  # through the torch path, which "auto" picks when a gradient is needed

    def __init__(
        self,
        smoothing_factor: float = DEFAULT_SMOOTHING_FACTOR,
        threshold: float = DEFAULT_THRESHOLD,
        window_size: int = DEFAULT_WINDOW_SIZE,
        overlap: int = DEFAULT_OVERLAP,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (("smoothing_factor", smoothing_factor), ("threshold", threshold)):
            if not isinstance(value, torch.Tensor):  # tensors are checked against the images' device
                real_scalar(value, name, torch.device("cpu"), finite=name == "smoothing_factor")
        window_parameters(window_size, overlap)
        _check_backend(backend)
        self.smoothing_factor = smoothing_factor
        self.threshold = threshold
        self.window_size = window_size
        self.overlap = overlap
        self.backend = backend

    @property
    def spec(self) -> str:
        extras = [
            f"{key}={value}"
            for key, value, default in (
                ("threshold", self.threshold, DEFAULT_THRESHOLD),
                ("window", self.window_size, DEFAULT_WINDOW_SIZE),
                ("overlap", self.overlap, DEFAULT_OVERLAP),
            )
            if value != default
        ]
        return ",".join([f"lgs:{float(self.smoothing_factor):g}", *extras])

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        return lgs(x, self.smoothing_factor, self.threshold, self.window_size, self.overlap, self.backend)

    def extra_repr(self) -> str:
        return (
            f"smoothing_factor={self.smoothing_factor}, threshold={self.threshold}, "
            f"window_size={self.window_size}, overlap={self.overlap}, backend={self.backend!r}"
        )
