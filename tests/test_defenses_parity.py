"""Each baseline agrees with the CPU library it names, on real photographs and random images.

Tolerances were measured with ``benchmarks/defense_parity.py`` (README, "Baseline defenses") on
the six bundled photographs at 160 px, and are stated here with the measured value:

* JPEG, median, bit depth: exact (the same bytes / a selection / the same float formula).
* Gaussian: float64 agrees to 7e-16; float32 to 1.9e-7 (float32 rounding of 5 + 5 taps).
* Bilateral: 2.0e-4 max (scikit-image looks its colour weights up in a 10,000-bin table; we
  compute them exactly).
* TV (split Bregman): the two solvers update pixels in a different order and both stop early at
  eps = 1e-3, so they land apart: measured max 0.083, mean 0.0028 on the photographs at 160 px
  (the filter itself changes pixels by 0.011-0.018 on average), up to max 0.24, mean 0.016 on
  uniform noise at 96 px. Run to convergence, they agree to 1e-4.
"""

import cpu_references as ref
import numpy as np
import pytest
import torch

from lgs_gpu.data import ALL_PHOTOGRAPHS, bundled_photographs
from lgs_gpu.defenses import bilateral_filter, bit_depth, gaussian_filter, jpeg, median_filter, tv_bregman
from lgs_gpu.defenses.jpeg import PAPER_QUALITIES
from lgs_gpu.defenses.tv import PAPER_WEIGHTS


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    """The six bundled photographs at 96 px and two random images (uniform noise; smooth), HWC uint8."""
    photos = {name: image.permute(1, 2, 0).numpy() for name, image in bundled_photographs(96, ALL_PHOTOGRAPHS).items()}
    generator = np.random.default_rng(0)
    photos["noise"] = generator.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    smooth = np.cumsum(generator.normal(size=(70, 90, 3)), axis=1)
    photos["random_walk"] = np.round(255 * (smooth - smooth.min()) / np.ptp(smooth)).astype(np.uint8)
    return photos


def ours(function, image: np.ndarray, dtype: torch.dtype = torch.float64, **parameters) -> np.ndarray:
    """Run one of our defenses on an HWC numpy image, in ``dtype``; HWC float64 (or uint8) out."""
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).to(dtype)
    out = function(tensor, **parameters).permute(1, 2, 0)
    return out.numpy() if dtype == torch.uint8 else out.double().numpy()


def unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) / 255


@pytest.mark.parametrize("quality", PAPER_QUALITIES)
def test_jpeg_is_byte_exact_with_pillow(images, quality):
    for name, image in images.items():
        assert np.array_equal(ours(jpeg, image, torch.uint8, quality=quality), ref.pillow_jpeg(image, quality)), name


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 2, 3), (7, 300, 3), (33, 17, 1)])
def test_jpeg_odd_sizes_and_grayscale_match_pillow(shape):
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(ours(jpeg, image, torch.uint8, quality=30), ref.pillow_jpeg(image, 30))


def test_jpeg_of_floats_is_jpeg_of_the_rounded_pixels(images):
    image = images["astronaut"]
    as_float = ours(jpeg, unit(image), torch.float32, quality=40)
    assert np.array_equal(np.round(as_float * 255).astype(np.uint8), ref.pillow_jpeg(image, 40))


@pytest.mark.parametrize("window", [3, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_median_is_exact(images, window, dtype):
    for name, image in images.items():
        values = unit(image).astype(np.float32 if dtype == torch.float32 else np.float64)
        assert np.array_equal(ours(median_filter, values, dtype, window=window), ref.scipy_median(values, window)), name


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 2, 3), (7, 300, 3), (300, 7, 2)])
def test_median_and_gaussian_odd_sizes_match_scipy(shape):
    image = np.random.default_rng(2).random(shape)
    assert np.array_equal(ours(median_filter, image, window=3), ref.scipy_median(image, 3))
    assert np.abs(ours(gaussian_filter, image, window=5) - ref.scipy_gaussian(image, 5)).max() < 1e-12


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 5e-7)])
def test_gaussian_matches_scipy(images, dtype, tolerance):
    for name, image in images.items():
        for window, sigma in ((5, 1.0), (7, 2.0)):
            difference = ours(gaussian_filter, unit(image), dtype, window=window, sigma=sigma)
            difference -= ref.scipy_gaussian(unit(image), window, sigma)
            assert np.abs(difference).max() < tolerance, (name, window, sigma)


