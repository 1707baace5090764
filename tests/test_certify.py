"""PatchCleanser: the mask set's covering premise, batched = literal algorithm, and certificates that hold.

The oracle (:func:`literal_double_masking`, :func:`literal_certificate`) transcribes the paper's
algorithm one masked image per model call, with no batching and no shared work. Probe models
label an image by which of a few probe pixels are covered (equal to the mask colour): their
output is exact and independent of the batch, and random probe tables exercise cases I, II, III.
"""

from __future__ import annotations

import itertools
import random
import warnings

import pytest
import torch
from torch import nn

from lgs_gpu.certify import PatchCleanser, axis_masks, mask_geometry, mask_set

MASK_VALUE = 0.5


# -- the oracle ------------------------------------------------------------------------------------


def masked(image: torch.Tensor, covered: torch.Tensor, value: float = MASK_VALUE) -> torch.Tensor:
    out = image.clone()
    out[:, covered] = value
    return out


def label_of(model, image: torch.Tensor) -> int:
    return int(model(image[None]).argmax(dim=1)[0])


def literal_double_masking(model, image: torch.Tensor, masks: torch.Tensor, value: float = MASK_VALUE):
    """(label, case) for one image, as the paper's Algorithm 1 reads."""
    one = [label_of(model, masked(image, mask, value)) for mask in masks]
    if len(set(one)) == 1:
        return one[0], 1
    counts = {label: one.count(label) for label in set(one)}
    best = max(counts.values())
    majority = max(label for label, count in counts.items() if count == best)  # ties: larger class index
    for index, mask in enumerate(masks):
        if one[index] == majority:
            continue
        if all(label_of(model, masked(image, mask | other, value)) == one[index] for other in masks):
            return one[index], 2
    return majority, 3


def literal_certificate(model, image: torch.Tensor, masks: torch.Tensor, label: int, value: float = MASK_VALUE) -> bool:
    return all(
        label_of(model, masked(image, masks[k] | masks[j], value)) == label
        for k in range(len(masks))
        for j in range(k, len(masks))
    )


class ProbeModel(nn.Module):
    """Labels an image by which probe pixels are covered (all channels equal the mask colour)."""

    def __init__(self, probes: list[tuple[int, int]], table: list[int], classes: int = 5) -> None:
        super().__init__()
        self.probes, self.table, self.classes = probes, torch.tensor(table), classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = torch.zeros(x.shape[0], dtype=torch.long)
        for bit, (row, col) in enumerate(self.probes):
            code |= (x[:, :, row, col] == MASK_VALUE).all(dim=1).long() << bit
        return nn.functional.one_hot(self.table[code], self.classes).float()


def random_probe_model(generator: random.Random, size: int, probes: int = 3, classes: int = 5) -> ProbeModel:
    points = [(generator.randrange(size), generator.randrange(size)) for _ in range(probes)]
    return ProbeModel(points, [generator.randrange(classes) for _ in range(2**probes)], classes).eval()


# -- the mask set ------------------------------------------------------------------------------------


