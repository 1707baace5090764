"""lgs_gpu.integrations.art: the ART adapter, on a tiny probe model (a few seconds in all).

Skipped as a whole without the ``[art]`` extra. The long runs with ART's own attacks on the real
model are in ``tests/test_art_real.py`` (``-m slow``).
"""

import numpy as np
import pytest
import torch

pytest.importorskip("art", reason="the [art] extra (adversarial-robustness-toolbox) is not installed")

from art.estimators.classification import PyTorchClassifier  # noqa: E402
from art.preprocessing.standardisation_mean_std.numpy import StandardisationMeanStd  # noqa: E402

from lgs_gpu import defenses, lgs  # noqa: E402
from lgs_gpu.certify import PatchCleanser  # noqa: E402
from lgs_gpu.integrations import ARTPreprocessor  # noqa: E402
from lgs_gpu.integrations.art import GRADIENTS  # noqa: E402

from helpers import assert_lgs_close  # noqa: E402

SIZE, CLASSES = 32, 5


def probe_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(),
        torch.nn.Linear(64, CLASSES),
    ).eval()  # fmt: skip


def images(count: int = 3, device: str = "cpu") -> torch.Tensor:
    """Smooth colour ramps with a noisy 10x10 square (a patch LGS acts on), float32 in [0, 1]."""
    generator = torch.Generator().manual_seed(1)
    ramp = torch.linspace(0.2, 0.8, SIZE)
    batch = (ramp[None, None, :, None] * ramp[None, None, None, :]).repeat(count, 3, 1, 1)
    batch = batch * torch.rand(count, 3, 1, 1, generator=generator).add(0.5)
    for index in range(count):
        top, left = 3 + 5 * index, 18 - 5 * index
        batch[index, :, top : top + 10, left : left + 10] = torch.rand(3, 10, 10, generator=generator)
    return batch.clamp(0, 1).to(device)


def classifier_with(preprocessor, clip_values=(0.0, 1.0), preprocessing=(0.0, 1.0), model=None, **options):
    return PyTorchClassifier(
        model if model is not None else probe_model(), loss=torch.nn.CrossEntropyLoss(), input_shape=(3, SIZE, SIZE),
        nb_classes=CLASSES, clip_values=clip_values, preprocessing_defences=[preprocessor],
        preprocessing=preprocessing, device_type="cpu", **options,
    )  # fmt: skip


def one_hot(labels: list[int]) -> np.ndarray:
    return np.eye(CLASSES, dtype=np.float32)[labels]


# --- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize("gradient", ["EXACTLY", "identity", "", None, 1])
def test_an_unknown_gradient_name_is_refused_naming_the_accepted_ones(gradient):
    with pytest.raises(ValueError, match="gradient must be one of 'exact', 'bpda'"):
        ARTPreprocessor("lgs", gradient=gradient)


@pytest.mark.parametrize("spec", ["jpeg:30", "tvm:10", "bitdepth:3", "lgs|jpeg:30", "lgs+jpeg:30"])
def test_exact_through_a_non_differentiable_defense_is_refused_pointing_to_bpda(spec):
    name = defenses.get(spec).spec
    with pytest.raises(ValueError, match="bpda") as caught:
        ARTPreprocessor(spec, gradient="exact")
    assert repr(name) in str(caught.value)
    assert ARTPreprocessor(spec, gradient="bpda").gradient == "bpda"


@pytest.mark.parametrize("backend", ["compiled", "triton"])
def test_exact_through_lgs_on_a_backend_without_backward_is_refused(backend):
    with pytest.raises(ValueError, match=f"backend='{backend}'.*bpda"):
        ARTPreprocessor(defenses.LocalGradientsSmoothing(backend=backend))
    with pytest.raises(ValueError, match=f"backend='{backend}'"):
        ARTPreprocessor(f"lgs,backend={backend}+median:3")  # LGS inside a masked filter
    ARTPreprocessor(f"lgs,backend={backend}", gradient="bpda")


