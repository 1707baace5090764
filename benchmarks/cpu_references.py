"""The CPU library calls each defense is checked against, on one ``[H, W, C]`` numpy image.

Shared by the parity tests, ``benchmarks/defense_parity.py`` and ``python benchmarks/bench.py``. Images are float in [0, 1] (float64 unless given otherwise) or, for JPEG,
uint8. These import Pillow / scipy / scikit-image lazily: the package itself does not need them
at run time.
"""

from __future__ import annotations

import io

import numpy as np

from lgs_gpu.core.parameters import DEFAULT_OVERLAP, DEFAULT_SMOOTHING_FACTOR, DEFAULT_THRESHOLD, DEFAULT_WINDOW_SIZE


def pillow_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """uint8 ``[H, W, C]`` (C = 1 or 3) through Pillow's JPEG at ``quality`` (default 4:2:0)."""
    from PIL import Image

    squeezed = image[..., 0] if image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(squeezed).save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
    return decoded.reshape(image.shape)


def skimage_tv_bregman(image: np.ndarray, weight: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_bregman

    return denoise_tv_bregman(image, weight=weight, channel_axis=-1).reshape(image.shape)


def scipy_median(image: np.ndarray, window: int) -> np.ndarray:
    from scipy.ndimage import median_filter

    return np.stack([median_filter(image[..., c], size=window, mode="reflect") for c in range(image.shape[-1])], -1)


def scipy_gaussian(image: np.ndarray, window: int, sigma: float = 1.0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    truncate = (window // 2) / sigma
    return np.stack(
        [gaussian_filter(image[..., c], sigma, truncate=truncate, mode="reflect") for c in range(image.shape[-1])], -1
    )


def skimage_bilateral(image: np.ndarray, window: int, sigma_spatial: float = 1.0) -> np.ndarray:
    from skimage.restoration import denoise_bilateral

    return denoise_bilateral(image, win_size=window, sigma_spatial=sigma_spatial, channel_axis=-1).reshape(
        image.shape
    )


def numpy_bit_depth(image: np.ndarray, bits: int) -> np.ndarray:
    levels = 2**bits - 1
    return np.round(image * levels) / levels


def numpy_lgs(
    image: np.ndarray,
    smoothing_factor: float = DEFAULT_SMOOTHING_FACTOR,
    threshold: float = DEFAULT_THRESHOLD,
    window_size: int = DEFAULT_WINDOW_SIZE,
    overlap: int = DEFAULT_OVERLAP,
) -> np.ndarray:
    """LGS on one ``[H, W, C]`` float image as a user would write it with NumPy / SciPy.

    The paper's steps in order: Sobel gradients per channel (``scipy.ndimage.sobel``, edge
    replicated), magnitude over channels, min-max normalisation, a Python loop over the
    overlapping windows keeping those whose mean exceeds γ, then ``x·(1 − clip(λ·ĝ, 0, 1))``.
    The window starts come from :mod:`lgs_gpu.core.windows`, so the border rule is the package's.
    The benchmark's "what a user would otherwise write" contender.
    """
    from scipy import ndimage

    from lgs_gpu.core.windows import axis_windows

    squared = np.zeros(image.shape[:2])
    for channel in range(image.shape[-1]):
        squared += ndimage.sobel(image[..., channel], axis=1, mode="nearest") ** 2
        squared += ndimage.sobel(image[..., channel], axis=0, mode="nearest") ** 2
    magnitude = np.sqrt(squared)
    value_range = magnitude.max() - magnitude.min()
    normalised = (magnitude - magnitude.min()) / value_range if value_range > 0 else np.zeros_like(magnitude)
    keep = np.zeros(normalised.shape, dtype=bool)
    rows = axis_windows(image.shape[0], window_size, overlap)
    cols = axis_windows(image.shape[1], window_size, overlap)
    for top in rows.starts:
        for left in cols.starts:
            window = (slice(top, top + rows.extent), slice(left, left + cols.extent))
            if normalised[window].mean() > threshold:
                keep[window] = True
    suppressed = np.where(keep, normalised, 0.0)
    return image * (1 - np.clip(smoothing_factor * suppressed, 0, 1))[..., None]