@pytest.mark.parametrize("length, patch, per_axis", [
    (n, p, k) for n in (1, 7, 32, 50, 224, 299) for p in sorted({1, 2, max(1, n // 7), max(1, n // 3), n}) if p <= n
    for k in (1, 2, 3, 6, 10)
])  # fmt: skip
def test_every_patch_position_lies_inside_a_mask(length, patch, per_axis):
    axis = axis_masks(length, patch, per_axis)
    assert axis.count <= per_axis and axis.offsets == tuple(sorted(set(axis.offsets)))
    assert all(0 <= o <= length - axis.size for o in axis.offsets)
    for start in range(length - patch + 1):
        assert any(o <= start and start + patch <= o + axis.size for o in axis.offsets), start


@pytest.mark.parametrize("image_size, patch, per_axis", [(32, 5, 3), ((20, 31), (4, 7), 4), (24, 24, 2), (9, 1, 6)])
def test_every_patch_position_lies_inside_a_2d_mask(image_size, patch, per_axis):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masks = mask_set(image_size, patch, per_axis)
    height, width = masks.shape[1:]
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    for top, left in itertools.product(range(height - ph + 1), range(width - pw + 1)):
        assert masks[:, top : top + ph, left : left + pw].flatten(1).all(dim=1).any(), (top, left)


def test_paper_geometry_and_row_major_order():
    geometry = mask_geometry(224, patch_fraction=0.02)
    assert geometry.patch_size == (32, 32) and geometry.mask_size == (64, 64) and geometry.stride == (33, 33)
    assert geometry.rows.offsets == (0, 33, 66, 99, 132, 160)
    masks = mask_set(224, 32, 6)
    assert masks.shape == (36, 224, 224) and masks.dtype == torch.bool
    assert masks[1, :64, 33:97].all() and masks[1].sum() == 64 * 64  # second mask: first row, second column
    assert masks[6, 33:97, :64].all()
    assert mask_geometry(224, patch_fraction=0.01).patch_size == (23, 23)
    assert mask_geometry(224, patch_fraction=0.03).patch_size == (39, 39)
    assert mask_geometry((100, 50), (10, 5), 2).mask_size == (55, 27)  # strides ceil(91/2) = 46, ceil(46/2) = 23


def test_fewer_offsets_than_asked_and_the_blank_image_warning():
    assert axis_masks(10, 8, 6).offsets == (0, 1, 2)  # n - p + 1 = 3 < k
    with pytest.warns(UserWarning, match="blank image"):
        mask_set(32, 30, 1)  # stride 3, mask side min(32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mask_set(224, 32, 6)  # no warning for the paper's setting


@pytest.mark.parametrize("call, error, match", [
    (lambda: mask_set(32, 0), ValueError, "patch height must be in 1..32"),
    (lambda: mask_set(32, 33), ValueError, "1..32"),
    (lambda: mask_set(32, 4, 0), ValueError, "masks_per_axis must be an int >= 1"),
    (lambda: mask_set(32, 4, patch_fraction=0.02), ValueError, "not both"),
    (lambda: mask_set(32, patch_fraction=1.5), ValueError, r"area_fraction must be in \(0, 1\)"),
    (lambda: mask_set(32, "4"), TypeError, "patch_size must be an int or a pair"),
])  # fmt: skip
def test_bad_mask_parameters_say_what_is_accepted(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- batched = literal ------------------------------------------------------------------------------


def test_batched_equals_the_literal_algorithm_on_probe_models_in_every_case():
    generator = random.Random(0)
    cases_seen = set()
    for trial in range(60):
        size = 16
        model = random_probe_model(generator, size, probes=generator.choice([1, 2, 3]), classes=generator.choice([2, 5]))
        images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(trial))
        cleanser = PatchCleanser(model, patch_size=generator.choice([2, 3, 5]), masks_per_axis=generator.choice([2, 3, 4]),
                                 mask_value=MASK_VALUE, batch_size=generator.choice([1, 7, 64]))  # fmt: skip
        masks = cleanser.masks_for(size, size)
        result = cleanser.predict_and_certify(images)
        for index, image in enumerate(images):
            label, case = literal_double_masking(model, image, masks)
            assert (int(result.labels[index]), int(result.cases[index])) == (label, case), (trial, index)
            assert bool(result.certified[index]) == literal_certificate(model, image, masks, label), (trial, index)
            cases_seen.add(case)
        assert torch.equal(cleanser(images), result.labels)
    assert cases_seen == {1, 2, 3}


def test_majority_ties_go_to_the_larger_class_index():
    # Probe 0 covered -> class 1, else class 3; masks 3 x 1 over a 6-row image, probe in rows 0-1:
    # one of three masks covers it (label 1), two do not (3) -> majority 3; a 2-mask tie needs k = 2.
    model = ProbeModel([(0, 0)], [3, 1]).eval()
    with pytest.warns(UserWarning, match="blank image"):  # the masks span the image's width
        cleanser = PatchCleanser(model, patch_size=(3, 6), masks_per_axis=2, mask_value=MASK_VALUE)
        cleanser.masks_for(6, 6)
    image = torch.rand(1, 3, 6, 6)
    masks = cleanser.masks_for(6, 6)
    one = [label_of(model, masked(image[0], m)) for m in masks]
    assert sorted(one) == [1, 3]  # a tie: one mask each
    result = cleanser.predict_and_certify(image)
    # Majority is 3 (the larger); the disagreeing mask (label 1) covers the probe with every second mask: case II.
    assert (int(result.labels[0]), int(result.cases[0])) == literal_double_masking(model, image[0], masks) == (1, 2)


def test_counts_of_model_calls_and_forward_passes():
    model = ProbeModel([(0, 0)], [2, 2]).eval()  # always class 2: case I, certified
    cleanser = PatchCleanser(model, patch_size=4, masks_per_axis=3, mask_value=MASK_VALUE, batch_size=5)
    result = cleanser.predict_and_certify(torch.rand(2, 3, 16, 16))
    masks = 9
    pairs = masks * (masks - 1) // 2
    assert result.certified.all() and (result.cases == 1).all()
    assert result.forward_passes.tolist() == [masks + pairs] * 2
    assert result.images_through_model == 2 * (masks + pairs)
    assert result.model_calls >= result.images_through_model / 5


def test_certification_stops_at_the_first_mismatch():
    model = ProbeModel([(0, 0), (15, 15)], [1, 1, 1, 0]).eval()  # both corners covered: class 0
    cleanser = PatchCleanser(model, patch_size=4, masks_per_axis=3, mask_value=MASK_VALUE, batch_size=4)
    result = cleanser.predict_and_certify(torch.rand(1, 3, 16, 16))
    assert (result.cases == 1).all() and not result.certified.any()
    # No single mask covers both corners; pair (0, 8) does (the 8th of 36, row-major): the check
    # runs 4 pairs per call and stops after the call that finds it.
    assert result.forward_passes.tolist() == [9 + 8]


# -- the input contract ------------------------------------------------------------------------------


def test_uint8_float_single_image_and_devices_agree():
    model = random_probe_model(random.Random(3), 12)
    images = (torch.rand(2, 3, 12, 12) * 255).round().to(torch.uint8)
    cleanser = PatchCleanser(model, patch_size=3, masks_per_axis=3, mask_value=128 / 255)
    # The probe compares with MASK_VALUE exactly; build one that uses this cleanser's colour.
    assert torch.equal(cleanser(images), cleanser(images.float() / 255))
    assert cleanser(images[0]).dim() == 0 and int(cleanser(images[0])) == int(cleanser(images)[0])


def test_classifier_default_mask_value_is_its_normalisation_zero():
    from lgs_gpu.models import Classifier

    network = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    classifier = Classifier(network, "toy", 8, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5), "none")
    cleanser = PatchCleanser(classifier, patch_size=2, masks_per_axis=2)
    torch.testing.assert_close(cleanser.mask_value, torch.tensor([0.1, 0.2, 0.3]))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"mask_value": None}, ValueError, "mask_value is needed for this model"),
    ({"mask_value": 1.5}, ValueError, r"mask_value must be in \[0, 1\]"),
    ({"mask_value": 0.5, "patch_size": 3, "patch_fraction": 0.02}, ValueError, "not both"),
    ({"mask_value": 0.5, "masks_per_axis": 0}, ValueError, "masks_per_axis must be an int >= 1"),
    ({"mask_value": 0.5, "batch_size": 0}, ValueError, "batch_size must be an int >= 1"),
])  # fmt: skip
def test_bad_arguments_say_what_is_accepted(kwargs, error, match):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    with pytest.raises(error, match=match):
        PatchCleanser(model, **kwargs)


