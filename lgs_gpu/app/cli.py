"""The ``lgs-gpu`` command: thin argument parsing over the application modules beside it."""

from __future__ import annotations

import argparse
import copy
import sys

# Nothing here imports torch: --help and argument errors answer at once; each command imports its work.
from ..core.extras import MissingExtra
from ..core.parameters import (
    BACKENDS,
    DEFAULT_OVERLAP,
    DEFAULT_SMOOTHING_FACTOR,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW_SIZE,
)
from . import allocator
from .presets import ATTACKS, DEFAULT_LGS_SPEC, QUICK_CALIBRATION, QUICK_EVALUATION

_LGS_FLAGS = {
    "smoothing_factor": DEFAULT_SMOOTHING_FACTOR,
    "threshold": DEFAULT_THRESHOLD,
    "window_size": DEFAULT_WINDOW_SIZE,
    "overlap": DEFAULT_OVERLAP,
    "backend": "auto",
}


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def _device_options() -> argparse.ArgumentParser:
    parser = _parent()
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    return parser


def _allocator_options() -> argparse.ArgumentParser:
    parser = _parent()
    parser.add_argument(
        "--allocator",
        choices=allocator.CHOICES,
        help="tuned: glibc's malloc set for large tensors, so batches reuse memory instead of "
        f"page-faulting it in again; system: as it is (default tuned, or ${allocator.ENVIRONMENT_VARIABLE})",
    )
    return parser


def _lgs_options() -> argparse.ArgumentParser:
    parser = _parent()
    # Defaults are None so that an explicit flag can be told apart from a spec given with --defense.
    parser.add_argument("--smoothing-factor", type=float, help=f"λ (default {DEFAULT_SMOOTHING_FACTOR})")
    parser.add_argument("--threshold", type=float, help=f"γ (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--window-size", type=int, help=f"window side (default {DEFAULT_WINDOW_SIZE})")
    parser.add_argument("--overlap", type=int, help=f"window overlap (default {DEFAULT_OVERLAP})")
    parser.add_argument("--backend", choices=BACKENDS, help="LGS backend (default auto)")
    return parser


def _attack_options() -> argparse.ArgumentParser:
    """What evaluate and calibrate share: the LaVAN steps, EoT, seed, records and threads."""
    parser = _parent()
    parser.add_argument("--iterations", type=int, help="LaVAN steps per image (default 1000)")
    parser.add_argument("--eot-samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    return parser


def _run_options(output_dir: str) -> argparse.ArgumentParser:
    """The output folder, model and images of a resumable run (evaluate, calibrate, certify)."""
    parser = _parent()
    parser.add_argument("-o", "--output-dir", default=output_dir, help="results folder (reused to resume)")
    parser.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="efficientnet_lite0 (offline), inception_v3, any torchvision classifier",
    )
    parser.add_argument("--weights", default="default", help="'default', 'none' (untrained) or a checkpoint file")
    parser.add_argument("--data", help="image folder (default: the bundled photographs)")
    parser.add_argument(
        "--imagenet",
        action="store_true",
        help="require ground-truth ImageNet labels (without it they are still read where the layout "
        "gives them: synset folders, synset-prefixed names, ILSVRC2012_val_* names)",
    )
    parser.add_argument("--imagenet-labels", help="a 'filename label' file (labels 0..999 in torchvision's order)")
    parser.add_argument("--limit", type=int, help="the first N images only")
    parser.add_argument(
        "--workers",
        type=int,
        help="processes decoding the --data folder's batches ahead of the work (0: this one; default up to 2)",
    )
    return parser


def _run_inputs(args: argparse.Namespace) -> dict:
    """The :class:`.runs.RunInputs` fields from the flags of :func:`_run_options`."""
    return {
        "model": args.model,
        "weights": None if args.weights == "none" else args.weights,
        "data": args.data,
        "imagenet": args.imagenet,
        "imagenet_labels": args.imagenet_labels,
        "limit": args.limit,
        "workers": args.workers,
    }


