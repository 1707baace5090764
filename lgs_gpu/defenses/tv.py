"""Total-variation minimisation ("TVM") by split Bregman, batched on any device.

Solves the problem of ``skimage.restoration.denoise_tv_bregman(img, weight, channel_axis=-1)``
(isotropic, its defaults ``max_num_iter=100, eps=1e-3``), for each channel of each image::

    min_u  weight / 2 * ||u - f||^2 + sum_pixels sqrt((∂x u)^2 + (∂y u)^2)

with scikit-image's split-Bregman updates (``lam = 2 * weight``; its ``d`` step
``d = s·lam·t / (s·lam + 1)`` with ``t = ∇u + b``, ``s = |t|``; ``b += ∇u - d``), its fixed
border (the padded frame holds the input's row/column 1 at the top/left and its last row/column
at the bottom/right, never updated) and its stopping rule (a channel stops once the RMS change of
one sweep is ``<= eps``, or after ``max_num_iter`` sweeps).

The one difference is the order of the ``u`` update: scikit-image sweeps pixels one by one
(lexicographic Gauss-Seidel), which cannot run in parallel; here each sweep updates the red then
the black pixels of a checkerboard (red-black Gauss-Seidel), each half fully vectorised. Both
reach the same minimiser; stopped early at ``eps`` they land slightly apart (the README states
the measured distance on real photographs).
"""

from __future__ import annotations

import torch

from ..core.parameters import OPERATOR_NAMESPACE
from ..core.transform import ImageDefense, spec_number
from ._common import apply_defense, integer_parameter, positive_real, refuse_onnx

PAPER_WEIGHTS = (10, 20, 30)
DEFAULT_MAX_ITERATIONS = 100
DEFAULT_TOLERANCE = 1e-3


def _frame(f: torch.Tensor) -> torch.Tensor:
    """``[B, C, H + 2, W + 2]``: ``f`` inside scikit-image's fixed border (corners 0, never read)."""
    height, width = f.shape[-2:]
    framed = f.new_zeros((*f.shape[:2], height + 2, width + 2))
    framed[..., 1:-1, 1:-1] = f
    framed[..., 0, 1:-1] = f[..., min(1, height - 1), :]
    framed[..., -1, 1:-1] = f[..., height - 1, :]
    framed[..., 1:-1, 0] = f[..., :, min(1, width - 1)]
    framed[..., 1:-1, -1] = f[..., :, width - 1]
    return framed


def _checkerboard(height: int, width: int, device: torch.device) -> torch.Tensor:
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    return (rows + cols) % 2 == 0


# An operator, so that tracers keep it as one opaque node: its loop stops on the data (each
# channel at its own sweep), which torch.export and torch.compile cannot trace into one graph.
@torch.library.custom_op(f"{OPERATOR_NAMESPACE}::tv_bregman", mutates_args=())
def _tv_bregman(f: torch.Tensor, weight: float, max_iterations: int, tolerance: float) -> torch.Tensor:
    height, width = f.shape[-2:]
    lam = 2 * weight
    norm = weight + 4 * lam
    u = _frame(f)
    # d and b live on the same framed grid; their frame stays 0, as in scikit-image
    dx, dy, bx, by = (torch.zeros_like(u) for _ in range(4))
    inner = (..., slice(1, -1), slice(1, -1))
    red = _checkerboard(height, width, f.device)
    active = torch.ones(f.shape[:2] + (1, 1), dtype=torch.bool, device=f.device)  # per image and channel
    for _ in range(max_iterations):
        previous = u[inner].clone()
        grad_x = u[..., 1:-1, 2:] - previous  # forward differences of the u the sweep starts from
        grad_y = u[..., 2:, 1:-1] - previous
        bregman = (
            dx[..., 1:-1, :-2]
            - dx[inner]
            + dy[..., :-2, 1:-1]
            - dy[inner]
            - bx[..., 1:-1, :-2]
            + bx[inner]
            - by[..., :-2, 1:-1]
            + by[inner]
        )
        for colour in (red, ~red):
            neighbours = u[..., 2:, 1:-1] + u[..., :-2, 1:-1] + u[..., 1:-1, 2:] + u[..., 1:-1, :-2]
            updated = (lam * (neighbours + bregman) + weight * f) / norm
            u[inner] = torch.where(colour & active, updated, u[inner])
        change = (u[inner] - previous).square().mean(dim=(-2, -1), keepdim=True).sqrt()

        shifted_x, shifted_y = grad_x + bx[inner], grad_y + by[inner]
        shrink = torch.sqrt(shifted_x.square() + shifted_y.square()) * lam
        new_dx, new_dy = shrink * shifted_x / (shrink + 1), shrink * shifted_y / (shrink + 1)
        bx[inner] = torch.where(active, bx[inner] + grad_x - new_dx, bx[inner])
        by[inner] = torch.where(active, by[inner] + grad_y - new_dy, by[inner])
        dx[inner] = torch.where(active, new_dx, dx[inner])
        dy[inner] = torch.where(active, new_dy, dy[inner])

        active = active & (change > tolerance)
        if not active.any():
            break
    return u[inner].contiguous()


