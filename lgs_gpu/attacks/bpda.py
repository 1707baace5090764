"""BPDA (Athalye et al., 2018): attack a defense through a differentiable stand-in for its backward.

``BPDA(defense)`` returns exactly ``defense(x)`` in the forward pass and passes the gradient
straight through (identity) in the backward pass, or through ``substitute`` when given
(``d substitute(x) / dx``): any defense, differentiable or not (JPEG, TV, bit depth), can then
sit inside a gradient attack.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.transform import ImageDefense


class _StraightThrough(torch.autograd.Function):
    """Forward: ``defended``, exactly. Backward: the incoming gradient goes to ``through`` unchanged."""

    @staticmethod
    def forward(ctx, through: torch.Tensor, defended: torch.Tensor) -> torch.Tensor:
        return defended.clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output, None


def bpda(defense: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, substitute=None) -> torch.Tensor:
    """``defense(x)`` whose gradient is the identity's (or ``substitute``'s).

    Example:
        >>> from lgs_gpu.defenses import JPEG
        >>> x = torch.rand(1, 3, 16, 16, requires_grad=True)
        >>> bpda(JPEG(30), x).sum().backward()
        >>> bool((x.grad == 1).all())
        True
    """
    if not x.is_floating_point():
        raise TypeError(f"BPDA needs floating-point images to differentiate. Got {x.dtype}")
    with torch.no_grad():
        defended = defense(x.detach()).to(x.dtype)
    # forward value: the defense's output exactly; gradient: through x itself or the substitute
    return _StraightThrough.apply(x if substitute is None else substitute(x), defended)


class BPDA(ImageDefense):
    """Any defense as a differentiable module with an identity (or ``substitute``) backward pass.

    Example:
        >>> from lgs_gpu.defenses import get
        >>> attacked = BPDA(get("jpeg:30"))
        >>> attacked.differentiable
        True
    """

    name = "bpda"
    differentiable = True

    def __init__(self, defense: ImageDefense, substitute: torch.nn.Module | None = None) -> None:
        super().__init__()
        if not callable(defense):
            raise TypeError(f"BPDA wraps a defense (a callable on images). Got {type(defense).__name__}")
        self.defense = defense
        self.substitute = substitute

    @property
    def spec(self) -> str:
        inner = getattr(self.defense, "spec", type(self.defense).__name__)
        return f"bpda({inner})"

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        return bpda(self.defense, x, self.substitute)