def test_models_in_training_mode_and_bad_images_are_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    cleanser = PatchCleanser(model.train(), patch_size=2, masks_per_axis=2, mask_value=0.5)
    with pytest.raises(ValueError, match="training mode"):
        cleanser(torch.rand(1, 3, 8, 8))
    model.eval()
    with pytest.raises(TypeError, match="images must have dtype"):
        cleanser(torch.ones(1, 3, 8, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match="patch height must be in 1..4"):
        PatchCleanser(model, patch_size=6, mask_value=0.5)(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="one entry per image"):
        cleanser.certify(torch.rand(2, 3, 8, 8), torch.tensor([1]))


# -- certificates hold: try to break them ------------------------------------------------------------


def certified_probe_cases(count: int = 30, size: int = 16, patch: int = 3):
    """Certified probe models that a patch could fool if the certificate were wrong.

    Three or four probes; the table gives the certified label to every covering pattern that two
    masks can produce and another class to every other pattern (e.g. all probes covered at once),
    so a patch painted in the mask colour that made an unreachable pattern would flip the label.
    """
    generator = random.Random(5)
    found = []
    while len(found) < count:
        probes = [(generator.randrange(size), generator.randrange(size)) for _ in range(generator.choice([3, 4]))]
        cleanser = PatchCleanser(nn.Identity(), patch_size=patch, masks_per_axis=3, mask_value=MASK_VALUE)
        masks = cleanser.masks_for(size, size)
        reachable = {
            sum(int(bool((masks[k] | masks[j])[row, col])) << bit for bit, (row, col) in enumerate(probes))
            for k in range(len(masks)) for j in range(k, len(masks))
        }  # fmt: skip
        label = generator.randrange(4)
        table = [label if code in reachable else (label + 1 + generator.randrange(3)) % 4 for code in range(2 ** len(probes))]
        if len(set(table)) == 1:
            continue  # every pattern reachable: nothing a patch could exploit
        model = ProbeModel(probes, table, classes=4).eval()
        cleanser = PatchCleanser(model, patch_size=patch, masks_per_axis=3, mask_value=MASK_VALUE)
        image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(len(found)))
        result = cleanser.predict_and_certify(image)
        assert result.certified[0] and int(result.labels[0]) == label
        found.append((model, cleanser, image, label))
    return found