@pytest.mark.parametrize("window, sigma_spatial", [(5, 1.0), (3, 1.0), (7, 2.0)])
def test_bilateral_matches_skimage(images, window, sigma_spatial):
    for name, image in images.items():
        for scale in (1.0, 0.3):  # a dark image moves scikit-image's colour clamp
            values = unit(image) * scale
            ours_result = ours(bilateral_filter, values, torch.float32, window=window, sigma_spatial=sigma_spatial)
            expected = ref.skimage_bilateral(values, window, sigma_spatial)
            assert np.abs(ours_result - expected).max() < 5e-4, (name, scale)


def test_bilateral_constant_image_is_unchanged_like_skimage():
    image = np.full((9, 10, 3), 0.4)
    assert np.array_equal(ours(bilateral_filter, image), ref.skimage_bilateral(image, 5))


def test_textbook_bilateral_matches_its_definition():
    image = np.random.default_rng(3).random((8, 9, 3))
    sigma_spatial, sigma_color, radius = 1.5, 0.2, 2
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)))  # zeros outside
    expected = np.empty_like(image)
    for r in range(8):
        for c in range(9):
            total, weight_sum = 0.0, 0.0
            for dr in range(-radius, radius + 1):
                for dc in range(-radius, radius + 1):
                    neighbour = padded[r + radius + dr, c + radius + dc]
                    spatial = np.exp(-(dr * dr + dc * dc) / (2 * sigma_spatial**2))
                    colour = np.exp(-np.sum((neighbour - image[r, c]) ** 2) / (2 * sigma_color**2))
                    total = total + spatial * colour * neighbour
                    weight_sum += spatial * colour
            expected[r, c] = total / weight_sum
    got = ours(bilateral_filter, image, window=5, sigma_spatial=sigma_spatial, sigma_color=sigma_color, style="textbook")
    assert np.abs(got - expected).max() < 1e-12


@pytest.mark.parametrize("weight", PAPER_WEIGHTS)
def test_tv_bregman_is_close_to_skimage(images, weight):
    for name, image in images.items():
        got = ours(tv_bregman, unit(image), torch.float32, weight=weight)
        expected = ref.skimage_tv_bregman(unit(image), weight)
        difference = np.abs(got - expected)
        change = np.abs(expected - unit(image)).mean()
        # measured at 96 px: photographs and the random walk max <= 0.064, mean <= 0.0043; uniform
        # noise (the worst case: TV changes it most) max 0.236, mean 0.0157; mean <= 0.41 x change
        max_bound, mean_bound = (0.3, 0.02) if name == "noise" else (0.1, 0.006)
        assert difference.max() < max_bound and difference.mean() < mean_bound, (name, difference.max(), difference.mean())
        assert difference.mean() < 0.5 * change, (name, difference.mean(), change)


def test_tv_bregman_converges_to_skimage_minimiser():
    image = unit(bundled_photographs(48, ("coffee",))["coffee"].permute(1, 2, 0).numpy())
    from skimage.restoration import denoise_tv_bregman

    expected = denoise_tv_bregman(image, weight=10, channel_axis=-1, eps=1e-7, max_num_iter=3000)
    got = ours(tv_bregman, image, weight=10, max_iterations=3000, tolerance=1e-7)
    assert np.abs(got - expected).max() < 1e-3


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_bit_depth_is_the_exact_formula(images, bits):
    for name, image in images.items():
        assert np.array_equal(ours(bit_depth, unit(image), bits=bits), ref.numpy_bit_depth(unit(image), bits)), name
    halves = np.array([0.5, 1.5, 2.5, 3.5]).reshape(1, 4, 1) / 7  # exact .5 ties at 3 bits: half to even
    assert np.array_equal(ours(bit_depth, halves, bits=3), ref.numpy_bit_depth(halves, 3))


def test_numpy_lgs_is_the_lgs_core(images):
    # the benchmark's per-image NumPy/SciPy contender must compute LGS, or its timing means nothing
    from lgs_gpu import lgs

    for name in ("astronaut", "noise", "random_walk"):
        image = unit(images[name])
        expected = ours(lambda x: lgs(x, backend="reference"), image)
        assert np.abs(ref.numpy_lgs(image) - expected).max() < 1e-12, name