def _defense_from_arguments(args: argparse.Namespace):
    """The defense of ``--defense SPEC``, or LGS built from the LGS flags (not both)."""
    from ..defenses import get
    from ..smoothing.front import LocalGradientsSmoothing

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
    """``--device``, checked before any work (``ValueError`` naming what is wrong), or the default."""
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {requested!r} is not a torch device; accepted: cpu, cuda, cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {requested}: no CUDA device here (torch.cuda.is_available() is False); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"--device {requested}: lgs-gpu runs on cpu or cuda")
    return requested


def _check_arguments(args: argparse.Namespace) -> None:
    """The device checks every command shares, before any work (the commands' own checks live in
    their API functions): one plain line, exit 2."""
    if hasattr(args, "device"):
        args.device = _device(args.device)
    if getattr(args, "backend", None) in ("triton", "compiled") and hasattr(args, "device"):
        wanted = "cuda" if args.backend == "triton" else "cpu"
        if not args.device.startswith(wanted):
            raise ValueError(f"--backend {args.backend} runs on {wanted} tensors; this run's device is {args.device}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lgs-gpu", description="Local Gradients Smoothing on CPU and GPU")
    commands = parser.add_subparsers(dest="command", required=True)
    device, memory, lgs_flags = _device_options(), _allocator_options(), _lgs_options()
    attack = _attack_options()

    defend = commands.add_parser(
        "defend", parents=[lgs_flags, device, memory], help="defend image files or folders of them"
    )
    defend.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    defend.add_argument("-o", "--output-dir", required=True, help="folder for the defended images")
    defend.add_argument("--save-map", action="store_true", help="also write ĝ as <name>_map.png")
    defend.add_argument("--format", choices=("png", "jpg", "same"), default="png", help="output format (default png)")
    defend.add_argument("--batch-size", type=int, default=8, help="images of one size defended together (default 8)")
    defend.add_argument(
        "--batch-memory",
        type=float,
        metavar="GB",
        help="memory one batch may use; fewer images per batch beyond it (default: a quarter of the "
        "available RAM, half the free GPU memory)",
    )
    defend.add_argument("--workers", type=int, help="decoding processes (0: decode in this one; default min(4, CPUs))")
    defend.add_argument("--write-threads", type=int, help="encoding and writing threads (default: one per CPU)")
    defend.add_argument(
        "--threads",
        type=int,
        help="torch threads of the main process (default: the CPUs the workers leave, at least 1)",
    )
    defend.add_argument(
        "--png-level",
        type=int,
        default=6,
        choices=range(10),
        metavar="0-9",
        help="PNG zlib level: 1 encodes ~5x faster, files ~10%% larger; lossless at all (default 6)",
    )
    existing = defend.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume",
        action="store_true",
        help="keep outputs the manifest says this defense made; do the rest (docs/defend.md)",
    )
    existing.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    defend.add_argument(
        "--cpu-decode", action="store_true", help="decode JPEGs on the CPU on CUDA too (default nvJPEG)"
    )
    defend.add_argument(
        "--defense",
        help="defense spec, e.g. jpeg:30, tvm:10, median:3, gaussian:5, bilateral:5, bitdepth:3, lgs:2.3, "
        "lgs+median:3, median:3|lgs:2.3 (default: LGS with the flags below); see `lgs-gpu defenses`",
    )

    commands.add_parser("defenses", help="list the defenses, their parameters and the paper's grid")
    commands.add_parser(
        "info", parents=[device], help="versions, devices, and which LGS backend runs where (and why not)"
    )
    warm = commands.add_parser(
        "warmup",
        parents=[memory],
        help="build the compiled CPU path's programs now (once per machine; LGS_GPU_CACHE_DIR moves them)",
    )
    warm.add_argument(
        "--dtypes",
        default="float32",
        help="compute dtypes, comma-separated: float32 (also serves uint8 / float16), float64",
    )
    warm.add_argument("--window-sizes", default="15", help="window sides, comma-separated, e.g. 15,25 (default 15)")
    warm.add_argument("--channels", default="3", help="image channel counts, comma-separated, e.g. 1,3 (default 3)")

    evaluate = commands.add_parser(
        "evaluate",
        parents=[_run_options("lgs-evaluation"), attack, device, memory],
        help="attacks x defenses -> the paper's Tables 1-3 and Figures 2 / 4 (resumable; torchrun shards it)",
    )
    evaluate.add_argument("--defenses", help="comma-free list of specs separated by ';' (default: the paper's grid)")
    evaluate.add_argument("--attacks", help=f"subset of {','.join(ATTACKS)} (default: all)")
    evaluate.add_argument("--lavan-fractions", help="LaVAN patch areas (default 0.02,0.03,0.04)")
    evaluate.add_argument("--patch-fraction", type=float, default=0.1)
    evaluate.add_argument("--patch-steps", type=int, default=500)
    evaluate.add_argument(
        "--patch-images",
        type=int,
        default=512,
        help="the universal patch is trained on the first N images (default 512)",
    )
    evaluate.add_argument("--bpda-fraction", type=float, default=0.02)
    evaluate.add_argument("--bpda-defenses", help="';'-separated specs for Table 3 (default: every defense but none)")
    evaluate.add_argument(
        "--adaptive-defense", help=f"the LGS setting attacked with exact gradients (default {DEFAULT_LGS_SPEC})"
    )
    evaluate.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op CPU threads (default 1); part of the run: other counts give other numbers",
    )
    evaluate.add_argument(
        "--quick",
        action="store_true",
        help="the README's small run: 4 photographs, LaVAN 2%% and 4%% at 100 steps, no patch, "
        "a short defense list; flags given as well take precedence",
    )
    evaluate.add_argument(
        "--calibration", help="a calibration.json: score its recommended spec too and attack it adaptively"
    )

    calibrate = commands.add_parser(
        "calibrate",
        parents=[_run_options("lgs-calibration"), attack, device, memory],
        help="sweep λ, γ and the window size; recommend LGS settings for a clean-accuracy budget",
    )
    calibrate.add_argument(
        "--budget",
        default="5%",
        help="clean accuracy the defense may cost: points with a %% sign (default 5%%) or a fraction (0.05)",
    )
    calibrate.add_argument("--smoothing-factors", help="λ grid, comma-separated (default 0.5,1,1.5,2.3,3,4,6)")
    calibrate.add_argument("--thresholds", help="γ grid, comma-separated (default 0.05,0.1,0.15,0.2,0.25,0.3,0.4,0.5)")
    calibrate.add_argument(
        "--window-sizes", help="window sides, comma-separated (default 9,15,25); overlap = round(window / 3)"
    )
    calibrate.add_argument("--patch-fraction", type=float, default=0.04, help="LaVAN patch area (default 0.04)")
    calibrate.add_argument("--threads", type=int, default=1, help="intra-op CPU threads (default 1)")
    calibrate.add_argument(
        "--no-adaptive", action="store_true", help="skip the exact-gradient and BPDA attacks on the result"
    )
    calibrate.add_argument(
        "--quick",
        action="store_true",
        help="a 3 x 3 grid at 15-pixel windows, LaVAN at 100 steps; flags given as well take precedence",
    )

    certify = commands.add_parser(
        "certify",
        parents=[_run_options("lgs-certify"), device, memory],
        help="PatchCleanser: clean and certified accuracy against patches (resumable; torchrun shards it)",
    )
    certify.add_argument(
        "--patch", default="1%,2%,3%", help="patch sizes as shares of the image area (default 1%%,2%%,3%%)"
    )
    certify.add_argument("--masks", type=int, default=6, help="masks per axis (default 6: 36 masks)")
    certify.add_argument("--batch-size", type=int, default=8, help="images per record (default 8)")
    certify.add_argument(
        "--model-batch-size", type=int, help="masked images per model call (default: 8 on CPU, 128 on CUDA)"
    )
    certify.add_argument("--threads", type=int, default=1, help="intra-op CPU threads (default 1)")

    export = commands.add_parser(
        "export",
        parents=[device],
        help="package a defended classifier as one AOTInductor .pt2 (checked against eager; docs/deploy.md)",
    )
    export.add_argument("-o", "--output", default="defended.pt2", help="the package to write (default defended.pt2)")
    export.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="efficientnet_lite0 (offline), inception_v3, any torchvision classifier",
    )
    export.add_argument("--weights", default="default", help="'default', 'none' (untrained) or a checkpoint file")
    export.add_argument(
        "--defense",
        help="defense spec in front of the model (default: lgs@<model>, its calibrated preset, "
        "where it has one, else lgs); see `lgs-gpu defenses`",
    )
    export.add_argument("--size", type=int, help="image side the package takes (default: the model's input size)")

    demo = commands.add_parser(
        "demo", parents=[device, memory], help="LGS on bundled photographs with a planted noise patch"
    )
    demo.add_argument("-o", "--output-dir", default="lgs-demo", help="folder for lgs_demo.png / .json")
    demo.add_argument("--size", type=int, default=299, help="image side in pixels (default 299)")
    demo.add_argument("--patch-fraction", type=float, default=0.04, help="patch area / image area (default 0.04)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--smoothing-factor",
        type=float,
        default=DEFAULT_SMOOTHING_FACTOR,
        help=f"λ (default {DEFAULT_SMOOTHING_FACTOR})",
    )
    demo.add_argument("--backend", choices=BACKENDS, default="auto")
    return parser


