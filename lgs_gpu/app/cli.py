"""The ``lgs-gpu`` command: thin argument parsing over the application modules beside it.

The options of evaluate, calibrate, certify and defend are built from their config dataclasses
(:mod:`.configs`): a :class:`Flag` names the field it sets and how its text converts, and the
default ``--help`` shows is the config's.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from typing import Any

# Nothing here imports torch: --help and argument errors answer at once; each command imports its work.
from ..core.extras import MissingExtra
from ..core.parameters import (
    BACKENDS,
    DEFAULT_OVERLAP,
    DEFAULT_SMOOTHING_FACTOR,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW_SIZE,
    OFFLINE_DEFAULT,
)
from . import allocator
from .configs import (
    ATTACKS,
    OUTPUT_FORMATS,
    QUICK_CALIBRATION,
    QUICK_EVALUATION,
    CalibrationConfig,
    CertifyConfig,
    DefendConfig,
    EvaluationConfig,
    shown_default,
)

_LGS_FLAGS = {
    "smoothing_factor": DEFAULT_SMOOTHING_FACTOR,
    "threshold": DEFAULT_THRESHOLD,
    "window_size": DEFAULT_WINDOW_SIZE,
    "overlap": DEFAULT_OVERLAP,
    "backend": "auto",
}


# --- converters: a flag's text -> its config value (ValueError naming the flag) ------------------


def _specs(text: str, flag: str) -> list[str]:
    specs = [spec.strip() for spec in text.split(";") if spec.strip()]
    if not specs:  # "" or ";" must not fall back to the whole default grid
        raise ValueError(
            f"{flag} names no defense (got {text!r}); give specs separated by ';', e.g. 'none;lgs;jpeg:30'"
        )
    return specs


def _names(text: str, flag: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _numbers(text: str, flag: str, kind: type = float) -> list:
    try:
        return [kind(value) for value in text.split(",") if value.strip()]
    except ValueError:
        raise ValueError(
            f"{flag} takes comma-separated {'integers' if kind is int else 'numbers'}. Got {text!r}"
        ) from None


def _integers(text: str, flag: str) -> list[int]:
    return _numbers(text, flag, int)


def _share(text: str) -> float:
    """``5%`` or ``0.05`` as 0.05."""
    text = text.strip()
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def _fraction(text: str, flag: str) -> float:
    try:
        return _share(text)
    except ValueError:
        raise ValueError(f"{flag} takes a share like 5% or 0.05. Got {text!r}") from None


def _fractions(text: str, flag: str) -> list[float]:
    try:
        return [_share(value) for value in text.split(",") if value.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated percentages or fractions, e.g. 1%,2%. Got {text!r}") from None


def _weights(text: str, flag: str) -> str | None:
    return None if text == "none" else text


def _gigabytes(text: str, flag: str) -> int:
    """``text`` GB as bytes; ``ValueError`` unless it is a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"{flag} must be a number of gigabytes > 0. Got {text}")
    return max(1, int(value * 1e9))


# --- options that set config fields --------------------------------------------------------------

_PARSED = (int, float, str)  # argparse converts these itself


@dataclass(frozen=True)
class Flag:
    """An option that sets one config field: ``flag`` -> ``field``, its text converted by ``convert``
    (``int``/``float``/``str``, which argparse applies, or ``(text, flag) -> value``, applied when the
    config is built). Its default is the config's, and ``--help`` shows it."""

    flag: str
    field: str
    convert: Any = str
    help: str = ""
    short: str | None = None
    action: str | None = None  # "store_true" / "store_false": a switch
    choices: tuple | None = None
    shown: str | None = None  # the default to show, where the command's differs from the config's

    def add_to(self, parser: Any, config: type) -> None:
        shown = None if self.action else self.shown or shown_default(config, self.field)
        text = self.help + (f" (default {shown})" if shown is not None else "")
        keywords = (
            {"action": self.action} if self.action else {"type": self.convert if self.convert in _PARSED else str}
        )
        if self.choices:
            keywords["choices"] = self.choices
        names = (self.short, self.flag) if self.short else (self.flag,)
        parser.add_argument(*names, dest=self.field, default=None, help=text.strip().replace("%", "%%"), **keywords)

    def value(self, args: argparse.Namespace) -> Any:
        given = getattr(args, self.field)
        return given if self.action or self.convert in _PARSED else self.convert(given, self.flag)


