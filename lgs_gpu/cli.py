"""The ``lgs-gpu`` command: thin argument parsing over :mod:`lgs_gpu.defend` and :mod:`lgs_gpu.demo`."""

from __future__ import annotations

import argparse
import sys

from .lgs import BACKENDS, DEFAULT_OVERLAP, DEFAULT_SMOOTHING_FACTOR, DEFAULT_THRESHOLD, DEFAULT_WINDOW_SIZE

_LGS_FLAGS = {
    "smoothing_factor": DEFAULT_SMOOTHING_FACTOR,
    "threshold": DEFAULT_THRESHOLD,
    "window_size": DEFAULT_WINDOW_SIZE,
    "overlap": DEFAULT_OVERLAP,
    "backend": "auto",
}


def _add_lgs_options(parser: argparse.ArgumentParser) -> None:
    # Defaults are None so that an explicit flag can be told apart from a spec given with --defense.
    parser.add_argument("--smoothing-factor", type=float, help="λ (default 2.3)")
    parser.add_argument("--threshold", type=float, help="γ (default 0.1)")
    parser.add_argument("--window-size", type=int, help="window side (default 15)")
    parser.add_argument("--overlap", type=int, help="window overlap (default 5)")
    parser.add_argument("--backend", choices=BACKENDS, help="LGS backend (default auto)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def _defense_from_arguments(args: argparse.Namespace):
    """The defense of ``--defense SPEC``, or LGS built from the LGS flags (not both)."""
    from .defenses import get
    from .lgs import LocalGradientsSmoothing

    given = {name: getattr(args, name) for name in _LGS_FLAGS if getattr(args, name) is not None}
    if args.defense is not None:
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ValueError(
                f"{flags} cannot be combined with --defense; put them in the spec, e.g. "
                "--defense 'lgs:1.7,threshold=0.1,window=15,overlap=5,backend=torch'"
            )
        return get(args.defense)
    return LocalGradientsSmoothing(**{**_LGS_FLAGS, **given})


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
    defend.add_argument(
        "--defense",
        help="defense spec, e.g. jpeg:30, tvm:10, median:3, gaussian:5, bilateral:5, bitdepth:3, lgs:2.3, "
        "lgs+median:3, median:3|lgs:2.3 (default: LGS with the flags below); see `lgs-gpu defenses`",
    )
    _add_lgs_options(defend)

    commands.add_parser("defenses", help="list the defenses, their parameters and the paper's grid")

    demo = commands.add_parser("demo", help="LGS on bundled photographs with a planted noise patch")
    demo.add_argument("-o", "--output-dir", default="lgs-demo", help="folder for lgs_demo.png / .json")
    demo.add_argument("--size", type=int, default=299, help="image side in pixels (default 299)")
    demo.add_argument("--patch-fraction", type=float, default=0.04, help="patch area / image area (default 0.04)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--smoothing-factor", type=float, default=DEFAULT_SMOOTHING_FACTOR, help="λ (default 2.3)")
    demo.add_argument("--backend", choices=BACKENDS, default="auto")
    demo.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    return parser


def _print_defenses() -> None:
    from .defenses import available

    for info in available():
        grid = ", ".join(info.spec_for(value) for value in info.paper_grid)
        print(f"{info.name}" + (f" (aliases: {', '.join(info.aliases)})" if info.aliases else ""))
        print(f"  differentiable: {'yes' if info.differentiable else 'no (attack with BPDA)'}")
        print(f"  agrees with: {info.checked_against}")
        print(f"  paper's grid: {grid}")
        for name, accepted in info.parameters.items():
            marker = " (value after ':')" if name == info.main_parameter else ""
            print(f"    {name}{marker}: {accepted}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "defend":
            from .defend import defend_files

            summary = defend_files(
                args.inputs, args.output_dir, defense=_defense_from_arguments(args),
                device=_device(args.device), save_map=args.save_map, output_format=args.format,
            )
            print(f"defended {len(summary.written)} image(s) into {args.output_dir}")
            for path, why in summary.skipped:
                print(f"skipped {path}: {why}", file=sys.stderr)
            return 0 if summary.written or not summary.skipped else 1
        if args.command == "defenses":
            _print_defenses()
            return 0
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
