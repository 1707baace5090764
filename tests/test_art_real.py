"""ART's own attacks through the adapter, on the real offline model and the bundled photographs (``-m slow``).

efficientnet_lite0 (real ImageNet weights, offline), the 8 bundled photographs at 224 px, float32
in [0, 1], ``PyTorchClassifier(clip_values=(0, 1))``; the defended classifiers add
``preprocessing_defences=[ARTPreprocessor(...)]``. Success = top-1 is the attack's target, ImageNet
class 859 (toaster).

* ``AdversarialPatchPyTorch``: one universal square patch covering 10% of the image (scale
  sqrt(0.1) of the side, 71 px), random location and rotation (up to 22.5 degrees), Adam, lr 0.05,
  300 steps on the 8 photographs, then pasted at fresh random placements. ART 1.20.1's
  ``_train_step`` never clears the patch's ``.grad`` (only the model's), so each step would follow
  the sum of all past gradients; :class:`FreshGradientPatch` clears it first. The patch is 71 px
  (its size on the image): a 224 px patch is resampled with nearest neighbours, and only a tenth
  of its pixels would get a gradient per step.
* ``ProjectedGradientDescent``, L-inf, eps 16/255, step 2/255, 20 steps, targeted, against JPEG 30
  with ``gradient="bpda"``, compared with the same attack on the bare model (and with its images
  sent through JPEG 30: the non-adaptive attack).

Measured (``docs/art.md``, 2-core CPU, 2 threads): the patch 7 of 8 bare and 0 of 8 through LGS;
trained through LGS (exact) 7 of 8; PGD 8 of 8 bare, 0 of 8 of those through JPEG 30, 8 of 8 with
BPDA. Seeds are fixed, but a last-bit difference in the model (another CPU, thread count or torch
build) grows into another patch: over three placements the LGS-trained patch hit 7, 7 and 6, so
that bound has a margin of about one image.
"""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("art", reason="the [art] extra (adversarial-robustness-toolbox) is not installed")

from art.attacks.evasion import AdversarialPatchPyTorch, ProjectedGradientDescent  # noqa: E402
from art.estimators.classification import PyTorchClassifier  # noqa: E402

from lgs_gpu.attacks import TOASTER  # noqa: E402
from lgs_gpu.data import bundled  # noqa: E402
from lgs_gpu.integrations import ARTPreprocessor  # noqa: E402
from lgs_gpu.models import load_model  # noqa: E402

PATCH_SCALE = math.sqrt(0.1)  # side share of a square patch covering 10% of the image
PATCH_STEPS = 300
PGD_STEPS = 20

pytestmark = pytest.mark.slow


class FreshGradientPatch(AdversarialPatchPyTorch):
    """ART's patch attack with the patch's gradient cleared before each step (see the module docstring)."""

    def _train_step(self, images, target, mask=None):
        self._patch.grad = None
        return super()._train_step(images, target, mask)


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return (bundled(224).images.float() / 255).numpy()


@pytest.fixture(scope="module")
def targets(photos) -> np.ndarray:
    return np.eye(1000, dtype=np.float32)[[TOASTER] * len(photos)]


def classifier(model, *defenses) -> PyTorchClassifier:
    return PyTorchClassifier(
        model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 224, 224), nb_classes=1000, clip_values=(0, 1),
        preprocessing_defences=list(defenses) or None, device_type="cpu",
    )  # fmt: skip


def hits(estimator: PyTorchClassifier, images: np.ndarray) -> int:
    return int((estimator.predict(images, batch_size=8).argmax(axis=1) == TOASTER).sum())


def patched_photos(estimator, photos, targets, seed: int = 0) -> np.ndarray:
    """Train the patch against ``estimator`` and paste it on the photographs at fresh placements."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    attack = FreshGradientPatch(
        estimator, rotation_max=22.5, scale_min=PATCH_SCALE, scale_max=PATCH_SCALE, learning_rate=0.05,
        max_iter=PATCH_STEPS, batch_size=len(photos), patch_shape=(3, 71, 71), patch_type="square", verbose=False,
    )  # fmt: skip
    attack.generate(photos, targets)
    np.random.seed(seed + 1)
    torch.manual_seed(seed + 1)
    return attack.apply_patch(photos, scale=PATCH_SCALE)


@pytest.fixture(scope="module")
def bare_patch(model, photos, targets):
    return patched_photos(classifier(model), photos, targets)


def test_art_patch_reaches_toaster_and_lgs_stops_the_same_patch(model, bare_patch):
    bare, defended = hits(classifier(model), bare_patch), hits(classifier(model, ARTPreprocessor("lgs")), bare_patch)
    print(f"\nAdversarialPatchPyTorch, trained bare: toaster on {bare} of 8 bare, {defended} of 8 through LGS")
    assert bare >= 6
    assert defended <= 1


def test_art_patch_trained_through_exact_lgs_gets_through(model, photos, targets):
    lgs = ARTPreprocessor("lgs", gradient="exact")
    adaptive = patched_photos(classifier(model, lgs), photos, targets)
    through = hits(classifier(model, ARTPreprocessor("lgs")), adaptive)
    print(f"\nAdversarialPatchPyTorch, trained through LGS (exact): toaster on {through} of 8 through LGS")
    assert through >= 6


def test_art_pgd_with_bpda_through_jpeg_succeeds_where_it_does_without_the_defense(model, photos, targets):
    def pgd(estimator):
        attack = ProjectedGradientDescent(
            estimator, norm=np.inf, eps=16 / 255, eps_step=2 / 255, max_iter=PGD_STEPS, targeted=True,
            num_random_init=0, batch_size=len(photos), verbose=False,
        )  # fmt: skip
        return attack.generate(photos, targets)

    bare_classifier = classifier(model)
    jpeg_classifier = classifier(model, ARTPreprocessor("jpeg:30", gradient="bpda"))
    plain = pgd(bare_classifier)
    adaptive = pgd(jpeg_classifier)
    assert np.abs(adaptive - photos).max() <= 16 / 255 + 1e-6
    plain_success = bare_classifier.predict(plain).argmax(axis=1) == TOASTER
    through_jpeg = jpeg_classifier.predict(plain).argmax(axis=1) == TOASTER  # the non-adaptive attack
    adaptive_success = jpeg_classifier.predict(adaptive).argmax(axis=1) == TOASTER
    print(f"\nPGD eps 16/255 (targeted, toaster): {plain_success.sum()} of 8 bare; the same images through "
          f"JPEG 30: {through_jpeg.sum()} of 8; BPDA through JPEG 30: {adaptive_success.sum()} of 8")  # fmt: skip
    assert plain_success.sum() >= 6
    assert (adaptive_success | ~plain_success).all(), (plain_success, adaptive_success)
    assert adaptive_success.sum() > through_jpeg.sum()  # JPEG stops the non-adaptive images, not BPDA's
