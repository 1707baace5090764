"""The parameters of Local Gradients Smoothing, named and documented once, with their defaults.

Naseer, Khan & Porikli, "Local Gradients Smoothing: Defense against localized adversarial
attacks", WACV 2019. The paper's symbols are words everywhere in this package:

* ``smoothing_factor`` (λ, default 2.3): how strongly the normalised gradient suppresses a
  pixel, ``x * (1 - clip(λ·ĝ, 0, 1))`` (eq. 7). Any finite real.
* ``threshold`` (γ, default 0.1): a window is kept when the mean of the normalised gradient
  ``g`` over it is strictly greater than γ (eq. 8). Any real; ±inf keeps none / every window.
* ``window_size`` (default 15): the side of the square windows, in pixels (``>= 1``).
* ``overlap`` (default 5): pixels shared by neighbouring windows (``0 <= overlap <
  window_size``); window starts are ``window_size - overlap`` apart (see
  :mod:`lgs_gpu.core.windows` for the border rule).

The stages of one LGS call, as :func:`lgs_gpu.lgs_stages` returns them:

* ``m``: gradient magnitude, 3x3 Sobel joint over channels, replicate borders (eq. 5);
* ``g`` (``normalised_gradient``): ``m`` min-max normalised per image, 0 for a flat image (eq. 6);
* ``window_means``: the mean of ``g`` over every window;
* ``window_mask``: pixels inside at least one window whose mean exceeds γ;
* ``ĝ`` (``suppression_map``): ``g`` inside the mask, 0 elsewhere;
* ``output``: ``x * (1 - clip(λ·ĝ, 0, 1))``, the same factor for every channel.

The paper tuned the defaults for Inception v3 at 299 px; other models may want others. A
*model preset* is a setting calibrated for one model on real images (``lgs-gpu calibrate``,
chosen on one part of a labelled sample and confirmed on the rest; docs/calibration.md gives the
runs): ``LocalGradientsSmoothing.for_model(name)``, or the defense spec ``lgs@<name>``.
``lgs()`` itself keeps the paper's defaults, the method's reference semantics.
"""

from __future__ import annotations

DEFAULT_SMOOTHING_FACTOR = 2.3
DEFAULT_THRESHOLD = 0.1
DEFAULT_WINDOW_SIZE = 15
DEFAULT_OVERLAP = 5
# Calibrated settings by model name (the names of lgs_gpu.models.load_model); see model_preset().
MODEL_PRESETS: dict[str, dict[str, float | int]] = {
    # Chosen by lgs-gpu calibrate on 250 images of the ImageNet sample, confirmed on the other 250 (docs/calibration.md).
    "efficientnet_lite0": {"smoothing_factor": 3.0, "threshold": 0.3, "window_size": 15, "overlap": 5},
}


def model_preset(model: str) -> dict[str, float | int]:
    """The LGS setting calibrated for ``model``: ``smoothing_factor``, ``threshold``, ``window_size``, ``overlap``.

    Raises ``ValueError`` naming the models that have one.

    Example:
        >>> sorted(model_preset("efficientnet_lite0"))
        ['overlap', 'smoothing_factor', 'threshold', 'window_size']
    """
    if not isinstance(model, str):
        raise TypeError(f"a model preset is named by the model's name, a str. Got {type(model).__name__}")
    found = MODEL_PRESETS.get(model.strip().lower())
    if found is None:
        raise ValueError(
            f"no LGS preset for model {model!r}; presets exist for: {', '.join(MODEL_PRESETS)} "
            "(lgs-gpu calibrate finds a setting for any other)"
        )
    return dict(found)


def lgs_spec_for(model: str) -> str:
    """The LGS defense spec to put in front of ``model``: ``lgs@<model>`` when it has a preset, else the paper's ``lgs``.

    Example:
        >>> lgs_spec_for("efficientnet_lite0"), lgs_spec_for("resnet18")
        ('lgs@efficientnet_lite0', 'lgs')
    """
    return f"lgs@{model}" if isinstance(model, str) and model.strip().lower() in MODEL_PRESETS else "lgs"


# The namespace of the package's PyTorch operators (torch.ops.lgs_gpu.lgs, .lgs_map, .jpeg, .tv_bregman).
OPERATOR_NAMESPACE = "lgs_gpu"
# The paths that compute LGS, by the names ``backend=`` takes (:mod:`lgs_gpu.smoothing.routing` says which runs).
BACKENDS = ("auto", "triton", "compiled", "torch", "reference")
# The stages above that ``lgs_stages`` can return, in the order of ``LGSStages``' fields.
STAGES = ("output", "normalised_gradient", "window_mask", "suppression_map", "window_means")

# The classifier every command uses by default: EfficientNet-Lite0 from its PyPI wheel, no download.
OFFLINE_DEFAULT = "efficientnet_lite0"
