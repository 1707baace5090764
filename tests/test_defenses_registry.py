"""Spec strings, the registry listing, composition and the LGS-masked filters."""

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lgs_gpu import LocalGradientsSmoothing, defenses, lgs, lgs_map
from lgs_gpu.defenses import BilateralFilter, Compose, GaussianFilter, LGSMaskedFilter, TVBregman
from lgs_gpu.defenses.registry import Identity


def test_every_name_and_alias_builds_its_defense():
    for info in defenses.available():
        for name in (info.name, *info.aliases, info.name.upper()):
            defense = defenses.get(name)
            assert defense.name == info.name
            assert defense.differentiable == info.differentiable, info.name
        assert info.checked_against and isinstance(info.parameters, dict)
        if info.main_parameter is not None:
            assert info.main_parameter in info.parameters


def test_the_paper_grid_is_complete():
    grid = defenses.paper_grid()
    assert grid[0] == "none"
    expected = {
        "lgs": ["lgs:2.3", "lgs:2.1", "lgs:1.9", "lgs:1.7", "lgs:1.5"],
        "jpeg": [f"jpeg:{q}" for q in (80, 60, 40, 30, 20, 10)],
        "tvm": ["tvm:10", "tvm:20", "tvm:30"],
        "median": ["median:3"], "gaussian": ["gaussian:5"], "bilateral": ["bilateral:5"],
        "bitdepth": ["bitdepth:1", "bitdepth:2", "bitdepth:3"],
    }  # fmt: skip
    for name, specs in expected.items():
        assert [spec for spec in grid if spec.split(":")[0] == name] == specs


@pytest.mark.parametrize("spec", defenses.paper_grid() + [
    "lgs+median:3", "lgs:1.5,threshold=0.2+bilateral:5,style=textbook", "median:3|jpeg:30|bitdepth:3",
    "gaussian:5,sigma=1.5", "tvm:10,max_iterations=20,tolerance=0.01", "lgs:1.7,window=9,overlap=3",
    "lgs:2.3,backend=torch", "lgs:1.5,threshold=0.2,backend=reference+median:3", "bilateral:5,sigma_color=0.1",
])  # fmt: skip
def test_spec_round_trips(spec):
    """``get(defense.spec)`` rebuilds the same defense: every setting, the backend included."""
    defense = defenses.get(spec)
    rebuilt = defenses.get(defense.spec)
    assert repr(rebuilt) == repr(defense)  # the module tree with every parameter (extra_repr)
    assert rebuilt.spec == defense.spec
    assert repr(defenses.get(f"  {spec.upper() if spec.islower() and '=' not in spec else spec} ")) == repr(defense)


def test_spec_keeps_the_lgs_backend():
    assert defenses.get("lgs:2.3,backend=torch").spec == "lgs:2.3,backend=torch"
    assert defenses.get("lgs:2.3,backend=auto").spec == "lgs:2.3"
    assert "backend='reference'" in repr(defenses.get(defenses.get("lgs,backend=reference+median:3").spec))


def test_spec_parameters_reach_the_defense():
    assert defenses.get("jpeg:30").quality == 30
    assert defenses.get("tvm:20").weight == 20.0
    assert defenses.get("gaussian:7,sigma=2").sigma == 2.0
    assert defenses.get("bilateral:5,sigma_color=0.1").sigma_color == 0.1
    lgs_defense = defenses.get("lgs:1.7,threshold=0.15,window=9,overlap=3,backend=torch")
    assert (lgs_defense.smoothing_factor, lgs_defense.threshold, lgs_defense.window_size, lgs_defense.overlap) == (
        1.7, 0.15, 9, 3,
    )  # fmt: skip
    assert lgs_defense.backend == "torch"
    assert isinstance(defenses.get("none"), Identity)


def test_lgs_spec_is_the_lgs_core(photo_batch):
    assert torch.equal(defenses.get("lgs:1.9,backend=torch")(photo_batch), lgs(photo_batch, 1.9, backend="torch"))


