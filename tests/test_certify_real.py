"""PatchCleanser on the offline model and the bundled photographs (slow: thousands of forward passes).

The batched algorithm equals the literal one (one masked image per forward) on real photographs,
and certified labels survive LaVAN patches of the threat-model size optimised against the bare
model and against PatchCleanser's own masks.
"""

import pytest
import torch
from test_certify import literal_certificate, literal_double_masking

from lgs_gpu.attacks import lavan
from lgs_gpu.certify import PatchCleanser, RandomMask
from lgs_gpu.data import bundled
from lgs_gpu.models import load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setting():
    model = load_model("efficientnet_lite0")
    images = bundled(224).images.float() / 255
    cleanser = PatchCleanser(model, patch_fraction=0.01, masks_per_axis=6)
    return model, images, cleanser, cleanser.predict_and_certify(images)


def test_batched_equals_literal_on_real_photographs(setting):
    model, images, cleanser, result = setting
    masks = cleanser.masks_for(224, 224)
    value = float(cleanser.mask_value[0])
    assert torch.allclose(cleanser.mask_value, torch.full((3,), value))  # EfficientNet-Lite: one grey
    for index in range(len(images)):
        label, case = literal_double_masking(model, images[index], masks, value)
        assert (int(result.labels[index]), int(result.cases[index])) == (label, case), index
        if result.certified[index]:
            assert literal_certificate(model, images[index], masks, label, value)


def test_it_certifies_some_photographs(setting):
    assert 0 < int(setting[3].certified.sum()) < len(setting[1])


@pytest.mark.parametrize("view", ["bare model", "its masks (EoT)"])
def test_certified_labels_survive_lavan_of_the_threat_model_size(setting, view):
    model, images, cleanser, result = setting
    chosen = result.certified.nonzero().squeeze(1)
    certified = images[chosen]
    defense = None if view == "bare model" else RandomMask(cleanser, torch.Generator().manual_seed(1))
    for seed in range(2):  # two placements per image
        attack = lavan(model, certified, result.labels[chosen], area_fraction=0.01, iterations=60, defense=defense,
                       eot_samples=1 if defense is None else 4, seed=seed, progress=False)  # fmt: skip
        assert torch.equal(cleanser(attack.adversarial), result.labels[chosen])
