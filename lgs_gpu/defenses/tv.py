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
from ._common import FunctionDefense, apply_defense, integer_parameter, positive_real, refuse_onnx

PAPER_WEIGHTS = (10, 20, 30)
DEFAULT_MAX_ITERATIONS = 100
DEFAULT_TOLERANCE = 1e-3


# An operator, so that tracers keep it as one opaque node: its loop stops on the data (each
# channel at its own sweep), which torch.export and torch.compile cannot trace into one graph.
@torch.library.custom_op(f"{OPERATOR_NAMESPACE}::tv_bregman", mutates_args=())
def _tv_bregman(f: torch.Tensor, weight: float, max_iterations: int, tolerance: float) -> torch.Tensor:
    height, width = f.shape[-2:]
    lam = 2 * weight
    norm = weight + 4 * lam
    # f inside scikit-image's fixed border: row/column 1 at the top/left, the last at the bottom/right
    # (the corners, never read, are whatever the indexing gives).
    rows = [min(1, height - 1), *range(height), height - 1]
    cols = [min(1, width - 1), *range(width), width - 1]
    u = f[..., rows, :][..., cols].contiguous()
    # d and b live on the same framed grid; their frame stays 0, as in scikit-image
    dx, dy, bx, by = (torch.zeros_like(u) for _ in range(4))
    inner = (..., slice(1, -1), slice(1, -1))
    red = (torch.arange(height, device=f.device)[:, None] + torch.arange(width, device=f.device)) % 2 == 0
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


class TVBregman(FunctionDefense):
    """:func:`tv_bregman` as a module / transform. Example: ``TVBregman(10)(torch.rand(1, 3, 16, 16))``."""

    name = "tvm"
    differentiable = False
    _function = staticmethod(tv_bregman)
    _arguments = ("weight", "max_iterations", "tolerance")

    def __init__(
        self, weight: float = 10.0, max_iterations: int = DEFAULT_MAX_ITERATIONS, tolerance: float = DEFAULT_TOLERANCE
    ) -> None:
        super().__init__()
        self.weight, self.max_iterations, self.tolerance = _check(weight, max_iterations, tolerance)
