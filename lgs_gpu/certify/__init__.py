"""Certified recovery against adversarial patches: PatchCleanser double masking, batched on any device.

Takes any classifier (``[B, C, H, W]`` images in [0, 1] -> logits) and imports nothing of LGS
(a spec's image defense after ``@`` is built through the defense registry, when asked for).

Example:
    >>> import torch
    >>> from lgs_gpu.certify import mask_set
    >>> mask_set(224, patch_fraction=0.02).shape
    torch.Size([36, 224, 224])
"""

from .double_masking import CASES, CertifiedPrediction, PatchCleanser, default_mask_value
from .masks import AxisMasks, MaskGeometry, axis_masks, mask_geometry, mask_set
from .spec import RandomMask, from_spec, is_spec, parse_spec

__all__ = [
    "CASES",
    "AxisMasks",
    "CertifiedPrediction",
    "MaskGeometry",
    "PatchCleanser",
    "RandomMask",
    "axis_masks",
    "default_mask_value",
    "from_spec",
    "is_spec",
    "mask_geometry",
    "mask_set",
    "parse_spec",
]