def _config(args: argparse.Namespace, config: type, flags: tuple[Flag, ...], preset: dict | None = None, **fixed):
    """``config`` from the flags given, the others keeping its defaults; with ``--quick``, ``preset``
    fills the fields no flag gave."""
    given = {flag.field: flag.value(args) for flag in flags if getattr(args, flag.field) is not None}
    chosen = {**copy.deepcopy(preset), **given} if preset is not None and args.quick else given
    return config(**chosen, **fixed)


_RUN_FLAGS = (
    Flag("--output-dir", "output_dir", short="-o", help="results folder (reused to resume)"),
    Flag("--model", "model", help="efficientnet_lite0 (offline), inception_v3, any torchvision classifier"),
    Flag("--weights", "weights", _weights, "'default', 'none' (untrained) or a checkpoint file"),
    Flag("--data", "data", help="image folder"),
    Flag("--imagenet", "imagenet", action="store_true", help="require ground-truth ImageNet labels (without it "
         "they are still read where the layout gives them: synset folders, synset-prefixed names, ILSVRC2012_val_*)"),
    Flag("--imagenet-labels", "imagenet_labels", help="a 'filename label' file (labels 0..999 in torchvision's order)"),
    Flag("--limit", "limit", int, "the first N images only"),
    Flag("--workers", "workers", int, "processes decoding the --data folder's batches ahead of the work (0: this one)"),
)  # fmt: skip


def _attack_flags(iterations: str) -> tuple[Flag, ...]:
    """What evaluate and calibrate share: LaVAN's steps (the config's field ``iterations``), EoT, seed, batch."""
    return (
        Flag("--iterations", iterations, int, "LaVAN steps per image"),
        Flag("--eot-samples", "eot_samples", int),
        Flag("--seed", "seed", int),
        Flag("--batch-size", "batch_size", int),
    )


_EVALUATE_FLAGS = (
    *_RUN_FLAGS,
    *_attack_flags("lavan_iterations"),
    Flag("--defenses", "defenses", _specs, "comma-free list of specs separated by ';'"),
    Flag("--attacks", "attacks", _names, f"subset of {','.join(ATTACKS)}"),
    Flag("--lavan-fractions", "lavan_fractions", _numbers, "LaVAN patch areas"),
    Flag("--patch-fraction", "patch_fraction", float),
    Flag("--patch-steps", "patch_steps", int),
    Flag("--patch-images", "patch_images", int, "the universal patch is trained on the first N images"),
    Flag("--bpda-fraction", "bpda_fraction", float),
    Flag("--bpda-defenses", "bpda_defenses", _specs, "';'-separated specs for Table 3"),
    Flag("--adaptive-defense", "adaptive_defense", help="the LGS setting attacked with exact gradients"),
    Flag("--threads", "threads", int, "intra-op CPU threads; part of the run: other counts give other numbers"),
)
_CALIBRATE_FLAGS = (
    *_RUN_FLAGS,
    *_attack_flags("iterations"),
    Flag("--budget", "budget", _fraction, "clean accuracy the defense may cost: points with a % sign or a fraction"),
    Flag("--smoothing-factors", "smoothing_factors", _numbers, "λ grid, comma-separated"),
    Flag("--thresholds", "thresholds", _numbers, "γ grid, comma-separated"),
    Flag("--window-sizes", "window_sizes", _integers, "window sides, comma-separated; overlap = round(window / 3)"),
    Flag("--patch-fraction", "patch_fraction", float, "LaVAN patch area"),
    Flag("--threads", "threads", int, "intra-op CPU threads"),
    Flag("--no-adaptive", "adaptive", action="store_false", help="skip the exact-gradient and BPDA attacks on the result"),
)  # fmt: skip
_CERTIFY_FLAGS = (
    *_RUN_FLAGS,
    Flag("--patch", "patch_fractions", _fractions, "patch sizes as shares of the image area"),
    Flag("--masks", "masks_per_axis", int, "masks per axis (the mask set is its square)"),
    Flag("--batch-size", "images_per_batch", int, "images per record"),
    Flag("--model-batch-size", "model_batch_size", int, "masked images per model call"),
    Flag("--threads", "threads", int, "intra-op CPU threads"),
)
_DEFEND_FLAGS = (
    Flag("--save-map", "save_map", action="store_true", help="also write ĝ as <name>_map.png"),
    Flag("--format", "output_format", choices=OUTPUT_FORMATS, help="output format"),
    Flag("--batch-size", "batch_size", int, "images of one size defended together"),
    Flag("--batch-memory", "batch_memory", _gigabytes, "gigabytes one batch may use; fewer images per batch beyond it"),
    Flag("--workers", "workers", int, "decoding processes (0: decode in this one)", shown="min(4, CPUs)"),
    Flag("--write-threads", "write_threads", int, "encoding and writing threads"),
    Flag("--threads", "threads", int, "torch threads of the main process"),
    Flag("--png-level", "png_compression", int, "PNG zlib level 0-9: 1 encodes ~5x faster, files ~10% larger; "
         "lossless at all", choices=tuple(range(10))),
)  # fmt: skip
_DEFEND_EXISTING = (
    Flag(
        "--resume", "resume", action="store_true", help="keep outputs the manifest says this defense made; do the rest"
    ),
    Flag("--overwrite", "overwrite", action="store_true", help="redo outputs that already exist"),
)