def test_certified_labels_survive_every_patch_position_with_adversarial_content():
    """Patches of the threat-model size at every position, painted with the mask colour (which the
    probe models read as 'covered') or random noise, never change a certified label."""
    patch = 3
    for _, cleanser, image, label in certified_probe_cases(patch=patch):
        size = image.shape[-1]
        patched = []
        for top, left in itertools.product(range(size - patch + 1), repeat=2):
            for content in (torch.full((3, patch, patch), MASK_VALUE), torch.rand(3, patch, patch)):
                copy = image[0].clone()
                copy[:, top : top + patch, left : left + patch] = content
                patched.append(copy)
        labels = cleanser(torch.stack(patched))
        assert (labels == label).all(), f"a patch changed a certified label: {labels.unique().tolist()} vs {label}"


def test_a_larger_patch_can_break_the_certificate():
    """The tests above can fail: a patch beyond the threat model breaks a certified label.

    Three corners as probes, class 1 only when all three are covered: two 7x7 masks never cover
    three corners of a 16x16 image, so every two-mask prediction is 0 and 0 is certified for a
    3 px patch; a 16 px patch painted in the mask colour covers all three and flips it.
    """
    model = ProbeModel([(0, 0), (0, 15), (15, 0)], [0] * 7 + [1], classes=2).eval()
    cleanser = PatchCleanser(model, patch_size=3, masks_per_axis=3, mask_value=MASK_VALUE)
    image = torch.rand(1, 3, 16, 16)
    result = cleanser.predict_and_certify(image)
    assert result.certified.all() and int(result.labels[0]) == 0
    small = image.clone()
    small[:, :, :3, :3] = MASK_VALUE
    assert int(cleanser(small)[0]) == 0
    large = torch.full_like(image, MASK_VALUE)
    assert int(cleanser(large)[0]) == 1


# -- specs, the adaptive view, and the order of masks and defenses ----------------------------------


@pytest.mark.parametrize("spec, expected", [
    ("patchcleanser", {"patch_fraction": 0.02, "masks_per_axis": 6, "defense": None}),
    ("pc:3%", {"patch_fraction": 0.03, "masks_per_axis": 6, "defense": None}),
    ("PC:0.01,masks=4", {"patch_fraction": 0.01, "masks_per_axis": 4, "defense": None}),
    ("pc,patch=32", {"patch_size": 32, "masks_per_axis": 6, "defense": None}),
    ("pc:2%@lgs:1.5,threshold=0.2", {"patch_fraction": 0.02, "masks_per_axis": 6, "defense": "lgs:1.5,threshold=0.2"}),
])  # fmt: skip
def test_specs_parse(spec, expected):
    from lgs_gpu.certify import is_spec, parse_spec

    assert is_spec(spec) and parse_spec(spec) == expected


@pytest.mark.parametrize("spec, match", [
    ("lgs:2.3|pc:2%", "must see the image first"),
    ("pc:2%+median:3", "must see the image first"),
    ("pc:150%", r"must be in \(0, 1\)"),
    ("pc:2%,size=3", "unknown PatchCleanser parameter 'size'"),
    ("pc:2%,masks=two", "bad PatchCleanser parameter"),
    ("pc:2%,patch=3", "not both"),
])  # fmt: skip
def test_bad_specs_say_what_is_accepted(spec, match):
    from lgs_gpu.certify import parse_spec

    with pytest.raises(ValueError, match=match):
        parse_spec(spec)


def test_from_spec_builds_the_defense_after_the_masks_only_when_given_a_builder():
    from lgs_gpu import defenses
    from lgs_gpu.certify import from_spec

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)).eval()
    cleanser = from_spec("pc:5%,masks=2@median:3", model, defenses.get, mask_value=0.5)
    assert cleanser.defense.spec == "median:3" and cleanser.masks_per_axis == 2
    with pytest.raises(ValueError, match="pass build_defense"):
        from_spec("pc:5%@median:3", model, mask_value=0.5)


