"""How far each LGS path lands from the literal reference, on real photographs and textured images.

Prints a Markdown table: per path and dtype, the largest absolute difference of the output (uint8
in levels; float16 has steps of 2^-11 = 4.9e-4 between 0.5 and 1) and the share of pixels whose
window decision differs from the reference's (a window mean within rounding
of γ can pass on one path and fail on another). The tests (``tests/test_lgs_parity.py``) hold the
paths to ≤ 1e-5 in float32, one step of the lower-precision dtypes, and ≤ 0.1% such pixels.

Run: ``python benchmarks/lgs_parity.py [--size 299] [--paths torch,compiled,triton]``. The Triton
kernels run interpreted on the CPU here (``TRITON_INTERPRET=1`` is set before they are imported).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lgs_gpu import lgs_stages  # noqa: E402
from lgs_gpu.data import DEMO_PHOTOGRAPHS, bundled_photographs  # noqa: E402

DTYPES = (torch.float32, torch.float16, torch.uint8)


def textured(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random scenes with a planted noise square each, float32 in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, size // 24, size // 24, generator=generator)
    images = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    side = size // 5
    for image in range(count):
        top, left = (int(v) for v in torch.randint(0, size - side, (2,), generator=generator))
        images[image, :, top : top + side, left : left + side] = torch.rand(3, side, side, generator=generator)
    return images


def as_dtype(images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (images * 255).round().to(torch.uint8) if dtype == torch.uint8 else images.to(dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--paths", default="torch,compiled,triton")
    args = parser.parse_args()
    photos = torch.stack(list(bundled_photographs(args.size, DEMO_PHOTOGRAPHS).values())).float() / 255
    images = torch.cat([photos, textured(5, args.size)])
    print(f"{len(DEMO_PHOTOGRAPHS)} bundled photographs + 5 textured images, {args.size} px\n")
    print("| path | dtype | max abs diff of the output | pixels whose window decision differs |")
    print("|---|---|---|---|")
    for dtype in DTYPES:
        batch = as_dtype(images, dtype)
        expected = lgs_stages(batch, backend="reference", stages=("output", "window_mask"))
        for path in args.paths.split(","):
            result = lgs_stages(batch, backend=path, stages=("output", "window_mask"))
            difference = (result.output.double() - expected.output.double()).abs().max().item()
            flipped = (result.window_mask != expected.window_mask).double().mean().item()
            print(f"| {path} | {str(dtype).removeprefix('torch.')} | {difference:.3g} | {flipped:.4%} |")


if __name__ == "__main__":
    main()
