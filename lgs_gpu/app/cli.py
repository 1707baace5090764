"""The ``lgs-gpu`` command: each command's work, called with the arguments :mod:`.options` parsed."""

from __future__ import annotations

import argparse
import sys

# Nothing here imports torch: --help and argument errors answer at once; each command imports its work.
from ..core.extras import MissingExtra
from . import allocator
from .configs import DefendConfig, percent
from .options import (
    DEFEND_EXISTING,
    DEFEND_FLAGS,
    LGS_FLAGS,
    RUNS,
    build_parser,
    comma_integers,
    comma_names,
    config_from,
)


def _defense_from_arguments(args: argparse.Namespace):
    """The defense of ``--defense SPEC``, or LGS built from the LGS flags (not both)."""
    from ..defenses import get
    from ..smoothing import LocalGradientsSmoothing

    given = {name: getattr(args, name) for name in LGS_FLAGS if getattr(args, name) is not None}
    if args.defense is not None:
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ValueError(
                f"{flags} cannot be combined with --defense; put them in the spec, e.g. "
                "--defense 'lgs:1.7,threshold=0.1,window=15,overlap=5,backend=torch'"
            )
        return get(args.defense)
    return LocalGradientsSmoothing(**given)


def _check_device(args: argparse.Namespace) -> None:
    """``--device`` (None: cuda if available, else cpu), and ``--backend`` against it, checked before any
    work: ``ValueError`` naming what is wrong, one plain line and exit 2 (the commands' own checks live
    in their API functions)."""
    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(args.device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {args.device!r} is not a torch device; accepted: cpu, cuda, cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {args.device}: no CUDA device here (torch.cuda.is_available() is False); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {args.device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"--device {args.device}: lgs-gpu runs on cpu or cuda")
    if getattr(args, "backend", None) in ("triton", "compiled"):
        wanted = "cuda" if args.backend == "triton" else "cpu"
        if not args.device.startswith(wanted):
            raise ValueError(f"--backend {args.backend} runs on {wanted} tensors; this run's device is {args.device}")


def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate, markdown

    config = config_from(args, *RUNS[args.command], device=args.device)
    result = calibrate(config)
    print(markdown(result))
    print(f"wrote {config.output_dir}/calibration.json, calibration.csv, calibration.md, calibration.png")
    if result["recommended"] is None:
        budget = args.budget if args.budget is not None else percent(config.budget)
        print(f"lgs-gpu calibrate: no setting stays within the {budget} budget", file=sys.stderr)
        return 1
    print(result["recommended"])
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate
    from .report import TABLE_TITLES, markdown_table

    config = config_from(args, *RUNS[args.command], device=args.device)
    if args.calibration:
        from .calibrate import read_recommended

        recommended = read_recommended(args.calibration)
        if recommended not in config.defenses:
            config.defenses = [*config.defenses, recommended]
        config.adaptive_defense = recommended
    results = evaluate(config)
    if results is None:  # not rank 0 under torchrun
        return 0
    print(f"model {results['model']['name']}, {results['images']['count']} images, labels: {results['label_source']}")
    _print_reader_reports(results["images"]["skipped"], results["images"]["notes"])
    for key in ("table1", "table3", "adaptive", "table2", "certified"):
        if results["tables"][key]:
            print(f"\n{TABLE_TITLES[key]}\n\n{markdown_table(results['tables'][key])}")
    print(
        f"wrote {config.output_dir}/results.json, results.csv, results.md, figure4_defenses.png, figure2_lgs_stages.png"
    )
    return 0


def _certify(args: argparse.Namespace) -> int:
    from .certify import certify, markdown

    config = config_from(args, *RUNS[args.command], device=args.device)
    results = certify(config)
    if results is None:  # not rank 0 under torchrun
        return 0
    _print_reader_reports(results["skipped"], results["notes"])
    print(markdown(results))
    print(f"wrote {config.output_dir}/certify.json, certify.csv, certify.md")
    return 0


def _defend(args: argparse.Namespace) -> int:
    from .defend import WriteFailure, defend_files
    from .resources import default_workers

    config = config_from(
        args,
        DefendConfig,
        DEFEND_FLAGS + DEFEND_EXISTING,
        defense=_defense_from_arguments(args),
        device=args.device,
        decode_on_device=False if args.cpu_decode else None,
    )
    if args.workers is None:
        config.workers = default_workers()
    try:
        summary = defend_files(args.inputs, args.output_dir, config)
    except KeyboardInterrupt:
        print(
            f"lgs-gpu defend: interrupted; every file in {args.output_dir} is whole and the finished ones are "
            "recorded: add --resume to finish",
            file=sys.stderr,
        )
        return 130
    except WriteFailure as failure:
        print(f"lgs-gpu defend: {failure}", file=sys.stderr)
        return 1
    rank = f"rank {summary.rank} of {summary.world}: " if summary.world > 1 else ""
    kept = f" (kept {len(summary.kept)} finished earlier)" if summary.kept else ""
    print(f"{rank}defended {len(summary.written)} image(s) into {args.output_dir}{kept}; {summary.threads}")
    _print_reader_reports(summary.skipped, summary.notes, rank)
    return 0 if summary.written or summary.kept or not summary.skipped else 1


def _info(args: argparse.Namespace) -> int:
    import platform

    import torch

    from ..core.torch_internals import degraded
    from ..smoothing import backend_info, compiled_cache_info
    from .resources import ThreadPlan, default_workers

    print(
        f"lgs_gpu on Python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print(f"CUDA: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'no device'}")
    print(f"backends for {args.device} tensors:")
    for name, state in backend_info(args.device).items():
        print(f"  {name}: {state}")
    print(f"compiled CPU programs: {compiled_cache_info()}")
    print(
        f"memory allocator of the commands: {allocator.configure()} (--allocator or ${allocator.ENVIRONMENT_VARIABLE})"
    )
    for instead in degraded().values():
        print(f"degraded: {instead}")
    print(
        f"defend by default: {ThreadPlan.choose(default_workers(), None, None).describe()}; "
        "--workers, --write-threads and --threads change it (docs/defend.md)"
    )
    return 0


def _warmup(args: argparse.Namespace) -> int:
    import time

    import torch

    from ..smoothing import compiled_cache_info, warmup

    names = comma_names(args.dtypes, "--dtypes")
    unknown = [name for name in names if name not in ("float32", "float64")]
    if unknown or not names:
        raise ValueError(f"--dtypes takes float32 and/or float64, comma-separated. Got {args.dtypes!r}")
    started = time.perf_counter()
    try:
        names = warmup(
            tuple(getattr(torch, name) for name in names),
            tuple(comma_integers(args.window_sizes, "--window-sizes")),
            channels=tuple(comma_integers(args.channels, "--channels")),
        )
    except RuntimeError as error:  # an unusable cache folder, no C++ compiler: say it in one line
        raise ValueError(f"{error} (LGS_GPU_CACHE_DIR sets the cache folder)") from error
    print(f"ready in {time.perf_counter() - started:.1f} s: {', '.join(names)}")
    print(f"compiled CPU programs: {compiled_cache_info()}")
    return 0


def _defenses(args: argparse.Namespace) -> int:
    from ..defenses import available

    for info in available():
        grid = ", ".join(info.spec_for(value) for value in info.paper_grid)
        print(f"{info.name}" + (f" (aliases: {', '.join(info.aliases)})" if info.aliases else ""))
        print(f"  differentiable: {'yes' if info.differentiable else 'no (attack with BPDA)'}")
        print(f"  agrees with: {info.checked_against}")
        print(f"  paper's grid: {grid}")
        if info.name == "lgs":
            from ..core.parameters import MODEL_PRESETS

            for model, preset in MODEL_PRESETS.items():
                print(f"  lgs@{model}: calibrated for {model}: " + ", ".join(f"{k}={v}" for k, v in preset.items()))
        for name, accepted in info.parameters.items():
            marker = " (value after ':')" if name == info.main_parameter else ""
            print(f"    {name}{marker}: {accepted}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_defended

    summary = export_defended(
        args.output,
        args.model,
        args.defense,
        weights=None if args.weights == "none" else args.weights,
        size=args.size,
        device=args.device,
    )
    print(
        f"wrote {summary.path}: {summary.defense} + {summary.model}, [B, {', '.join(map(str, summary.input_shape))}] "
        f"on {summary.device}; differs from the eager model by {summary.max_difference:.2g} on a new batch"
    )
    print("load it with:")
    print(summary.loading_instructions())
    return 0


def _print_reader_reports(skipped: list, notes: list, prefix: str = "") -> None:
    """The images skipped and why, and what the reader did to others (first frame only, 16 bits scaled), on stderr."""
    for path, why in skipped:
        print(f"{prefix}skipped {path}: {why}", file=sys.stderr)
    for path, note in notes:
        print(f"{prefix}note {path}: {note}", file=sys.stderr)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    results = run_demo(
        args.output_dir,
        size=args.size,
        patch_fraction=args.patch_fraction,
        smoothing_factor=args.smoothing_factor,
        seed=args.seed,
        backend=args.backend,
        device=args.device,
    )
    print(f"{'image':<12}{'patch suppressed':>18}{'rest suppressed':>18}{'patch strength':>16}{'rest strength':>15}")
    for r in results:
        print(
            f"{r['image']:<12}{r['patch_pixels_suppressed']:>18.1%}{r['other_pixels_suppressed']:>18.1%}"
            f"{r['patch_mean_strength']:>16.3f}{r['other_mean_strength']:>15.3f}"
        )
    print(f"wrote {args.output_dir}/lgs_demo.png and lgs_demo.json")
    return 0


COMMANDS = {
    "defend": _defend,
    "defenses": _defenses,
    "info": _info,
    "warmup": _warmup,
    "evaluate": _evaluate,
    "calibrate": _calibrate,
    "certify": _certify,
    "export": _export,
    "demo": _demo,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "allocator"):  # before torch allocates anything
            allocator.configure(args.allocator)
        if hasattr(args, "device"):
            _check_device(args)
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, MissingExtra) as error:
        print(f"lgs-gpu {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # defend says more itself; the resumable runs keep every finished record
        print(
            f"lgs-gpu {args.command}: interrupted"
            + ("; every finished record is kept: run the same command to resume" if args.command in RUNS else ""),
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
