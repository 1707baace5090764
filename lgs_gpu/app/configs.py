"""What each command's run is: its config dataclass, every default written once, and the ``--quick``
presets, in a module that imports nothing heavy.

The API functions take these configs (:func:`.evaluate.evaluate`, :func:`.calibrate.calibrate`,
:func:`.certify.certify`, :func:`.defend.defend_files`); ``lgs-gpu`` builds its options from them,
so ``--help`` shows these defaults and answers without importing torch. A field's ``metadata["shown"]``
says in words what a default computed at run time (``None``, the paper's grid) stands for.

Example:
    >>> CalibrationConfig(**QUICK_CALIBRATION).window_sizes
    [15]
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..core.parameters import DEFAULT_SMOOTHING_FACTOR, OFFLINE_DEFAULT

# The attack settings an evaluation can run (see evaluate.plan()); --attacks takes these names.
ATTACKS = ("lavan", "patch", "bpda", "adaptive")
DEFAULT_LGS_SPEC = f"lgs:{DEFAULT_SMOOTHING_FACTOR:g}"
# The calibration grid: λ, γ and window sides (overlap a third of the window), the paper's setting
# (λ 2.3, γ 0.1, 15-pixel windows) in the middle of each axis.
SMOOTHING_FACTORS = (0.5, 1.0, 1.5, 2.3, 3.0, 4.0, 6.0)
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
WINDOW_SIZES = (9, 15, 25)
OUTPUT_FORMATS = ("png", "jpg", "same")


def percent(fraction: float) -> str:
    """``0.02`` -> ``'2%'``: how unit keys, ``--help`` and messages name a share.

    Example:
        >>> percent(0.02), percent(0.125)
        ('2%', '12.5%')
    """
    return f"{100 * fraction:g}%"


_PERCENT = {"as": percent}  # --help shows each value of the default as a percentage (0.05 -> 5%)


def _integer(value: Any) -> bool:
    from ..core.validate import is_integer  # imports torch: checks run when the work starts

    return is_integer(value)


@dataclass
class RunInputs:
    """The model and images of a run: the fields evaluate's, certify's and calibrate's configs share."""

    model: str = OFFLINE_DEFAULT
    # None: untrained; or a checkpoint file.
    weights: str | None = field(default="default", metadata={"shown": "'default'"})
    data: str | None = field(default=None, metadata={"shown": "the bundled photographs"})  # or an image folder
    imagenet: bool = False  # with data: ground-truth labels required (read from the layout, or imagenet_labels)
    imagenet_labels: str | None = None
    limit: int | None = field(default=None, metadata={"shown": "every image"})  # first N images
    # Processes that decode an image folder's batches ahead of the work (0: this process; None: up to 2).
    # Not part of what cached work depends on: the decoded pixels are the same.
    workers: int | None = field(default=None, metadata={"shown": "up to 2"})

    def inputs(self) -> dict:
        """These fields alone, as keywords for another config."""
        return {field.name: getattr(self, field.name) for field in fields(RunInputs)}

    def check(self) -> None:
        """Check the image fields before any work (``ValueError`` naming what is wrong)."""
        if self.limit is not None and (not _integer(self.limit) or self.limit < 1):
            raise ValueError(f"limit must be an int >= 1 (the first N images). Got {self.limit!r}")
        if self.data is not None and not Path(self.data).is_dir():
            raise ValueError(f"data folder {self.data} does not exist or is not a folder")
        if self.workers is not None and (not _integer(self.workers) or self.workers < 0):
            raise ValueError(f"workers must be an int >= 0 (0: decode in this process). Got {self.workers!r}")

    def decode_workers(self) -> int:
        """The decoding processes to use: ``workers``, or up to 2 (never more than this process may use CPUs)."""
        if self.workers is not None:
            return self.workers
        from .resources import usable_cpus

        return min(2, usable_cpus())


def _paper_grid() -> list[str]:
    from ..defenses import paper_grid

    return paper_grid()


@dataclass
class EvaluationConfig(RunInputs):
    """Everything that defines an evaluation (the model and images: :class:`RunInputs`); saved in
    ``results.json`` and checked on resume."""

    output_dir: str = "lgs-evaluation"
    defenses: list[str] = field(default_factory=_paper_grid, metadata={"shown": "the paper's grid"})
    attacks: list[str] = field(default_factory=lambda: list(ATTACKS))
    lavan_fractions: list[float] = field(default_factory=lambda: [0.02, 0.03, 0.04])
    lavan_iterations: int = 1000
    patch_fraction: float = 0.1
    patch_steps: int = 500
    bpda_fraction: float = 0.02
    patch_images: int = 512  # the universal patch is trained on the first N images (held in memory)
    bpda_defenses: list[str] | None = field(default=None, metadata={"shown": "every defense but none"})
    adaptive_defense: str = DEFAULT_LGS_SPEC
    eot_samples: int = 1
    seed: int = 0
    batch_size: int = 8
    device: str = "cpu"
    # Intra-op CPU threads. The attacks step along the sign of the gradient, so the last-bit
    # differences between thread counts (oneDNN splits convolutions by thread) grow into other
    # patches and other table entries: the thread count is part of a run's definition.
    threads: int = 1