@pytest.mark.parametrize("spec, match", [
    ("fog:3", "unknown defense 'fog'.*accepted: none"),
    ("", "empty defense spec"),
    ("jpeg:0", "1..100"),
    ("jpeg:101", "1..100"),
    ("jpeg:high", "quality"),
    ("bitdepth:0", "1..8"),
    ("bitdepth:9", "1..8"),
    ("median:4", "odd"),
    ("median:-3", ">= 1"),
    ("gaussian:5,sgima=2", "no parameter 'sgima'.*sigma"),
    ("gaussian:5,2", "key=value"),
    ("tvm:0", "> 0"),
    ("lgs:inf", "finite"),
    ("lgs:2.3,overlap=20", "overlap"),
    ("lgs:2.3,backend=cuda", "backend"),
    ("none:3", "takes no parameters"),
    ("median:3+lgs", "before '\\+' must be an lgs"),
    ("lgs+lgs", "after 'lgs\\+'"),
    ("lgs+median:3+gaussian:5", "one '\\+'"),
    ("jpeg:30,quality=40", "given twice"),
])  # fmt: skip
def test_bad_specs_raise_value_errors_that_say_what_is_accepted(spec, match):
    with pytest.raises(ValueError, match=match):
        defenses.get(spec)


def test_non_string_spec_is_a_type_error():
    with pytest.raises(TypeError, match="spec is a string"):
        defenses.get(30)


def test_compose_applies_in_order_and_rounds_once(photo_batch):
    x = photo_batch.float() / 255
    chain = defenses.get("median:3|gaussian:5")
    assert isinstance(chain, defenses.Compose) and chain.differentiable
    expected = defenses.gaussian_filter(defenses.median_filter(x, 3), 5)
    torch.testing.assert_close(chain(x), expected, rtol=0, atol=0)
    assert not defenses.get("median:3|jpeg:30").differentiable


def test_masked_filter_acts_only_inside_the_windows_lgs_keeps(photo_batch):
    x = photo_batch.float() / 255
    masked = defenses.get("lgs:2.3,backend=torch+median:3")
    inside = masked.passing_windows(x)
    assert inside.shape == (4, 1, 224, 224) and 0 < inside.float().mean() < 1
    assert inside[0, 0, 10:50, 150:190].all() and inside[2, 0, 170:214, 20:64].all()  # the planted patches
    defended = lgs(x, 2.3, backend="torch")
    expected = torch.where(inside, defenses.median_filter(defended, 3), defended)
    output = masked(x)
    torch.testing.assert_close(output, expected, rtol=0, atol=0)
    assert torch.equal(output.expand_as(x)[~inside.expand_as(x)], x[~inside.expand_as(x)])


def test_masked_filter_leaves_images_without_passing_windows_unchanged():
    flat = torch.full((2, 3, 40, 40), 0.3)
    flat[1, :, :, 20:] = 0.31  # one vertical edge: its windows average far below γ = 0.99
    masked = defenses.get("lgs,threshold=0.99+gaussian:5")
    assert not masked.passing_windows(flat).any()
    assert torch.equal(masked(flat), flat)


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_masked_filter_computes_the_gradient_once_on_its_lgs_backend(monkeypatch, photo_batch, backend):
    """One LGS pass gives the output and the window mask; it runs on the LGS spec's backend."""
    import importlib

    calls = {"torch": 0, "reference": 0}
    for name in calls:
        module = importlib.import_module(f"lgs_gpu.smoothing.backends.{'torch_path' if name == 'torch' else 'reference'}")
        original = module.gradient_magnitude

        def counted(x, _original=original, _name=name):
            calls[_name] += 1
            return _original(x)

        monkeypatch.setattr(module, "gradient_magnitude", counted)
    masked = defenses.get(f"lgs:2.3,backend={backend}+median:3")
    output = masked(photo_batch[:2, :, :48, :48])
    assert calls == {"torch": int(backend == "torch"), "reference": int(backend == "reference")}
    defended, suppressed = masked.defend_with_map(photo_batch[0, :, :48, :48])
    assert torch.equal(defended, output[0])
    assert suppressed.shape == (1, 48, 48) and calls[backend] == 2  # the image and its map: one more pass
    assert torch.equal(suppressed, lgs_map(photo_batch[0, :, :48, :48], backend=backend))

REALS = st.floats(allow_nan=False, allow_infinity=False, width=64)
POSITIVE = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False)
WINDOWS = st.integers(1, 40).map(lambda n: 2 * n + 1)
PARAMETERS = {
    LocalGradientsSmoothing: ("smoothing_factor", "threshold", "window_size", "overlap", "backend"),
    TVBregman: ("weight", "max_iterations", "tolerance"),
    GaussianFilter: ("window", "sigma"),
    BilateralFilter: ("window", "sigma_spatial", "sigma_color", "style"),
}


def same_parameters(built, original) -> None:
    assert type(built) is type(original)
    if isinstance(original, Compose):
        for one, other in zip(built.defenses, original.defenses, strict=True):
            same_parameters(one, other)
    elif isinstance(original, LGSMaskedFilter):
        same_parameters(built.lgs, original.lgs)
        same_parameters(built.smoother, original.smoother)
    for name in PARAMETERS.get(type(original), ()):
        assert getattr(built, name) == getattr(original, name), name