@pytest.mark.parametrize("info", defenses.available(), ids=lambda info: info.name)
def test_every_registered_defense_is_accepted_and_exact_exactly_where_the_registry_says(info):
    assert ARTPreprocessor(info.name, gradient="bpda").defense.spec == defenses.get(info.name).spec
    if info.differentiable:
        assert ARTPreprocessor(info.name, gradient="exact").gradient == "exact"
    else:
        with pytest.raises(ValueError, match="gradient='bpda'"):
            ARTPreprocessor(info.name, gradient="exact")


@pytest.mark.parametrize("spec", ["pc:2%", "patchcleanser:2%@lgs:1.5", "PC:1%,masks=4"])
def test_patchcleanser_specs_are_refused_pointing_to_certify(spec):
    with pytest.raises(ValueError, match=r"not an input transform.*lgs_gpu\.certify"):
        ARTPreprocessor(spec)


def test_a_patchcleanser_module_is_refused_pointing_to_certify():
    cleanser = PatchCleanser(probe_model(), patch_fraction=0.02, mask_value=0.5)
    with pytest.raises(TypeError, match=r"needs the classifier itself.*lgs_gpu\.certify"):
        ARTPreprocessor(cleanser, gradient="bpda")


@pytest.mark.parametrize("defense", [torch.nn.Identity(), lambda x: x, 3])
def test_other_objects_are_refused_naming_what_is_accepted(defense):
    with pytest.raises(TypeError, match="spec string .* or an lgs_gpu.defenses.ImageDefense"):
        ARTPreprocessor(defense)


class Halve(defenses.ImageDefense):
    """A user's own defense: no spec string, not declared differentiable."""

    def _defend(self, x):
        return x / 2


def test_a_users_own_defense_module_is_accepted_and_named_in_errors():
    with pytest.raises(ValueError, match="'Halve'.*gradient='bpda'"):
        ARTPreprocessor(Halve())
    preprocessor = ARTPreprocessor(Halve(), gradient="bpda")
    assert torch.equal(preprocessor.forward(images())[0], images() / 2)
    assert "Halve" in repr(preprocessor)


def test_an_unknown_spec_is_refused_by_the_registry():
    with pytest.raises(ValueError, match="unknown defense 'jpg'"):
        ARTPreprocessor("jpg:30")


@pytest.mark.parametrize("clip_values, error", [
    ((1, 0), ValueError), ((0.5, 0.5), ValueError), ((0,), ValueError), ((0, 1, 2), ValueError), (1.0, ValueError),
    ((0, float("inf")), ValueError), ((float("nan"), 1), ValueError), (("0", 1), TypeError), ((False, True), TypeError),
    ((np.zeros(3), np.ones(3)), TypeError),  # per-channel bounds: one bound for all pixels is accepted
])  # fmt: skip
def test_bad_clip_values_are_refused(clip_values, error):
    with pytest.raises(error, match=r"clip_values must be \(low, high\)"):
        ARTPreprocessor("lgs", clip_values=clip_values)


def test_other_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="device_type must be 'gpu' or 'cpu'"):
        ARTPreprocessor("lgs", device_type="cuda")
    with pytest.raises(TypeError, match="apply_predict must be True or False"):
        ARTPreprocessor("lgs", apply_predict=1)


def test_defaults_follow_art_and_set_params_is_checked():
    preprocessor = ARTPreprocessor("lgs", clip_values=[0, 255])
    assert (preprocessor.gradient, preprocessor.clip_values) == ("exact", (0.0, 255.0))
    assert (preprocessor.apply_fit, preprocessor.apply_predict, preprocessor.is_fitted) == (False, True, True)
    assert preprocessor.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert ARTPreprocessor("lgs", device_type="cpu").device == torch.device("cpu")
    jpeg = ARTPreprocessor("jpeg:30", gradient="bpda")
    with pytest.raises(ValueError, match="bpda"):
        jpeg.set_params(gradient="exact")
    assert GRADIENTS == ("exact", "bpda")


# --- forward: the defense's output, on the clip_values scale -------------------------------


SPECS = ["none", "lgs", "lgs:1.7,threshold=0.15", "jpeg:30", "median:3", "gaussian:5", "bilateral:5", "tvm:10",
         "bitdepth:3", "lgs+median:3", "lgs|jpeg:30"]  # fmt: skip