def test_random_mask_view_covers_each_image_with_a_mask_of_the_set_and_passes_gradients():
    from lgs_gpu.certify import RandomMask

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)).eval()
    cleanser = PatchCleanser(model, patch_size=3, masks_per_axis=3, mask_value=MASK_VALUE)
    view = RandomMask(cleanser, torch.Generator().manual_seed(0))
    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    out = view(x)
    masks = cleanser.masks_for(16, 16)
    for image in range(6):
        covered = (out[image] == MASK_VALUE).all(dim=0)
        assert any(torch.equal(covered, m) for m in masks)
    out.sum().backward()
    assert x.grad.abs().sum() > 0 and (x.grad == 0).any()  # no gradient under the mask


def test_masks_must_come_before_lgs():
    """Masking then LGS hides a patch completely; LGS then masking does not (the certificate's premise)."""
    from lgs_gpu import lgs

    generator = torch.Generator().manual_seed(0)
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=generator), size=64, mode="bilinear")
    patched = image.clone()
    patched[:, :, 4:12, 4:12] = torch.rand(1, 3, 8, 8, generator=generator)  # a noisy patch: the largest gradient
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[:16, :16] = True  # covers the patch
    value = torch.full((1, 3, 1, 1), MASK_VALUE)
    mask_first = [lgs(torch.where(mask, value, x), backend="torch") for x in (image, patched)]
    assert torch.equal(*mask_first)  # the model sees the same image whatever the patch holds
    lgs_first = [torch.where(mask, value, lgs(x, backend="torch")) for x in (image, patched)]
    assert not torch.equal(*lgs_first)  # the patch changed pixels outside its mask (global normalisation)


def test_each_masked_image_goes_through_the_model_once():
    """Clamped windows and symmetric pairs ask for the same prediction twice: it is computed once."""
    model = ProbeModel([(0, 0)], [2, 2]).eval()  # always class 2: every pair is checked
    for batch_size in (1, 5, 64):
        cleanser = PatchCleanser(model, patch_size=4, masks_per_axis=2, mask_value=MASK_VALUE, batch_size=batch_size)
        result = cleanser.predict_and_certify(torch.rand(1, 3, 16, 16))
        assert result.forward_passes.tolist() == [4 + 6], batch_size  # 4 one-mask + 6 pairs, no repeats


def test_a_one_output_model_and_case_insensitive_specs():
    from lgs_gpu.certify import parse_spec

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 1)).eval()
    result = PatchCleanser(model, patch_size=2, masks_per_axis=2, mask_value=0.5).predict_and_certify(torch.rand(2, 3, 8, 8))
    assert result.labels.tolist() == [0, 0] and result.certified.all()
    assert parse_spec("PC:2%,MASKS=4") == {"patch_fraction": 0.02, "masks_per_axis": 4, "defense": None}
    with pytest.raises(ValueError, match="bad PatchCleanser parameter 'unknown'"):
        parse_spec("pc:unknown")


class _NaNForSome(torch.nn.Module):
    """Finite logits except for images whose mean is above 0.5 (those give NaN, or inf)."""

    def __init__(self, bad: float = float("nan")) -> None:
        super().__init__()
        self.bad = bad

    def forward(self, x):
        logits = torch.nn.functional.one_hot(torch.zeros(x.shape[0], dtype=torch.long), 10).float()
        return torch.where(x.mean(dim=(1, 2, 3))[:, None] > 0.5, self.bad, logits)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_never_give_a_certificate(bad):
    """argmax of NaN is 0 for every mask, so a NaN model would look unanimous: it must be refused."""
    from lgs_gpu.certify import PatchCleanser

    images = torch.zeros(3, 3, 32, 32)
    images[1] = 0.9  # this one gives non-finite logits
    cleanser = PatchCleanser(_NaNForSome(bad).eval(), patch_fraction=0.05, masks_per_axis=2, mask_value=0.5)
    for call in (cleanser.predict_and_certify, cleanser, lambda x: cleanser.certify(x, torch.zeros(3))):
        with pytest.raises(ValueError, match=r"non-finite logits .* image\(s\) \[1\]"):
            call(images)
    assert cleanser.predict_and_certify(images[[0, 2]]).certified.all()  # finite ones still certify
