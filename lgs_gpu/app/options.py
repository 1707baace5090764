"""``lgs-gpu``'s arguments: the parser, its options and their converters (the commands are in :mod:`.cli`).

The options of evaluate, calibrate, certify and defend are built from their config dataclasses
(:mod:`.configs`): a :class:`Flag` names the field it sets and how its text converts, and the
default ``--help`` shows is the config's.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Nothing here imports torch: --help and argument errors answer at once; each command imports its work.
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

# defend's LGS options (the fields of LocalGradientsSmoothing); --defense takes them in its spec instead.
LGS_FLAGS = ("smoothing_factor", "threshold", "window_size", "overlap", "backend")


# --- converters: a flag's text -> its config value (ValueError naming the flag) ------------------


def _specs(text: str, flag: str) -> list[str]:
    specs = [spec.strip() for spec in text.split(";") if spec.strip()]
    if not specs:  # "" or ";" must not fall back to the whole default grid
        raise ValueError(
            f"{flag} names no defense (got {text!r}); give specs separated by ';', e.g. 'none;lgs;jpeg:30'"
        )
    return specs


def comma_names(text: str, flag: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _converter(parse: Callable[[str], Any], expected: str, each: bool = False) -> Callable[[str, str], Any]:
    """``(text, flag) -> parse(text)``, or with ``each`` the list of ``parse`` of each comma-separated
    item; a ``ValueError`` that ``parse`` raises becomes one saying what ``flag`` takes."""

    def convert(text: str, flag: str) -> Any:
        try:
            return [parse(item) for item in text.split(",") if item.strip()] if each else parse(text)
        except ValueError:
            raise ValueError(f"{flag} {expected}. Got {text!r}") from None

    return convert


def _share(text: str) -> float:
    """``5%`` or ``0.05`` as 0.05."""
    text = text.strip()
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def _bytes(gigabytes: str) -> int:
    value = float(gigabytes)
    if not 0 < value < float("inf"):
        raise ValueError(gigabytes)
    return max(1, int(value * 1e9))


_numbers = _converter(float, "takes comma-separated numbers", each=True)
comma_integers = _converter(int, "takes comma-separated integers", each=True)
_fraction = _converter(_share, "takes a share like 5% or 0.05")
_fractions = _converter(_share, "must be comma-separated percentages or fractions, e.g. 1%,2%", each=True)
_gigabytes = _converter(_bytes, "must be a number of gigabytes > 0")


def _weights(text: str, flag: str) -> str | None:
    return None if text == "none" else text


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
    metavar: str | None = None  # the value's name in --help (default: the flag's, or its choices)

    def add_to(self, parser: Any, config: type) -> None:
        shown = None if self.action else self.shown or shown_default(config, self.field)
        text = self.help + (f" (default {shown})" if shown is not None else "")
        keywords = (
            {"action": self.action} if self.action else {"type": self.convert if self.convert in _PARSED else str}
        )
        if self.choices:
            keywords["choices"] = self.choices
        if not self.action and (self.metavar or not self.choices):
            keywords["metavar"] = self.metavar or self.flag.lstrip("-").upper().replace("-", "_")
        names = (self.short, self.flag) if self.short else (self.flag,)
        parser.add_argument(*names, dest=self.field, default=None, help=text.strip().replace("%", "%%"), **keywords)

    def value(self, args: argparse.Namespace) -> Any:
        given = getattr(args, self.field)
        return given if self.action or self.convert in _PARSED else self.convert(given, self.flag)


def config_from(args: argparse.Namespace, config: type, flags: tuple[Flag, ...], preset: dict | None = None, **fixed):
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
    Flag(
        "--imagenet",
        "imagenet",
        action="store_true",
        help="require ground-truth ImageNet labels (without it "
        "they are still read where the layout gives them: synset folders, synset-prefixed names, ILSVRC2012_val_*)",
    ),
    Flag("--imagenet-labels", "imagenet_labels", help="a 'filename label' file (labels 0..999 in torchvision's order)"),
    Flag("--limit", "limit", int, "the first N images only"),
    Flag("--workers", "workers", int, "processes decoding the --data folder's batches ahead of the work (0: this one)"),
)


def _attack_flags(iterations: str) -> tuple[Flag, ...]:
    """What evaluate and calibrate share: LaVAN's steps (the config's field ``iterations``), EoT, seed, batch."""
    return (
        Flag("--iterations", iterations, int, "LaVAN steps per image"),
        Flag("--eot-samples", "eot_samples", int),
        Flag("--seed", "seed", int),
        Flag("--batch-size", "batch_size", int),
    )


EVALUATE_FLAGS = (
    *_RUN_FLAGS,
    *_attack_flags("lavan_iterations"),
    Flag("--defenses", "defenses", _specs, "comma-free list of specs separated by ';'"),
    Flag("--attacks", "attacks", comma_names, f"subset of {','.join(ATTACKS)}"),
    Flag("--lavan-fractions", "lavan_fractions", _numbers, "LaVAN patch areas"),
    Flag("--patch-fraction", "patch_fraction", float),
    Flag("--patch-steps", "patch_steps", int),
    Flag("--patch-images", "patch_images", int, "the universal patch is trained on the first N images"),
    Flag("--bpda-fraction", "bpda_fraction", float),
    Flag("--bpda-defenses", "bpda_defenses", _specs, "';'-separated specs for Table 3"),
    Flag("--adaptive-defense", "adaptive_defense", help="the LGS setting attacked with exact gradients"),
    Flag("--threads", "threads", int, "intra-op CPU threads; part of the run: other counts give other numbers"),
)
CALIBRATE_FLAGS = (
    *_RUN_FLAGS,
    *_attack_flags("iterations"),
    Flag("--budget", "budget", _fraction, "clean accuracy the defense may cost: points with a % sign or a fraction"),
    Flag("--smoothing-factors", "smoothing_factors", _numbers, "λ grid, comma-separated"),
    Flag("--thresholds", "thresholds", _numbers, "γ grid, comma-separated"),
    Flag(
        "--window-sizes", "window_sizes", comma_integers, "window sides, comma-separated; overlap = round(window / 3)"
    ),
    Flag("--patch-fraction", "patch_fraction", float, "LaVAN patch area"),
    Flag("--threads", "threads", int, "intra-op CPU threads"),
    Flag(
        "--no-adaptive", "adaptive", action="store_false", help="skip the exact-gradient and BPDA attacks on the result"
    ),
)
CERTIFY_FLAGS = (
    *_RUN_FLAGS,
    Flag("--patch", "patch_fractions", _fractions, "patch sizes as shares of the image area"),
    Flag("--masks", "masks_per_axis", int, "masks per axis (the mask set is its square)"),
    Flag("--batch-size", "images_per_batch", int, "images per record"),
    Flag("--model-batch-size", "model_batch_size", int, "masked images per model call"),
    Flag("--threads", "threads", int, "intra-op CPU threads"),
)
DEFEND_FLAGS = (
    Flag("--save-map", "save_map", action="store_true", help="also write ĝ as <name>_map.png"),
    Flag("--format", "output_format", choices=OUTPUT_FORMATS, help="output format"),
    Flag("--batch-size", "batch_size", int, "images of one size defended together"),
    Flag(
        "--batch-memory",
        "batch_memory",
        _gigabytes,
        "gigabytes one batch may use; fewer images per batch beyond it",
        metavar="GB",
    ),
    Flag("--workers", "workers", int, "decoding processes (0: decode in this one)", shown="min(4, CPUs)"),
    Flag("--write-threads", "write_threads", int, "encoding and writing threads"),
    Flag("--threads", "threads", int, "torch threads of the main process"),
    Flag(
        "--png-level",
        "png_compression",
        int,
        "PNG zlib level 0-9, lossless at every level: lower encodes faster into larger files (docs/defend.md)",
        choices=tuple(range(10)),
        metavar="0-9",
    ),
)
DEFEND_EXISTING = (
    Flag(
        "--resume", "resume", action="store_true", help="keep outputs the manifest says this defense made; do the rest"
    ),
    Flag("--overwrite", "overwrite", action="store_true", help="redo outputs that already exist"),
)


# The commands that run a config: its dataclass, its options and its --quick preset (None: no --quick).
RUNS = {
    "evaluate": (EvaluationConfig, EVALUATE_FLAGS, QUICK_EVALUATION),
    "calibrate": (CalibrationConfig, CALIBRATE_FLAGS, QUICK_CALIBRATION),
    "certify": (CertifyConfig, CERTIFY_FLAGS, None),
}


def _options(config: type, flags: tuple[Flag, ...]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    for flag in flags:
        flag.add_to(parser, config)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lgs-gpu", description="Local Gradients Smoothing on CPU and GPU")
    commands = parser.add_subparsers(dest="command", required=True)
    device, memory, lgs_flags = (argparse.ArgumentParser(add_help=False) for _ in range(3))
    device.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    memory.add_argument(
        "--allocator",
        choices=allocator.CHOICES,
        help="tuned: glibc's malloc set for large tensors, so batches reuse memory instead of "
        f"page-faulting it in again; system: as it is (default tuned, or ${allocator.ENVIRONMENT_VARIABLE})",
    )
    # Defaults are None so that an explicit flag can be told apart from a spec given with --defense.
    lgs_flags.add_argument("--smoothing-factor", type=float, help=f"λ (default {DEFAULT_SMOOTHING_FACTOR})")
    lgs_flags.add_argument("--threshold", type=float, help=f"γ (default {DEFAULT_THRESHOLD})")
    lgs_flags.add_argument("--window-size", type=int, help=f"window side (default {DEFAULT_WINDOW_SIZE})")
    lgs_flags.add_argument("--overlap", type=int, help=f"window overlap (default {DEFAULT_OVERLAP})")
    lgs_flags.add_argument("--backend", choices=BACKENDS, help="LGS backend (default auto)")
    defend = commands.add_parser(
        "defend",
        parents=[_options(DefendConfig, DEFEND_FLAGS), lgs_flags, device, memory],
        help="defend image files or folders of them",
    )
    defend.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    defend.add_argument("-o", "--output-dir", required=True, help="folder for the defended images")
    existing = defend.add_mutually_exclusive_group()
    for flag in DEFEND_EXISTING:
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

    about = {
        "evaluate": "attacks x defenses -> the paper's Tables 1-3 and Figures 2 / 4 (resumable; torchrun shards it)",
        "calibrate": "sweep λ, γ and the window size; recommend LGS settings for a clean-accuracy budget",
        "certify": "PatchCleanser: clean and certified accuracy against patches (resumable; torchrun shards it)",
    }
    runs = {
        name: commands.add_parser(name, parents=[_options(config, flags), device, memory], help=about[name])
        for name, (config, flags, _) in RUNS.items()
    }
    runs["evaluate"].add_argument(
        "--quick",
        action="store_true",
        help="the README's small run: 4 photographs, LaVAN 2%% and 4%% at 100 steps, no patch, "
        "a short defense list; flags given as well take precedence",
    )
    runs["evaluate"].add_argument(
        "--calibration", help="a calibration.json: score its recommended spec too and attack it adaptively"
    )
    runs["calibrate"].add_argument(
        "--quick",
        action="store_true",
        help="a 3 x 3 grid at 15-pixel windows, LaVAN at 100 steps; flags given as well take precedence",
    )

    export = commands.add_parser(
        "export",
        parents=[device],
        help="package a defended classifier as one AOTInductor .pt2 (checked against eager; docs/deploy.md)",
    )
    export.add_argument("-o", "--output", default="defended.pt2", help="the package to write (default %(default)s)")
    export.add_argument("--model", default=OFFLINE_DEFAULT, help=_RUN_FLAGS[1].help + " (default %(default)s)")
    export.add_argument("--weights", default="default", help=_RUN_FLAGS[2].help + " (default '%(default)s')")
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
    demo.add_argument("--size", type=int, default=299, help="image side in pixels (default %(default)s)")
    demo.add_argument("--patch-fraction", type=float, default=0.04, help="patch area / image area (default 0.04)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--smoothing-factor", type=float, default=DEFAULT_SMOOTHING_FACTOR, help="λ (default %(default)s)"
    )
    demo.add_argument("--backend", choices=BACKENDS, default="auto")
    return parser
