"""This package's defenses inside the Adversarial Robustness Toolbox (ART >= 1.20): :class:`ARTPreprocessor`.

``ARTPreprocessor("lgs")`` (any spec string of :func:`lgs_gpu.defenses.get`, or a defense module)
is an ``art.defences.preprocessor.PreprocessorPyTorch``: give it to an ART PyTorch estimator as
``preprocessing_defences=[...]`` and ART's attacks meet the defense, batched, on CPU or CUDA.

ART (1.20) differentiates through a preprocessor by one of two routes: autograd through
:meth:`~ARTPreprocessor.forward` when every preprocessing step is a ``PreprocessorPyTorch`` (the
usual case; ``estimate_forward`` is then not called, ART issue #1526), or ``estimate_gradient``,
which backpropagates through ``estimate_forward``. So the gradient choice lives in ``forward``
itself and ``estimate_forward`` goes through it: every route gives the gradient asked for.

* ``gradient="exact"`` (default): the defense under autograd (LGS's ``backend="auto"`` picks the
  differentiable torch path when the input requires grad, Triton on CUDA otherwise). Refused
  (``ValueError``) for defenses without a useful gradient: JPEG, TV, bit depth, chains holding
  one, and LGS forced onto a backend without backward.
* ``gradient="bpda"``: the defense's output exactly, with the identity as its backward pass
  (:func:`lgs_gpu.attacks.bpda`), for any defense.

Inputs on ART's ``clip_values`` scale ``(low, high)`` are mapped to [0, 1] for the defense and
back. PatchCleanser is not an input transform (it needs the classifier): it is refused, see
:mod:`lgs_gpu.certify`.

Example:
    >>> import numpy as np, torch
    >>> from art.estimators.classification import PyTorchClassifier
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    >>> classifier = PyTorchClassifier(
    ...     model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=10,
    ...     clip_values=(0, 1), preprocessing_defences=[ARTPreprocessor("lgs")], device_type="cpu")
    >>> x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    >>> classifier.predict(x).shape
    (2, 10)
    >>> classifier.loss_gradient(x, np.eye(10)[[1, 2]]).shape  # labels one-hot, as ART takes them
    (2, 3, 32, 32)
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

try:
    import art
    from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
except ImportError as error:  # the optional extra is missing
    raise ImportError(
        "lgs_gpu.integrations.art needs the Adversarial Robustness Toolbox >= 1.20: "
        "pip install lgs-gpu[art] (or pip install 'adversarial-robustness-toolbox>=1.20')"
    ) from error

from .. import attacks
from ..certify import PatchCleanser, is_spec
from ..core.validate import is_real
from ..defenses import ImageDefense, LocalGradientsSmoothing, get

__all__ = ["GRADIENTS", "MINIMUM_ART_VERSION", "ARTPreprocessor"]

GRADIENTS = ("exact", "bpda")
MINIMUM_ART_VERSION = (1, 20)
if tuple(int(part) for part in re.findall(r"\d+", art.__version__)[:2]) < MINIMUM_ART_VERSION:
    raise ImportError(
        f"lgs_gpu.integrations.art needs adversarial-robustness-toolbox >= 1.20. Got {art.__version__}: "
        "pip install -U lgs-gpu[art]"
    )


def _build_defense(defense: Any) -> ImageDefense:
    """A defense module from a spec string or module; PatchCleanser and other objects are refused."""
    pointer = (
        "PatchCleanser needs the classifier itself (it masks images and votes over the model's "
        "predictions), so it is not an input transform and cannot be an ART preprocessor; certify with "
        "lgs_gpu.certify.PatchCleanser (or `lgs-gpu certify`) around your model instead"
    )
    if isinstance(defense, str):
        if is_spec(defense):
            raise ValueError(f"{pointer}. Got {defense!r}")
        return get(defense)
    if isinstance(defense, PatchCleanser):
        raise TypeError(f"{pointer}. Got a PatchCleanser module")
    if isinstance(defense, ImageDefense):
        return defense
    raise TypeError(
        "defense must be a spec string (e.g. 'lgs', 'jpeg:30', 'lgs|median:3', see "
        f"lgs_gpu.defenses.available()) or an lgs_gpu.defenses.ImageDefense module. Got {type(defense).__name__}"
    )


def _describe(defense: ImageDefense) -> str:
    """The defense's spec string, or its class name when it has none (a user's own subclass)."""
    try:
        return defense.spec
    except NotImplementedError:
        return type(defense).__name__


def _why_not_differentiable(defense: ImageDefense) -> str | None:
    """Why autograd gives no useful gradient through ``defense``, or ``None`` when it does."""
    if not defense.differentiable:
        return "it is not differentiable (no gradient through JPEG, TV, bit depth, or a chain holding one)"
    for module in defense.modules():
        if isinstance(module, LocalGradientsSmoothing) and module.backend in ("triton", "compiled"):
            return f"its LGS runs on backend={module.backend!r}, which has no backward pass (use 'auto' or 'torch')"
    return None


class ARTPreprocessor(PreprocessorPyTorch):
    """A defense of this package as an ART ``PreprocessorPyTorch`` (see the module docstring).

    Args:
        defense: a spec string (``"lgs"``, ``"jpeg:30"``, ``"lgs|median:3"``, ``"lgs+median:3"``;
            see :func:`lgs_gpu.defenses.get`) or an :class:`lgs_gpu.defenses.ImageDefense`.
        gradient: ``"exact"`` (autograd through the defense; refused where it has no useful
            gradient) or ``"bpda"`` (identity backward).
        clip_values: the ``(low, high)`` range of the estimator's inputs (ART's ``clip_values``):
            inputs are mapped to [0, 1] for the defense and back.
        device_type: ``"gpu"`` or ``"cpu"``, where ART's numpy entry points (``__call__``,
            ``estimate_gradient``) put their tensors; ``forward`` runs where its input is.
        apply_fit, apply_predict: whether ART applies the defense when fitting / predicting.

    Shapes: ``[B, C, H, W]`` (channels first) float tensors or arrays in, the same shape, dtype and
    device out; labels ``y`` pass through untouched.
    """

    params = ["gradient", "clip_values"]

    def __init__(
        self,
        defense: str | ImageDefense,
        gradient: str = "exact",
        clip_values: tuple[float, float] = (0.0, 1.0),
        device_type: str = "gpu",
        apply_fit: bool = False,
        apply_predict: bool = True,
    ) -> None:
        if device_type not in ("gpu", "cpu"):
            raise ValueError(f"device_type must be 'gpu' or 'cpu' (ART's names). Got {device_type!r}")
        for name, flag in (("apply_fit", apply_fit), ("apply_predict", apply_predict)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False. Got {flag!r}")
        super().__init__(device_type=device_type, is_fitted=True, apply_fit=apply_fit, apply_predict=apply_predict)
        self.defense = _build_defense(defense)
        self.gradient = gradient
        self.clip_values = clip_values
        self._check_params()

    def _check_params(self) -> None:
        """Validate (and normalise) ``gradient`` and ``clip_values``; ART's ``set_params`` calls it."""
        gradient, clip_values = self.gradient, self.clip_values
        if not isinstance(gradient, str) or gradient.lower() not in GRADIENTS:
            raise ValueError(f"gradient must be one of {', '.join(map(repr, GRADIENTS))}. Got {gradient!r}")
        reason = _why_not_differentiable(self.defense) if gradient.lower() == "exact" else None
        if reason is not None:
            raise ValueError(
                f"gradient='exact' through {_describe(self.defense)!r}: {reason}. Use gradient='bpda' (the defense's "
                "output with the identity's gradient)"
            )
        self.gradient = gradient.lower()
        accepted = "(low, high): two finite real numbers with low < high, e.g. (0, 1) or (0, 255)"
        try:
            low, high = clip_values
        except (TypeError, ValueError):
            raise ValueError(f"clip_values must be {accepted}. Got {clip_values!r}") from None
        if not (is_real(low) and is_real(high)):
            raise TypeError(f"clip_values must be {accepted} (one bound for all pixels). Got {clip_values!r}")
        if not -math.inf < float(low) < float(high) < math.inf:
            raise ValueError(f"clip_values must be {accepted}. Got {clip_values!r}")
        self.clip_values = float(low), float(high)

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        """The defense on ``x`` given on the ``clip_values`` scale (to [0, 1] and back)."""
        low, high = self.clip_values
        if (low, high) == (0.0, 1.0):
            return self.defense(x)
        return self.defense((x - low) / (high - low)) * (high - low) + low

    def forward(self, x: torch.Tensor, y: Any = None) -> tuple[torch.Tensor, Any]:
        """Defend ``x`` (``[B, C, H, W]`` floats on the ``clip_values`` scale); ``y`` passes through.

        Under autograd the output carries the gradient chosen at construction: the defense's own
        (``"exact"``) or the identity (``"bpda"``).
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"forward takes a torch.Tensor [B, C, H, W]. Got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"forward takes floating-point images on the clip_values scale. Got {x.dtype}")
        if self.gradient == "bpda" and torch.is_grad_enabled() and x.requires_grad:
            return attacks.bpda(self._defend, x), y
        return self._defend(x), y

    def estimate_forward(self, x: torch.Tensor, y: Any = None) -> torch.Tensor:
        """:meth:`forward`'s output (its gradient is already the chosen one); ART's other gradient route."""
        return self.forward(x, y)[0]

    def __repr__(self) -> str:
        return (
            f"ARTPreprocessor({_describe(self.defense)!r}, gradient={self.gradient!r}, clip_values={self.clip_values}, "
            f"apply_fit={self.apply_fit}, apply_predict={self.apply_predict})"
        )
