"""Defenses by spec string: ``get("jpeg:30")``, ``available()``.

Grammar (whitespace ignored, names case-insensitive)::

    spec     := chain
    chain    := masked ("|" masked)*          # applied left to right (Compose)
    masked   := single ("+" single)?          # "lgs[:λ]+filter": filter inside LGS's windows
    single   := name ("@" model)? (":" value)? ("," key "=" value)*

``value`` after the colon is the defense's main parameter (JPEG quality, TV weight, filter
window, bits, λ); further parameters go by keyword, e.g. ``"gaussian:5,sigma=1.5"`` or
``"lgs:1.7,threshold=0.15"``. ``lgs@<model>`` starts from the setting calibrated for that model
(:func:`lgs_gpu.core.parameters.model_preset`), and what the spec gives overrides it:
``"lgs@efficientnet_lite0,backend=torch"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.parameters import (
    BACKENDS,
    DEFAULT_OVERLAP,
    DEFAULT_SMOOTHING_FACTOR,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW_SIZE,
    model_preset,
)
from ..core.transform import ImageDefense
from ..smoothing import LocalGradientsSmoothing
from .bilateral import PAPER_WINDOWS as BILATERAL_WINDOWS
from .bilateral import BilateralFilter
from .bit_depth import PAPER_BITS, BitDepth
from .compose import Compose, LGSMaskedFilter
from .gaussian import PAPER_WINDOWS as GAUSSIAN_WINDOWS
from .gaussian import GaussianFilter
from .jpeg import JPEG, PAPER_QUALITIES
from .median import PAPER_WINDOWS as MEDIAN_WINDOWS
from .median import MedianFilter
from .tv import PAPER_WEIGHTS, TVBregman


class Identity(ImageDefense):
    """No defense: returns the images unchanged (a copy). Spec ``"none"``."""

    name = "none"
    differentiable = True

    @property
    def spec(self) -> str:
        return "none"

    def _defend(self, x):
        return x.clone()


@dataclass(frozen=True)
class DefenseInfo:
    """What the registry knows about one defense."""

    name: str  # the spec name
    aliases: tuple[str, ...]
    factory: Callable[..., ImageDefense]
    main_parameter: str | None  # what the value after ":" sets
    parameters: dict[str, str]  # every keyword -> what it accepts (and its default)
    paper_grid: tuple  # the settings the paper evaluates
    differentiable: bool
    checked_against: str  # the CPU library it agrees with

    def spec_for(self, value: object) -> str:
        return self.name if value is None else f"{self.name}:{value}"


def _lgs(smoothing_factor: float = DEFAULT_SMOOTHING_FACTOR, **options) -> LocalGradientsSmoothing:
    renamed = {"window": "window_size"}
    return LocalGradientsSmoothing(smoothing_factor, **{renamed.get(k, k): v for k, v in options.items()})


_REGISTRY = (
    DefenseInfo("none", ("identity",), Identity, None, {}, (None,), True, "the input itself"),
    DefenseInfo(
        "lgs",
        ("local_gradients_smoothing",),
        _lgs,
        "smoothing_factor",
        {
            "smoothing_factor": f"λ, a finite real (default {DEFAULT_SMOOTHING_FACTOR})",
            "threshold": f"γ, a real (default {DEFAULT_THRESHOLD})",
            "window": f"an int >= 1 (default {DEFAULT_WINDOW_SIZE})",
            "overlap": f"an int in 0..window-1 (default {DEFAULT_OVERLAP})",
            "backend": f"one of {', '.join(map(repr, BACKENDS))} (default 'auto')",
        },
        (2.3, 2.1, 1.9, 1.7, 1.5),
        True,
        "lgs_gpu.smoothing.backends.reference (the paper's equations)",
    ),
    DefenseInfo(
        "jpeg",
        (),
        JPEG,
        "quality",
        {"quality": "an int in 1..100 (default 30)"},
        PAPER_QUALITIES,
        False,
        "Pillow JPEG save/load (4:2:0)",
    ),
    DefenseInfo(
        "tvm",
        ("tv", "tv_bregman"),
        TVBregman,
        "weight",
        {
            "weight": "a real > 0 (default 10)",
            "max_iterations": "an int >= 1 (default 100)",
            "tolerance": "a real >= 0 (default 0.001)",
        },
        PAPER_WEIGHTS,
        False,
        "skimage.restoration.denoise_tv_bregman",
    ),
    DefenseInfo(
        "median",
        ("mf", "median_filter"),
        MedianFilter,
        "window",
        {"window": "an odd int >= 1 (default 3)"},
        MEDIAN_WINDOWS,
        True,
        "scipy.ndimage.median_filter (mode='reflect')",
    ),
    DefenseInfo(
        "gaussian",
        ("gf", "gaussian_filter"),
        GaussianFilter,
        "window",
        {"window": "an odd int >= 1 (default 5)", "sigma": "a real > 0 (default 1.0)"},
        GAUSSIAN_WINDOWS,
        True,
        "scipy.ndimage.gaussian_filter (mode='reflect')",
    ),
    DefenseInfo(
        "bilateral",
        ("bf", "bilateral_filter"),
        BilateralFilter,
        "window",
        {
            "window": "an odd int >= 1 (default 5)",
            "sigma_spatial": "a real > 0 (default 1.0)",
            "sigma_color": "a real > 0 (default: the image's std)",
            "style": "'skimage' or 'textbook' (default 'skimage')",
        },
        BILATERAL_WINDOWS,
        True,
        "skimage.restoration.denoise_bilateral",
    ),
    DefenseInfo(
        "bitdepth",
        ("br", "bit_depth"),
        BitDepth,
        "bits",
        {"bits": "an int in 1..8 (default 3)"},
        PAPER_BITS,
        False,
        "round(x * (2**bits - 1)) / (2**bits - 1)",
    ),
)
_BY_NAME = {alias: info for info in _REGISTRY for alias in (info.name, *info.aliases)}
# Filters that make sense inside LGS's windows in "lgs+<filter>" specs.
_MASKABLE = ("median", "gaussian", "bilateral", "tvm", "jpeg", "bitdepth")


def available() -> list[DefenseInfo]:
    """Every registered defense with its parameters, the paper's grid and differentiability.

    Example:
        >>> [info.name for info in available()][:3]
        ['none', 'lgs', 'jpeg']
    """
    return list(_REGISTRY)


def paper_grid() -> list[str]:
    """Spec strings of every defense setting the paper evaluates, ``"none"`` first."""
    return [info.spec_for(value) for info in _REGISTRY for value in info.paper_grid]


def _accepted_names() -> str:
    return ", ".join(f"{info.name}" + (f" ({'/'.join(info.aliases)})" if info.aliases else "") for info in _REGISTRY)


def _convert(text: str) -> object:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text.lower() in ("none", "null"):
        return None
    return text


def _preset(info: DefenseInfo, model: str, spec: str) -> dict:
    """The spec keywords of ``model``'s calibrated setting (``lgs@<model>``)."""
    if info.name != "lgs":
        raise ValueError(f"only lgs has model presets ('lgs@<model>'). Got {spec!r}")
    try:
        preset = model_preset(model)
    except ValueError as error:
        raise ValueError(f"{error} (in {spec!r})") from None
    return {"window" if key == "window_size" else key: value for key, value in preset.items()}