def _specs(text: str | None, flag: str = "--defenses") -> list[str] | None:
    if text is None:
        return None
    specs = [spec.strip() for spec in text.split(";") if spec.strip()]
    if not specs:  # "" or ";" must not fall back to the whole default grid
        raise ValueError(
            f"{flag} names no defense (got {text!r}); give specs separated by ';', e.g. 'none;lgs;jpeg:30'"
        )
    return specs


def _numbers(text: str, flag: str, kind=float) -> list:
    try:
        return [kind(value) for value in text.split(",") if value.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated numbers. Got {text!r}") from None


def _fraction(text: str, flag: str) -> float:
    """``5%`` or ``0.05`` as 0.05."""
    try:
        return float(text[:-1]) / 100 if text.strip().endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"{flag} takes a share like 5% or 0.05. Got {text!r}") from None


def _with_preset(given: dict, preset: dict, quick: bool) -> dict:
    """The config fields to set: the flags given (not None), then, with ``--quick``, the preset's others.
    Fields in neither keep the config's defaults."""
    chosen = {name: value for name, value in given.items() if value is not None}
    return {**copy.deepcopy(preset), **chosen} if quick else chosen


def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate import CalibrationConfig, calibrate, markdown

    given = {"iterations": args.iterations}
    for name, kind in (("smoothing_factors", float), ("thresholds", float), ("window_sizes", int)):
        text = getattr(args, name)
        given[name] = None if text is None else _numbers(text, "--" + name.replace("_", "-"), kind)
    config = CalibrationConfig(
        output_dir=args.output_dir,
        **_run_inputs(args),
        budget=_fraction(args.budget, "--budget"),
        patch_fraction=args.patch_fraction,
        eot_samples=args.eot_samples,
        seed=args.seed,
        batch_size=args.batch_size,
        device=_device(args.device),
        threads=args.threads,
        adaptive=not args.no_adaptive,
        **_with_preset(given, QUICK_CALIBRATION, args.quick),
    )
    result = calibrate(config)
    print(markdown(result))
    print(f"wrote {args.output_dir}/calibration.json, calibration.csv, calibration.md, calibration.png")
    if result["recommended"] is None:
        print(f"lgs-gpu calibrate: no setting stays within the {args.budget} budget", file=sys.stderr)
        return 1
    print(result["recommended"])
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ..defenses import paper_grid
    from .evaluate import EvaluationConfig, evaluate
    from .report import TABLE_TITLES, markdown_table

    given = {
        "limit": args.limit,
        "lavan_iterations": args.iterations,
        "defenses": _specs(args.defenses),
        "attacks": None if args.attacks is None else [a.strip() for a in args.attacks.split(",") if a.strip()],
        "lavan_fractions": None
        if args.lavan_fractions is None
        else _numbers(args.lavan_fractions, "--lavan-fractions"),
        "bpda_defenses": _specs(args.bpda_defenses, "--bpda-defenses"),
        "adaptive_defense": args.adaptive_defense,
    }
    chosen = _with_preset(given, QUICK_EVALUATION, args.quick)
    if args.calibration:
        from .calibrate import read_recommended

        recommended = read_recommended(args.calibration)
        specs = chosen.get("defenses") or paper_grid()
        chosen["defenses"] = specs if recommended in specs else [*specs, recommended]
        chosen["adaptive_defense"] = recommended
    config = EvaluationConfig(
        output_dir=args.output_dir,
        **{**_run_inputs(args), **chosen},
        patch_fraction=args.patch_fraction,
        patch_steps=args.patch_steps,
        patch_images=args.patch_images,
        bpda_fraction=args.bpda_fraction,
        eot_samples=args.eot_samples,
        seed=args.seed,
        batch_size=args.batch_size,
        device=_device(args.device),
        threads=args.threads,
    )
    results = evaluate(config)
    if results is None:  # not rank 0 under torchrun
        return 0
    print(f"model {results['model']['name']}, {results['images']['count']} images, labels: {results['label_source']}")
    _print_reader_reports(results["images"]["skipped"], results["images"]["notes"])
    for key in ("table1", "table3", "adaptive", "table2", "certified"):
        if results["tables"][key]:
            print(f"\n{TABLE_TITLES[key]}\n\n{markdown_table(results['tables'][key])}")
    print(
        f"wrote {args.output_dir}/results.json, results.csv, results.md, figure4_defenses.png, figure2_lgs_stages.png"
    )
    return 0