@dataclass
class CalibrationConfig(RunInputs):
    """Everything that defines a calibration; saved in ``calibration.json``."""

    output_dir: str = "lgs-calibration"
    budget: float = field(default=0.05, metadata=_PERCENT)  # largest clean-accuracy cost accepted (0.05 = 5 points)
    smoothing_factors: list[float] = field(default_factory=lambda: list(SMOOTHING_FACTORS))
    thresholds: list[float] = field(default_factory=lambda: list(THRESHOLDS))
    window_sizes: list[int] = field(default_factory=lambda: list(WINDOW_SIZES))
    patch_fraction: float = 0.04
    iterations: int = 1000
    eot_samples: int = 1
    seed: int = 0
    batch_size: int = 8
    device: str = "cpu"
    threads: int = 1
    adaptive: bool = True  # attack the recommended setting with exact gradients and BPDA too


@dataclass
class CertifyConfig(RunInputs):
    """Everything that defines a certification run; saved in ``certify.json``."""

    output_dir: str = "lgs-certify"
    patch_fractions: list[float] = field(default_factory=lambda: [0.01, 0.02, 0.03], metadata=_PERCENT)
    masks_per_axis: int = 6
    images_per_batch: int = 8  # images per record
    # Masked images per model call (None: PatchCleanser's default).
    model_batch_size: int | None = field(default=None, metadata={"shown": "8 on CPU, 128 on CUDA"})
    device: str = "cpu"
    threads: int = 1


@dataclass
class DefendConfig:
    """How :func:`.defend.defend_files` defends a set of files: the defense, where it runs and how
    the outputs are written. ``None`` fields are chosen at run time from the machine."""

    defense: Any = "lgs"  # a spec string of lgs_gpu.defenses.get, or a defense module
    device: str = "cpu"
    save_map: bool = False  # also write ĝ as <name>_map.png (LGS-based defenses)
    output_format: str = "png"  # "png" (lossless), "jpg", or "same" (the input's)
    progress: bool = True
    batch_size: int = 8  # images of one size defended together
    workers: int = 0  # decoding processes (0: this one)
    write_threads: int | None = field(default=None, metadata={"shown": "one per CPU"})
    resume: bool = False  # keep the outputs the manifest says this defense made
    overwrite: bool = False  # redo outputs that already exist
    png_compression: int = 6  # zlib level 0..9
    decode_on_device: bool | None = field(default=None, metadata={"shown": "on CUDA"})  # JPEGs decoded by nvJPEG
    shard: tuple[int, int] | None = None  # (rank, world) by hand; None: torchrun's, or one process
    # The bytes one batch may use; fewer images per batch beyond it.
    batch_memory: int | None = field(
        default=None, metadata={"shown": "a quarter of the available RAM, half the free GPU memory"}
    )
    threads: int | None = field(default=None, metadata={"shown": "the CPUs the workers leave, at least 1"})

    def check(self) -> None:
        """``ValueError`` naming the first field that is wrong, before any work (the defense is
        checked where it is built)."""
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be 'png', 'jpg' or 'same'. Got {self.output_format!r}")
        for name, low in (("batch_size", 1), ("workers", 0), ("png_compression", 0)):
            value = getattr(self, name)
            if not _integer(value) or value < low:
                raise ValueError(f"{name} must be an int >= {low}. Got {value!r}")
        if not self.png_compression <= 9:
            raise ValueError(f"png_compression must be a zlib level in 0..9. Got {self.png_compression}")
        for name in ("write_threads", "threads", "batch_memory"):
            value = getattr(self, name)
            if value is not None and (not _integer(value) or value < 1):
                shown = shown_default(DefendConfig, name)
                raise ValueError(f"{name} must be an int >= 1 or None ({shown}). Got {value!r}")
        if self.resume and self.overwrite:
            raise ValueError("resume keeps finished outputs and overwrite redoes them: choose one")
        if self.shard is not None and not (len(self.shard) == 2 and 0 <= self.shard[0] < self.shard[1]):
            raise ValueError(f"shard must be (rank, world) with 0 <= rank < world. Got {self.shard!r}")


def shown_default(config: type, name: str) -> str | None:
    """The default of ``config``'s field ``name`` as ``--help`` shows it (None: nothing to show).

    Example:
        >>> shown_default(CalibrationConfig, "window_sizes"), shown_default(EvaluationConfig, "defenses")
        ('9,15,25', "the paper's grid")
        >>> shown_default(CalibrationConfig, "budget"), shown_default(CertifyConfig, "patch_fractions")
        ('5%', '1%,2%,3%')
    """
    found = next(f for f in fields(config) if f.name == name)
    if "shown" in found.metadata:
        return found.metadata["shown"]
    value = found.default_factory() if callable(found.default_factory) else found.default
    if value is None or isinstance(value, bool):
        return None
    one = found.metadata.get("as", lambda v: f"{v:g}" if isinstance(v, float) else str(v))
    return ",".join(map(one, value)) if isinstance(value, list) else one(value)


# The README's small run: 4 photographs, LaVAN 2% and 4% at 100 steps, no patch, a short defense list.
QUICK_EVALUATION = {
    "limit": 4,
    "lavan_iterations": 100,
    "defenses": ["none", "lgs:2.3", "lgs:1.5", "median:3", "gaussian:5", "jpeg:30", "tvm:10", "bitdepth:3"],
    "attacks": ["lavan", "bpda", "adaptive"],
    "lavan_fractions": [0.02, 0.04],
    "bpda_defenses": ["jpeg:30", "median:3"],
}
# A 3 x 3 grid at 15-pixel windows, LaVAN at 100 steps.
QUICK_CALIBRATION = {
    "smoothing_factors": [1.0, 2.3, 4.0],
    "thresholds": [0.1, 0.2, 0.3],
    "window_sizes": [15],
    "iterations": 100,
}