def _options(config: type, flags: tuple[Flag, ...]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    for flag in flags:
        flag.add_to(parser, config)
    return parser


def _device_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    return parser


def _allocator_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--allocator",
        choices=allocator.CHOICES,
        help="tuned: glibc's malloc set for large tensors, so batches reuse memory instead of "
        f"page-faulting it in again; system: as it is (default tuned, or ${allocator.ENVIRONMENT_VARIABLE})",
    )
    return parser


def _lgs_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    # Defaults are None so that an explicit flag can be told apart from a spec given with --defense.
    parser.add_argument("--smoothing-factor", type=float, help=f"λ (default {DEFAULT_SMOOTHING_FACTOR})")
    parser.add_argument("--threshold", type=float, help=f"γ (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--window-size", type=int, help=f"window side (default {DEFAULT_WINDOW_SIZE})")
    parser.add_argument("--overlap", type=int, help=f"window overlap (default {DEFAULT_OVERLAP})")
    parser.add_argument("--backend", choices=BACKENDS, help="LGS backend (default auto)")
    return parser


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
    defend_options = _options(DefendConfig, _DEFEND_FLAGS)
    defend = commands.add_parser(
        "defend", parents=[defend_options, lgs_flags, device, memory], help="defend image files or folders of them"
    )
    defend.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    defend.add_argument("-o", "--output-dir", required=True, help="folder for the defended images")
    existing = defend.add_mutually_exclusive_group()
    for flag in _DEFEND_EXISTING:
        flag.add_to(existing, DefendConfig)
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
        parents=[_options(EvaluationConfig, _EVALUATE_FLAGS), device, memory],
        help="attacks x defenses -> the paper's Tables 1-3 and Figures 2 / 4 (resumable; torchrun shards it)",
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
        parents=[_options(CalibrationConfig, _CALIBRATE_FLAGS), device, memory],
        help="sweep λ, γ and the window size; recommend LGS settings for a clean-accuracy budget",
    )
    calibrate.add_argument(
        "--quick",
        action="store_true",
        help="a 3 x 3 grid at 15-pixel windows, LaVAN at 100 steps; flags given as well take precedence",
    )
    commands.add_parser(
        "certify",
        parents=[_options(CertifyConfig, _CERTIFY_FLAGS), device, memory],
        help="PatchCleanser: clean and certified accuracy against patches (resumable; torchrun shards it)",
    )

    export = commands.add_parser(
        "export",
        parents=[device],
        help="package a defended classifier as one AOTInductor .pt2 (checked against eager; docs/deploy.md)",
    )
    export.add_argument("-o", "--output", default="defended.pt2", help="the package to write (default defended.pt2)")
    export.add_argument("--model", default=OFFLINE_DEFAULT, help=_RUN_FLAGS[1].help + f" (default {OFFLINE_DEFAULT})")
    export.add_argument("--weights", default="default", help=_RUN_FLAGS[2].help + " (default 'default')")
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


def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate, markdown

    config = _config(args, CalibrationConfig, _CALIBRATE_FLAGS, QUICK_CALIBRATION, device=_device(args.device))
    result = calibrate(config)
    print(markdown(result))
    print(f"wrote {config.output_dir}/calibration.json, calibration.csv, calibration.md, calibration.png")
    if result["recommended"] is None:
        print(f"lgs-gpu calibrate: no setting stays within the {config.budget:.0%} budget", file=sys.stderr)
        return 1
    print(result["recommended"])
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate
    from .report import TABLE_TITLES, markdown_table

    config = _config(args, EvaluationConfig, _EVALUATE_FLAGS, QUICK_EVALUATION, device=_device(args.device))
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

    config = _config(args, CertifyConfig, _CERTIFY_FLAGS, device=_device(args.device))
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

    config = _config(
        args,
        DefendConfig,
        _DEFEND_FLAGS + _DEFEND_EXISTING,
        defense=_defense_from_arguments(args),
        device=_device(args.device),
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