def _fractions(text: str, name: str) -> list[float]:
    """``"1%,2%"`` or ``"0.01,0.02"`` as fractions."""
    try:
        return [
            float(v.strip().rstrip("%")) / (100 if v.strip().endswith("%") else 1) for v in text.split(",") if v.strip()
        ]
    except ValueError as error:
        raise ValueError(
            f"{name} must be comma-separated percentages or fractions, e.g. 1%,2%. Got {text!r}"
        ) from error


def _certify(args: argparse.Namespace) -> int:
    from .certify import CertifyConfig, certify, markdown

    config = CertifyConfig(
        output_dir=args.output_dir,
        **_run_inputs(args),
        patch_fractions=_fractions(args.patch, "--patch"),
        masks_per_axis=args.masks,
        images_per_batch=args.batch_size,
        model_batch_size=args.model_batch_size,
        device=_device(args.device),
        threads=args.threads,
    )
    results = certify(config)
    if results is None:  # not rank 0 under torchrun
        return 0
    _print_reader_reports(results["skipped"], results["notes"])
    print(markdown(results))
    print(f"wrote {args.output_dir}/certify.json, certify.csv, certify.md")
    return 0


def _integers(text: str, name: str) -> list[int]:
    try:
        return [int(value) for value in text.split(",") if value.strip()]
    except ValueError as error:
        raise ValueError(f"{name} must be comma-separated integers. Got {text!r}") from error


