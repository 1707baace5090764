"""The one rule for a square patch's side from its share of the image, used by attacks and certificates.

A patch covering a fraction ``f`` of an ``n``-pixel axis squared is ``ceil(sqrt(f) * n)`` pixels on
a side: rounding up, so that a certificate for "a 2% patch" covers every patch of at most 2%
(PatchCleanser's 32 px at 224 px), and an attack's patch is never smaller than it says.
"""

from __future__ import annotations

import math

from .validate import is_integer, is_real


def patch_side(image_size: int, area_fraction: float) -> int:
    """Side, in pixels, of a square patch covering ``area_fraction`` of an ``image_size``-square image.

    Example:
        >>> patch_side(224, 0.01), patch_side(224, 0.02), patch_side(224, 0.03)
        (23, 32, 39)
        >>> patch_side(299, 0.02), patch_side(299, 0.04)
        (43, 60)
    """
    if not is_real(area_fraction):
        raise TypeError(f"area_fraction must be a number in (0, 1). Got {type(area_fraction).__name__}")
    if not 0 < area_fraction < 1:
        raise ValueError(f"area_fraction must be in (0, 1). Got {area_fraction}")
    if not is_integer(image_size) or image_size < 1:
        raise ValueError(f"image_size must be an int >= 1. Got {image_size!r}")
    # The small epsilon keeps sqrt(0.04) * 300 = 60.000000000000007 from rounding up to 61.
    return max(1, math.ceil(math.sqrt(area_fraction) * image_size - 1e-9))
