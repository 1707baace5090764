"""Measure each baseline defense against the CPU library it is checked with, on real photographs.

Prints, per defense and parameter of the paper's grid, the largest and the mean absolute
difference (on the [0, 1] scale) over scikit-image's and scikit-learn's sample photographs.
The README's parity table and the tests' tolerances come from this script.

    python benchmarks/defense_parity.py [--size 160]
"""

from __future__ import annotations

import argparse

import cpu_references as ref
import numpy as np
import torch

from lgs_gpu.data import ALL_PHOTOGRAPHS, bundled_photographs
from lgs_gpu.defenses import bilateral_filter, bit_depth, gaussian_filter, jpeg, median_filter, tv_bregman


def ours(function, image: np.ndarray, dtype: torch.dtype, **parameters) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).to(dtype)
    return function(tensor, **parameters).permute(1, 2, 0).double().numpy()


def converged_tv(image: np.ndarray, weight: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_bregman

    return denoise_tv_bregman(image, weight=weight, channel_axis=-1, eps=1e-6, max_num_iter=2000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160)
    args = parser.parse_args()
    images = {name: image.permute(1, 2, 0).numpy() for name, image in bundled_photographs(args.size, ALL_PHOTOGRAPHS).items()}
    cases = [
        *[(f"jpeg:{q}", lambda im, q=q: (ours(jpeg, im, torch.uint8, quality=q) / 255,
                                          ref.pillow_jpeg(im, q) / 255)) for q in (80, 60, 40, 30, 20, 10)],
        *[(f"tvm:{w}", lambda im, w=w: (ours(tv_bregman, im / 255, torch.float32, weight=w),
                                         ref.skimage_tv_bregman(im / 255, w))) for w in (10, 20, 30)],
        # how far each solver's default (early-stopped) answer is from the converged minimiser
        *[(f"tvm:{w} ours-min", lambda im, w=w: (ours(tv_bregman, im / 255, torch.float64, weight=w),
                                                  converged_tv(im / 255, w))) for w in (10, 30)],
        *[(f"tvm:{w} skim-min", lambda im, w=w: (ref.skimage_tv_bregman(im / 255, w),
                                                  converged_tv(im / 255, w))) for w in (10, 30)],
        ("median:3", lambda im: (ours(median_filter, im / 255, torch.float64, window=3), ref.scipy_median(im / 255, 3))),
        ("gaussian:5", lambda im: (ours(gaussian_filter, im / 255, torch.float32, window=5), ref.scipy_gaussian(im / 255, 5))),
        ("gaussian:5 f64", lambda im: (ours(gaussian_filter, im / 255, torch.float64, window=5), ref.scipy_gaussian(im / 255, 5))),
        ("bilateral:5", lambda im: (ours(bilateral_filter, im / 255, torch.float32, window=5), ref.skimage_bilateral(im / 255, 5))),
        *[(f"bitdepth:{b}", lambda im, b=b: (ours(bit_depth, im / 255, torch.float64, bits=b),
                                              ref.numpy_bit_depth(im / 255, b))) for b in (1, 2, 3)],
    ]  # fmt: skip
    print(f"{len(images)} photographs ({', '.join(images)}) at {args.size}x{args.size}")
    print(f"{'defense':<16}{'max |diff|':>12}{'mean |diff|':>13}{'mean |change|':>15}")
    for label, run in cases:
        worst, mean, change = 0.0, [], []
        for image in images.values():
            got, expected = run(image)
            worst = max(worst, float(np.abs(got - expected).max()))
            mean.append(float(np.abs(got - expected).mean()))
            change.append(float(np.abs(expected - image / 255).mean()))
        print(f"{label:<16}{worst:>12.3g}{np.mean(mean):>13.3g}{np.mean(change):>15.3g}")


if __name__ == "__main__":
    main()