@pytest.mark.parametrize("spec, gradient", [
    (spec, gradient) for spec in SPECS for gradient in GRADIENTS
    if gradient == "bpda" or defenses.get(spec).differentiable  # exact elsewhere is refused (tested above)
])  # fmt: skip
def test_forward_equals_the_defense_exactly(spec, gradient):
    x = images()
    expected = defenses.get(spec)(x)
    preprocessor = ARTPreprocessor(spec, gradient=gradient)
    labels = torch.arange(3)
    out, y = preprocessor.forward(x, labels)
    assert y is labels
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, expected)
    with_grad, _ = preprocessor.forward(x.clone().requires_grad_(True))
    if gradient == "bpda":  # the defense's own output, computed without autograd
        assert torch.equal(with_grad.detach(), expected)
    else:  # under autograd LGS runs its torch path, which may round differently from the no-grad path
        assert torch.equal(with_grad.detach(), defenses.get(spec)(x.clone().requires_grad_(True)).detach())
        torch.testing.assert_close(with_grad.detach(), expected)
    numpy_out, numpy_y = preprocessor(x.numpy())  # ART's numpy entry point
    assert numpy_y is None and numpy_out.dtype == np.float32
    np.testing.assert_array_equal(numpy_out, expected.numpy())


def test_forward_takes_modules_and_compositions():
    x = images()
    for module in (defenses.LocalGradientsSmoothing(1.7), defenses.Compose([defenses.MedianFilter(3), defenses.JPEG(30)])):
        out, _ = ARTPreprocessor(module, gradient="bpda").forward(x)
        assert torch.equal(out, module(x))


def test_forward_is_batched_without_mixing_images():
    x = images(4)
    preprocessor = ARTPreprocessor("lgs")
    whole, _ = preprocessor.forward(x)
    one_by_one = torch.cat([preprocessor.forward(x[i : i + 1])[0] for i in range(4)])
    torch.testing.assert_close(whole, one_by_one)
    assert not torch.equal(whole, x)  # LGS changed the noisy squares


@pytest.mark.parametrize("low, high", [(0.0, 255.0), (-1.0, 1.0)])
@pytest.mark.parametrize("spec", ["lgs", "median:3", "none", "bitdepth:3"])
def test_clip_values_scale_maps_to_unit_range_and_back(low, high, spec):
    x = images()
    expected = defenses.get(spec)(x) * (high - low) + low
    out, _ = ARTPreprocessor(spec, gradient="bpda", clip_values=(low, high)).forward(x * (high - low) + low)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5 * (high - low))
    # LGS and the median commute with x -> a·x (LGS normalises by the gradient's maximum), not with a shift;
    # bit depth commutes with neither: there the mapping visibly matters.
    if spec == "bitdepth:3" or (spec == "lgs" and low != 0):
        unscaled, _ = ARTPreprocessor(spec, gradient="bpda").forward(x * (high - low) + low)
        assert (unscaled - expected).abs().max() > 0.01 * (high - low)


def test_clip_values_scale_also_reaches_jpeg_quantisation():
    x = images()
    out, _ = ARTPreprocessor("jpeg:30", gradient="bpda", clip_values=(0, 255)).forward(x * 255)
    # 8-bit codes: a value within float error of a rounding boundary may land one code apart
    assert (out / 255 - defenses.get("jpeg:30")(x)).abs().max() <= 1 / 255 + 1e-6


