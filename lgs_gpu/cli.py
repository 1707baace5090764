"""The ``lgs-gpu`` command: thin argument parsing over :mod:`lgs_gpu.defend` and :mod:`lgs_gpu.demo`."""

from __future__ import annotations

import argparse
import sys

from .lgs import BACKENDS, DEFAULT_OVERLAP, DEFAULT_SMOOTHING_FACTOR, DEFAULT_THRESHOLD, DEFAULT_WINDOW_SIZE


def _add_lgs_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--smoothing-factor", type=float, default=DEFAULT_SMOOTHING_FACTOR, help="λ (default 2.3)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="γ (default 0.1)")
    parser.add_argument("--window-size", type=int, default=DEFAULT_WINDOW_SIZE, help="window side (default 15)")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="window overlap (default 5)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def _device(requested: str | None) -> str:
    import torch

    return requested or ("cuda" if torch.cuda.is_available() else "cpu")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lgs-gpu", description="Local Gradients Smoothing on CPU and GPU")
    commands = parser.add_subparsers(dest="command", required=True)

    defend = commands.add_parser("defend", help="defend PNG / JPEG files or folders of them")
    defend.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    defend.add_argument("-o", "--output-dir", required=True, help="folder for the defended images")
    defend.add_argument("--save-map", action="store_true", help="also write ĝ as <name>_map.png")
    defend.add_argument("--format", choices=("png", "jpg", "same"), default="png", help="output format (default png)")
    _add_lgs_options(defend)

    demo = commands.add_parser("demo", help="LGS on bundled photographs with a planted noise patch")
    demo.add_argument("-o", "--output-dir", default="lgs-demo", help="folder for lgs_demo.png / .json")
    demo.add_argument("--size", type=int, default=299, help="image side in pixels (default 299)")
    demo.add_argument("--patch-fraction", type=float, default=0.04, help="patch area / image area (default 0.04)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--smoothing-factor", type=float, default=DEFAULT_SMOOTHING_FACTOR, help="λ (default 2.3)")
    demo.add_argument("--backend", choices=BACKENDS, default="auto")
    demo.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "defend":
            from .defend import defend_files

            summary = defend_files(
                args.inputs, args.output_dir, smoothing_factor=args.smoothing_factor, threshold=args.threshold,
                window_size=args.window_size, overlap=args.overlap, backend=args.backend,
                device=_device(args.device), save_map=args.save_map, output_format=args.format,
            )
            print(f"defended {len(summary.written)} image(s) into {args.output_dir}")
            for path, why in summary.skipped:
                print(f"skipped {path}: {why}", file=sys.stderr)
            return 0 if summary.written or not summary.skipped else 1
        from .demo import run_demo

        results = run_demo(
            args.output_dir, size=args.size, patch_fraction=args.patch_fraction,
            smoothing_factor=args.smoothing_factor, seed=args.seed, backend=args.backend, device=_device(args.device),
        )
        print(f"{'image':<12}{'patch suppressed':>18}{'rest suppressed':>18}{'patch strength':>16}{'rest strength':>15}")
        for r in results:
            print(
                f"{r['image']:<12}{r['patch_pixels_suppressed']:>18.1%}{r['other_pixels_suppressed']:>18.1%}"
                f"{r['patch_mean_strength']:>16.3f}{r['other_mean_strength']:>15.3f}"
            )
        print(f"wrote {args.output_dir}/lgs_demo.png and lgs_demo.json")
        return 0
    except (ValueError, TypeError) as error:
        print(f"lgs-gpu {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