lgs_modules = st.builds(
    lambda smoothing, threshold, window, overlap, backend: LocalGradientsSmoothing(
        smoothing, threshold, window, min(overlap, window - 1), backend),
    REALS.filter(lambda value: abs(value) < 3e38), st.one_of(REALS, st.sampled_from([float("inf"), float("-inf")])),
    st.integers(1, 64), st.integers(0, 63), st.sampled_from(["auto", "torch", "reference"]),
)  # fmt: skip
filters = st.one_of(
    st.builds(TVBregman, POSITIVE, st.integers(1, 500), st.floats(0, 1e3)),
    st.builds(GaussianFilter, WINDOWS, POSITIVE),
    st.builds(BilateralFilter, WINDOWS, POSITIVE, st.one_of(st.none(), POSITIVE), st.sampled_from(["skimage", "textbook"])),
)
any_defense = st.one_of(
    lgs_modules, filters,
    st.builds(LGSMaskedFilter, filters, lgs_modules),
    st.lists(st.one_of(lgs_modules, filters), min_size=2, max_size=3).map(Compose),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(any_defense)
@example(LocalGradientsSmoothing(1e6))
@example(LocalGradientsSmoothing(2.3000001))
@example(LocalGradientsSmoothing(0.0, threshold=-0.0))
def test_every_spec_rebuilds_exactly_the_same_parameters(defense):
    """defenses.get(module.spec) is the same defense: λ = 1e6 (written 1e+06, whose '+' split the spec) and
    λ = 2.3000001 (written 2.3) did not come back."""
    spec = defense.spec
    rebuilt = defenses.get(spec)
    assert rebuilt.spec == spec
    same_parameters(rebuilt, defense)


def test_a_model_preset_by_spec_and_in_python():
    from lgs_gpu import LocalGradientsSmoothing
    from lgs_gpu.core.parameters import MODEL_PRESETS, model_preset

    preset = model_preset("efficientnet_lite0")
    assert preset == MODEL_PRESETS["efficientnet_lite0"] and preset is not MODEL_PRESETS["efficientnet_lite0"]
    from_spec = defenses.get("lgs@efficientnet_lite0")
    from_python = LocalGradientsSmoothing.for_model("efficientnet_lite0")
    settings = ("smoothing_factor", "threshold", "window_size", "overlap")
    assert {name: getattr(from_spec, name) for name in settings} == preset
    assert {name: getattr(from_python, name) for name in settings} == preset
    rebuilt = defenses.get(from_spec.spec)  # the spec a module reports names its parameters, not the preset
    assert {name: getattr(rebuilt, name) for name in settings} == preset
    # what the spec gives overrides the preset, everywhere a spec goes
    assert defenses.get("lgs@EfficientNet_Lite0:1.5,backend=torch").smoothing_factor == 1.5
    assert defenses.get("lgs@efficientnet_lite0,threshold=0.05").threshold == 0.05
    assert LocalGradientsSmoothing.for_model("efficientnet_lite0", window_size=9).window_size == 9
    assert defenses.get("lgs@efficientnet_lite0+median:3").lgs.threshold == preset["threshold"]
    assert defenses.get("median:3|lgs@efficientnet_lite0").defenses[1].threshold == preset["threshold"]
    # lgs() and the plain spec keep the paper's defaults
    assert defenses.get("lgs").threshold == 0.1 and LocalGradientsSmoothing().smoothing_factor == 2.3


@pytest.mark.parametrize("spec, message", [
    ("lgs@resnet18", "no LGS preset for model 'resnet18'; presets exist for: efficientnet_lite0"),
    ("jpeg@efficientnet_lite0", "only lgs has model presets"),
    ("lgs@", "'@' names a model"),
])  # fmt: skip
def test_a_preset_that_does_not_exist_is_refused_with_what_does(spec, message):
    with pytest.raises(ValueError, match=message):
        defenses.get(spec)


def test_the_preset_goes_where_specs_go():
    from lgs_gpu import certify
    from lgs_gpu.app.evaluate import _check_spec
    from lgs_gpu.core.parameters import lgs_spec_for

    _check_spec("lgs@efficientnet_lite0")
    _check_spec("pc:2%@lgs@efficientnet_lite0")  # PatchCleanser with the preset before the model
    assert certify.parse_spec("pc:2%@lgs@efficientnet_lite0")["defense"] == "lgs@efficientnet_lite0"
    assert lgs_spec_for("efficientnet_lite0") == "lgs@efficientnet_lite0" and lgs_spec_for("resnet18") == "lgs"
