"""The attacks against the real offline ImageNet model on the bundled photographs.

Calibration measured here (efficientnet_lite0, 8 bundled photographs at 224 px, LaVAN with a 4%
patch, 300 cosine-decayed sign steps, seed 0): the target was top-1 on 6 of 8 photographs
without a defense and on 0 of 8 after LGS; LGS kept only 4 of 8 *clean* top-1 labels (its
clean-accuracy cost on this model). The slow tests assert these with margins; the fast one checks
that a short attack moves the real model.
"""

import pytest
import torch

from lgs_gpu import defenses
from lgs_gpu.attacks import BPDA, attacker_view, lavan
from lgs_gpu.data import bundled
from lgs_gpu.models import load_model


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def photos(model):
    images = bundled(model.input_size).images
    labels, _ = model.predict(images)
    return images, labels


def target_hits(model, images, targets, defense=None):
    predictions, _ = model.predict(images if defense is None else defense(images))
    return int((predictions == targets).sum())


def test_a_short_lavan_run_moves_the_real_model_towards_its_targets(model, photos):
    images, labels = photos[0][:2], photos[1][:2]
    start = lavan(model, images, labels, area_fraction=0.04, iterations=1, target_confidence=1.1)
    short = lavan(model, images, labels, area_fraction=0.04, iterations=40, target_confidence=1.1)
    assert torch.equal(start.targets, short.targets)
    # measured: the target's probability grew 7x and 590x in 40 steps; require more than one nat
    gain = short.target_confidence.log() - start.target_confidence.log()
    assert (gain > 1).all(), (start.target_confidence, short.target_confidence)


@pytest.fixture(scope="module")
def plain_attack(model, photos):
    images, labels = photos
    return lavan(model, images, labels, area_fraction=0.04, iterations=300, seed=0)


@pytest.mark.slow
def test_lavan_reaches_its_targets_and_lgs_stops_it(model, photos, plain_attack):
    count = len(plain_attack.targets)
    assert target_hits(model, plain_attack.adversarial, plain_attack.targets) >= count // 2 + 1  # measured 6 of 8
    lgs = defenses.get("lgs:2.3")
    assert target_hits(model, plain_attack.adversarial, plain_attack.targets, lgs) <= 1  # measured 0 of 8


@pytest.mark.slow
def test_bpda_through_jpeg_beats_the_non_adaptive_attack(model, photos, plain_attack):
    jpeg = defenses.get("jpeg:30")
    images, labels = photos
    adaptive = lavan(model, images, labels, area_fraction=0.04, iterations=300, seed=0, defense=BPDA(jpeg))
    assert torch.equal(adaptive.targets, plain_attack.targets)
    non_adaptive_hits = target_hits(model, plain_attack.adversarial, plain_attack.targets, jpeg)
    adaptive_hits = target_hits(model, adaptive.adversarial, adaptive.targets, jpeg)
    assert adaptive_hits > non_adaptive_hits


@pytest.mark.slow
def test_the_exact_adaptive_attack_gets_through_lgs(model, photos, plain_attack):
    lgs = defenses.get("lgs:2.3")
    images, labels = photos
    adaptive = lavan(model, images, labels, area_fraction=0.04, iterations=300, seed=0, defense=attacker_view(lgs, "exact"))
    assert target_hits(model, adaptive.adversarial, adaptive.targets, lgs) > target_hits(
        model, plain_attack.adversarial, plain_attack.targets, lgs
    )