def _info(args: argparse.Namespace) -> int:
    import platform

    import torch

    from ..smoothing.front import backend_info, compiled_cache_info

    device = _device(args.device)
    print(
        f"lgs_gpu on Python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print(f"CUDA: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'no device'}")
    print(f"backends for {device} tensors:")
    for name, state in backend_info(device).items():
        print(f"  {name}: {state}")
    print(f"compiled CPU programs: {compiled_cache_info()}")
    print(
        f"memory allocator of the commands: {allocator.configure()} (--allocator or ${allocator.ENVIRONMENT_VARIABLE})"
    )
    from ..core.torch_internals import degraded

    for instead in degraded().values():
        print(f"degraded: {instead}")
    from .resources import ThreadPlan, default_workers

    print(
        f"defend by default: {ThreadPlan.choose(default_workers(), None, None).describe()}; "
        "--workers, --write-threads and --threads change it (docs/defend.md)"
    )
    return 0


def _warmup(args: argparse.Namespace) -> int:
    import time

    import torch

    from ..smoothing.front import compiled_cache_info, warmup

    names = [name.strip() for name in args.dtypes.split(",") if name.strip()]
    unknown = [name for name in names if name not in ("float32", "float64")]
    if unknown or not names:
        raise ValueError(f"--dtypes takes float32 and/or float64, comma-separated. Got {args.dtypes!r}")
    try:
        window_sizes = tuple(int(size) for size in args.window_sizes.split(","))
    except ValueError:
        raise ValueError(f"--window-sizes takes integers, comma-separated. Got {args.window_sizes!r}") from None
    started = time.perf_counter()
    try:
        names = warmup(
            tuple(getattr(torch, name) for name in names),
            window_sizes,
            channels=tuple(_integers(args.channels, "--channels")),
        )
    except RuntimeError as error:  # an unusable cache folder, no C++ compiler: say it in one line
        raise ValueError(f"{error} (LGS_GPU_CACHE_DIR sets the cache folder)") from error
    print(f"ready in {time.perf_counter() - started:.1f} s: {', '.join(names)}")
    print(f"compiled CPU programs: {compiled_cache_info()}")
    return 0


