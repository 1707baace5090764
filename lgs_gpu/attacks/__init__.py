"""The attacks the paper measures LGS against, for any model, any device and any defense.

Example:
    >>> import torch
    >>> from lgs_gpu.attacks import lavan
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10))
    >>> lavan(model, torch.rand(2, 3, 16, 16), torch.tensor([1, 2]), side=4, iterations=3).success.shape
    torch.Size([2])
"""

from ..core.patch_geometry import patch_side
from .adaptive import ATTACKER_VIEWS, attacker_view
from .bpda import BPDA, bpda
from .lavan import AttackResult, lavan
from .patch import TOASTER, PatchResult, apply_patch, paste, random_placement, train_patch
from .placement import border_locations, square_masks

__all__ = [
    "ATTACKER_VIEWS",
    "BPDA",
    "TOASTER",
    "AttackResult",
    "PatchResult",
    "apply_patch",
    "attacker_view",
    "border_locations",
    "bpda",
    "lavan",
    "paste",
    "patch_side",
    "random_placement",
    "square_masks",
    "train_patch",
]