def test_forward_refuses_non_float_input():
    with pytest.raises(TypeError, match="floating-point"):
        ARTPreprocessor("lgs").forward((images() * 255).to(torch.uint8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ARTPreprocessor("lgs").forward(images().numpy())


# --- gradients: what the user asked for ------------------------------------------------------


def weights_like(x: torch.Tensor) -> torch.Tensor:
    return torch.randn(x.shape, generator=torch.Generator().manual_seed(2)).to(x.device)


def autograd_of(function, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (function(x) * weights).sum().backward()
    return x.grad


@pytest.mark.parametrize("clip_values", [(0.0, 1.0), (0.0, 255.0)])
def test_exact_gradient_is_torch_autograds_through_lgs(clip_values):
    low, high = clip_values
    x, weights = images() * (high - low) + low, weights_like(images())
    preprocessor = ARTPreprocessor("lgs", clip_values=clip_values)
    ours = autograd_of(lambda t: preprocessor.forward(t)[0], x, weights)
    by_hand = autograd_of(lambda t: lgs((t - low) / (high - low), backend="torch") * (high - low) + low, x, weights)
    torch.testing.assert_close(ours, by_hand)
    assert (ours - weights).abs().max() > 0.1  # LGS's gradient is not the identity's
    estimated = autograd_of(preprocessor.estimate_forward, x, weights)
    torch.testing.assert_close(estimated, by_hand)


@pytest.mark.parametrize("spec", ["lgs", "jpeg:30", "lgs|jpeg:30", "tvm:10"])
def test_bpda_gradient_is_the_identity(spec):
    x, weights = images(), weights_like(images())
    preprocessor = ARTPreprocessor(spec, gradient="bpda", clip_values=(0, 255))
    assert torch.equal(autograd_of(lambda t: preprocessor.forward(t)[0], x * 255, weights), weights)
    assert torch.equal(autograd_of(preprocessor.estimate_forward, x * 255, weights), weights)


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_estimate_gradient_gives_the_chosen_gradient(gradient):
    x, weights = images(), weights_like(images())
    preprocessor = ARTPreprocessor("lgs", gradient=gradient, device_type="cpu")
    estimated = preprocessor.estimate_gradient(x.numpy(), weights.numpy())
    expected = autograd_of(lambda t: lgs(t, backend="torch"), x, weights) if gradient == "exact" else weights
    np.testing.assert_allclose(estimated, expected.numpy(), rtol=1e-5, atol=1e-6)


# --- through ART's PyTorchClassifier: numpy in, numpy out -----------------------------------


def hand_built_loss_gradient(model, x: np.ndarray, labels: list[int], gradient: str, clip_values=(0.0, 1.0)):
    """d CE(model(defended x)) / dx by hand: through lgs() (exact) or the identity (bpda)."""
    low, high = clip_values

    def defend(t):
        return lgs((t - low) / (high - low), backend="torch") * (high - low) + low

    x_t = torch.tensor(x, requires_grad=True)
    if gradient == "exact":
        inputs, leaf = defend(x_t), x_t
    else:
        leaf = defend(x_t).detach().requires_grad_(True)  # the gradient at the defended input, passed through
        inputs = leaf
    torch.nn.functional.cross_entropy(model(inputs), torch.tensor(labels)).backward()
    return leaf.grad.numpy()


@pytest.mark.parametrize("route", ["autograd through forward", "estimate_gradient"])
@pytest.mark.parametrize("gradient", GRADIENTS)
def test_classifier_predict_and_loss_gradient_give_the_chosen_gradient(route, gradient):
    model = probe_model()
    # A numpy standardisation makes ART leave the framework path: forward under no_grad, then estimate_gradient.
    preprocessing = (0.0, 1.0) if route == "autograd through forward" else StandardisationMeanStd(0.0, 1.0)
    classifier = classifier_with(ARTPreprocessor("lgs", gradient=gradient), preprocessing=preprocessing, model=model)
    assert classifier.all_framework_preprocessing == (route == "autograd through forward")
    x, labels = images().numpy(), [1, 3, 4]
    with torch.no_grad():
        expected_logits = model(lgs(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(classifier.predict(x), expected_logits, rtol=1e-5, atol=1e-6)
    ours = classifier.loss_gradient(x, one_hot(labels))
    assert isinstance(ours, np.ndarray) and ours.shape == x.shape
    np.testing.assert_allclose(ours, hand_built_loss_gradient(model, x, labels, gradient), rtol=1e-4, atol=1e-7)
    other = hand_built_loss_gradient(model, x, labels, "bpda" if gradient == "exact" else "exact")
    assert np.abs(ours - other).max() > 0.05 * np.abs(ours).max()  # the two choices really differ here


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_classifier_on_the_0_255_scale(gradient):
    model = probe_model()
    classifier = classifier_with(ARTPreprocessor("lgs", gradient=gradient, clip_values=(0, 255)), (0, 255), model=model)
    x, labels = images().numpy() * 255, [0, 2, 4]
    with torch.no_grad():
        expected_logits = model(lgs(torch.from_numpy(x) / 255) * 255).numpy()
    np.testing.assert_allclose(classifier.predict(x), expected_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        classifier.loss_gradient(x, one_hot(labels)),
        hand_built_loss_gradient(model, x, labels, gradient, (0.0, 255.0)), rtol=1e-4, atol=1e-9,
    )  # fmt: skip


def test_classifier_class_gradient_goes_through_the_defense():
    model = probe_model()
    classifier = classifier_with(ARTPreprocessor("lgs"), model=model)
    x = images().numpy()
    ours = classifier.class_gradient(x, label=2)  # [B, 1, C, H, W]
    x_t = torch.tensor(x, requires_grad=True)
    model(lgs(x_t, backend="torch"))[:, 2].sum().backward()
    np.testing.assert_allclose(ours[:, 0], x_t.grad.numpy(), rtol=1e-4, atol=1e-8)


def counting(preprocessor, monkeypatch) -> list:
    calls = []
    original = preprocessor.forward

    def spy(x, y=None):
        calls.append(x.shape[0])
        return original(x, y)

    monkeypatch.setattr(preprocessor, "forward", spy)
    return calls


@pytest.mark.parametrize("apply_predict", [True, False])
def test_apply_predict_is_honoured(apply_predict, monkeypatch):
    model = probe_model()
    preprocessor = ARTPreprocessor("lgs", apply_predict=apply_predict)
    calls = counting(preprocessor, monkeypatch)
    x = images().numpy()
    with torch.no_grad():
        defended, bare = model(lgs(torch.from_numpy(x))).numpy(), model(torch.from_numpy(x)).numpy()
    assert np.abs(defended - bare).max() > 1e-3  # the defense changes the logits
    predicted = classifier_with(preprocessor, model=model).predict(x)
    np.testing.assert_allclose(predicted, defended if apply_predict else bare, rtol=1e-5, atol=1e-6)
    assert bool(calls) == apply_predict


@pytest.mark.parametrize("apply_fit", [True, False])
def test_apply_fit_is_honoured(apply_fit, monkeypatch):
    model = probe_model()
    preprocessor = ARTPreprocessor("lgs", apply_fit=apply_fit)
    calls = counting(preprocessor, monkeypatch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    classifier = classifier_with(preprocessor, model=model, optimizer=optimizer)
    classifier.fit(images().numpy(), one_hot([0, 1, 2]), batch_size=3, nb_epochs=1, verbose=False)
    assert bool(calls) == apply_fit


# --- CUDA ------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the CUDA checks need a GPU")
@pytest.mark.parametrize("gradient", GRADIENTS)
def test_on_cuda(gradient):
    x, weights = images(device="cuda"), weights_like(images(device="cuda"))
    preprocessor = ARTPreprocessor("lgs", gradient=gradient)
    assert preprocessor.device.type == "cuda"
    out, _ = preprocessor.forward(x)  # no gradient asked: LGS's auto backend may pick Triton
    assert out.device == x.device
    assert_lgs_close(out.cpu(), lgs(x.cpu()))  # Triton vs torch: equal but for rare window ties
    ours = autograd_of(lambda t: preprocessor.forward(t)[0], x, weights)
    expected = autograd_of(lambda t: lgs(t, backend="torch"), x, weights) if gradient == "exact" else weights
    torch.testing.assert_close(ours, expected)
    classifier = PyTorchClassifier(
        probe_model().cuda(), loss=torch.nn.CrossEntropyLoss(), input_shape=(3, SIZE, SIZE), nb_classes=CLASSES,
        clip_values=(0, 1), preprocessing_defences=[preprocessor], device_type="gpu",
    )  # fmt: skip
    x_numpy, labels = x.cpu().numpy(), [1, 3, 4]
    np.testing.assert_allclose(
        classifier.loss_gradient(x_numpy, one_hot(labels)),
        hand_built_loss_gradient(probe_model(), x_numpy, labels, gradient), rtol=1e-3, atol=1e-6,
    )  # fmt: skip
    numpy_out, _ = preprocessor(x_numpy)  # ART's numpy entry point, computed on the GPU
    assert isinstance(numpy_out, np.ndarray)
    assert_lgs_close(torch.from_numpy(numpy_out), lgs(x.cpu()))