def _single(spec: str) -> ImageDefense:
    head, *items = spec.split(",")  # get() has removed all whitespace
    name, _, main = head.partition(":")
    name, at, model = name.partition("@")
    if at and not model:
        raise ValueError(f"'@' names a model whose preset to start from, e.g. 'lgs@efficientnet_lite0'. Got {spec!r}")
    info = _BY_NAME.get(name.lower())
    if info is None:
        raise ValueError(f"unknown defense {name!r} in spec {spec!r}; accepted: {_accepted_names()}")
    preset = _preset(info, model, spec) if model else {}
    accepted = "; ".join(f"{k}: {v}" for k, v in info.parameters.items())
    keywords = {}
    for index, item in enumerate([main, *items]):  # main may be a key=value too, or empty
        if "=" in item:
            key, _, value = item.partition("=")
            if key not in info.parameters:
                raise ValueError(
                    f"{info.name} has no parameter {key!r} (in {spec!r}); accepted: {accepted}"
                    if info.parameters
                    else f"{info.name} takes no parameters. Got {spec!r}"
                )
            if key in keywords:
                raise ValueError(f"{key} given twice in {spec!r}: give each parameter once")
            keywords[key] = _convert(value)
        elif index > 0:
            raise ValueError(f"expected key=value after the first parameter in {spec!r}. Got {item!r}")
    if main and "=" not in main:
        if info.main_parameter is None:
            raise ValueError(f"{info.name} takes no parameters. Got {spec!r}")
        if info.main_parameter in keywords:
            raise ValueError(f"{info.main_parameter} given twice in {spec!r}")
        keywords[info.main_parameter] = _convert(main)
    try:
        return info.factory(**{**preset, **keywords})
    except (TypeError, ValueError) as error:
        raise ValueError(f"bad parameters for {info.name} in {spec!r}: {error}. Accepted: {accepted}") from error


def _masked(spec: str) -> ImageDefense:
    parts = spec.split("+")
    if len(parts) == 1:
        return _single(spec)
    if len(parts) != 2:
        raise ValueError(f"a masked spec is 'lgs[:λ]+<filter>', with one '+'. Got {spec!r}")
    lgs_part, filter_part = (_single(part) for part in parts)
    if not isinstance(lgs_part, LocalGradientsSmoothing):
        raise ValueError(f"the part before '+' must be an lgs spec (e.g. 'lgs+median:3'). Got {parts[0]!r}")
    if filter_part.name not in _MASKABLE:
        raise ValueError(f"after 'lgs+' comes one of {', '.join(_MASKABLE)}. Got {parts[1]!r}")
    return LGSMaskedFilter(filter_part, lgs_part)


def get(spec: str) -> ImageDefense:
    """Build the defense a spec string names (grammar in the module docstring).

    Raises ``ValueError`` naming the accepted names or parameters when the spec is wrong.

    Example:
        >>> get("jpeg:30")
        JPEG(quality=30)
        >>> get("lgs+median:3").spec
        'lgs:2.3+median:3'
    """
    if not isinstance(spec, str):
        raise TypeError(f"a defense spec is a string such as 'jpeg:30'. Got {type(spec).__name__}")
    spec = "".join(spec.split())
    if not spec:
        raise ValueError(f"empty defense spec; accepted names: {_accepted_names()}")
    chain = [_masked(part) for part in spec.split("|")]
    return chain[0] if len(chain) == 1 else Compose(chain)