@_tv_bregman.register_fake
def _(f: torch.Tensor, weight: float, max_iterations: int, tolerance: float) -> torch.Tensor:
    return torch.empty_like(f, memory_format=torch.contiguous_format)


def _check(weight: object, max_iterations: object, tolerance: object) -> tuple[float, int, float]:
    return (
        positive_real(weight, "weight"),
        integer_parameter(max_iterations, "max_iterations", 1),
        positive_real(tolerance, "tolerance", allow_zero=True),
    )


def tv_bregman(
    x: torch.Tensor,
    weight: float = 10.0,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    tolerance: float = DEFAULT_TOLERANCE,
) -> torch.Tensor:
    """Total-variation denoising of each channel (isotropic split Bregman, see the module docstring).

    Args:
        x: ``[B, C, H, W]`` or ``[C, H, W]``, float in [0, 1] or uint8; any device.
        weight: fidelity weight; smaller removes more (the paper's grid: 10, 20, 30).
        max_iterations: most sweeps per channel (scikit-image's ``max_num_iter``).
        tolerance: a channel stops when a sweep changes it by at most this RMS (``eps``).
    Returns:
        Same shape, dtype and device. Not differentiable (iterative with data-dependent
        stopping: attack it with BPDA).

    Example:
        >>> tv_bregman(torch.rand(2, 3, 16, 16), weight=10).shape
        torch.Size([2, 3, 16, 16])
    """
    weight, max_iterations, tolerance = _check(weight, max_iterations, tolerance)
    refuse_onnx("tvm", "its iterations stop on the data, which the ONNX exporter cannot trace")
    return apply_defense(x, lambda batch: _tv_bregman(batch, weight, max_iterations, tolerance), differentiable=False)


class TVBregman(ImageDefense):
    """:func:`tv_bregman` as a module / transform. Example: ``TVBregman(10)(torch.rand(1, 3, 16, 16))``."""

    name = "tvm"
    differentiable = False

    def __init__(
        self, weight: float = 10.0, max_iterations: int = DEFAULT_MAX_ITERATIONS, tolerance: float = DEFAULT_TOLERANCE
    ) -> None:
        super().__init__()
        self.weight, self.max_iterations, self.tolerance = _check(weight, max_iterations, tolerance)

    @property
    def spec(self) -> str:
        extras = [f"max_iterations={self.max_iterations}"] if self.max_iterations != DEFAULT_MAX_ITERATIONS else []
        extras += [f"tolerance={spec_number(self.tolerance)}"] if self.tolerance != DEFAULT_TOLERANCE else []
        return ",".join([f"tvm:{spec_number(self.weight)}", *extras])

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        return tv_bregman(x, self.weight, self.max_iterations, self.tolerance)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, max_iterations={self.max_iterations}, tolerance={self.tolerance}"