def _print_defenses() -> None:
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


def _export(args: argparse.Namespace) -> int:
    from .export import export_defended

    summary = export_defended(
        args.output,
        args.model,
        args.defense,
        weights=None if args.weights == "none" else args.weights,
        size=args.size,
        device=_device(args.device),
    )
    print(
        f"wrote {summary.path}: {summary.defense} + {summary.model}, [B, {', '.join(map(str, summary.input_shape))}] "
        f"on {summary.device}; differs from the eager model by {summary.max_difference:.2g} on a new batch"
    )
    print("load it with:")
    print(summary.loading_instructions())
    return 0


def _gigabytes(value: float, flag: str) -> int:
    """``value`` GB as bytes; ``ValueError`` unless it is finite and > 0."""
    if not 0 < value < float("inf"):
        raise ValueError(f"{flag} must be a number of gigabytes > 0. Got {value}")
    return max(1, int(value * 1e9))


def _print_reader_reports(skipped: list, notes: list, prefix: str = "") -> None:
    """The images skipped and why, and what the reader did to others (first frame only, 16 bits scaled), on stderr."""
    for path, why in skipped:
        print(f"{prefix}skipped {path}: {why}", file=sys.stderr)
    for path, note in notes:
        print(f"{prefix}note {path}: {note}", file=sys.stderr)


def _defend(args: argparse.Namespace) -> int:
    from .defend import WriteFailure, defend_files
    from .resources import default_workers

    workers = default_workers() if args.workers is None else args.workers
    try:
        summary = defend_files(
            args.inputs,
            args.output_dir,
            defense=_defense_from_arguments(args),
            device=_device(args.device),
            save_map=args.save_map,
            output_format=args.format,
            batch_size=args.batch_size,
            workers=workers,
            write_threads=args.write_threads,
            resume=args.resume,
            overwrite=args.overwrite,
            png_compression=args.png_level,
            decode_on_device=False if args.cpu_decode else None,
            batch_memory=None if args.batch_memory is None else _gigabytes(args.batch_memory, "--batch-memory"),
            threads=args.threads,
        )
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


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    results = run_demo(
        args.output_dir,
        size=args.size,
        patch_fraction=args.patch_fraction,
        smoothing_factor=args.smoothing_factor,
        seed=args.seed,
        backend=args.backend,
        device=_device(args.device),
    )
    print(f"{'image':<12}{'patch suppressed':>18}{'rest suppressed':>18}{'patch strength':>16}{'rest strength':>15}")
    for r in results:
        print(
            f"{r['image']:<12}{r['patch_pixels_suppressed']:>18.1%}{r['other_pixels_suppressed']:>18.1%}"
            f"{r['patch_mean_strength']:>16.3f}{r['other_mean_strength']:>15.3f}"
        )
    print(f"wrote {args.output_dir}/lgs_demo.png and lgs_demo.json")
    return 0


def _defenses(args: argparse.Namespace) -> int:
    _print_defenses()
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
        _check_arguments(args)
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, MissingExtra) as error:
        print(f"lgs-gpu {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # defend says more itself; the resumable runs keep every finished record
        resumable = args.command in ("evaluate", "certify", "calibrate")
        print(
            f"lgs-gpu {args.command}: interrupted"
            + ("; every finished record is kept: run the same command to resume" if resumable else ""),
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
