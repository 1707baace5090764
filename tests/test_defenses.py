"""The input contract of every defense: shapes, dtypes, batching, odd sizes, strides, gradients, errors."""

import itertools

import PIL.Image
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from lgs_gpu import defenses
from lgs_gpu.core.validate import from_unit_float
from lgs_gpu.defenses.median import median_of_9

# Every paper setting, the combinations, and the non-default options of each defense. LGS's λ
# grid does not change its contract: one λ runs "auto" (the interpreted Triton kernels on CPU in
# this suite, slow), the others the torch path.
SPECS = [spec for spec in defenses.paper_grid() if not spec.startswith("lgs")] + [
    "lgs:2.3", "lgs:1.5,backend=torch", "lgs:1.7,backend=reference",
    "lgs:2.3,backend=torch+median:3", "lgs:1.5,backend=torch+gaussian:5", "median:3|jpeg:30", "median:5", "gaussian:7,sigma=2",
    "bilateral:5,style=textbook", "bilateral:3,sigma_color=0.1", "tvm:10,max_iterations=5",
    "lgs+median:3",
]  # fmt: skip
DIFFERENTIABLE = [spec for spec in SPECS if defenses.get(spec).differentiable]


def textured(shape, seed=0, dtype=torch.float32):
    """Random images with structure: smooth gradients plus noise, in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    *_, height, width = shape
    ramp = torch.linspace(0, 1, width).expand(height, width) * torch.linspace(0.2, 1, height)[:, None]
    noise = torch.rand(shape, generator=generator, dtype=torch.float64)
    return (0.6 * ramp + 0.4 * noise).clamp(0, 1).to(dtype)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.uint8])
def test_shape_dtype_device_and_range_are_kept(spec, dtype):
    x = textured((2, 3, 20, 23))
    x = from_unit_float(x, torch.uint8) if dtype == torch.uint8 else x.to(dtype)
    y = defenses.get(spec)(x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y.float()).all()
    if dtype != torch.uint8:
        assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("spec", SPECS)
def test_batched_equals_per_image(spec):
    x = textured((3, 3, 24, 31), seed=1)
    x[1] = x[1] * 0.3  # images of different statistics, so per-image quantities (range, std) differ
    defense = defenses.get(spec)
    batched = defense(x)
    one_by_one = torch.stack([defense(image) for image in x])  # [C, H, W] inputs, single-image path
    torch.testing.assert_close(batched, one_by_one, rtol=0, atol=1e-6)


@pytest.mark.parametrize("spec", SPECS)
def test_uint8_and_float_agree(spec):
    pixels = from_unit_float(textured((2, 3, 17, 19), seed=2), torch.uint8)
    defense = defenses.get(spec)
    from_uint8 = defense(pixels)
    from_float = defense(pixels.float() / 255)
    assert torch.equal(from_uint8, from_unit_float(from_float, torch.uint8))


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (7, 300), (300, 7)])
def test_odd_sizes(spec, size):
    x = textured((2, 3, *size), seed=3)
    y = defenses.get(spec)(x)
    assert y.shape == x.shape and torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("spec", SPECS)
def test_non_contiguous_inputs(spec):
    base = textured((2, 3, 40, 50), seed=4)
    defense = defenses.get(spec)
    expected = defense(base[:, :, 5:33:2, 3:41])
    channels_last = base.contiguous(memory_format=torch.channels_last)[:, :, 5:33:2, 3:41]
    transposed = base.transpose(-1, -2).contiguous().transpose(-1, -2)[:, :, 5:33:2, 3:41]
    for view in (channels_last, transposed):
        assert not view.is_contiguous()
        torch.testing.assert_close(defense(view), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("spec", SPECS)
def test_empty_batch_and_single_image(spec):
    defense = defenses.get(spec)
    assert defense(torch.rand(0, 3, 8, 8)).shape == (0, 3, 8, 8)
    x = textured((3, 12, 14), seed=5)
    torch.testing.assert_close(defense(x), defense(x[None])[0], rtol=0, atol=0)


@pytest.mark.parametrize("spec", SPECS)
def test_differentiability_is_what_the_registry_says(spec):
    defense = defenses.get(spec)
    x = textured((1, 3, 16, 16)).requires_grad_()
    y = defense(x)
    assert y.requires_grad == defense.differentiable
    if defense.differentiable:
        (gradient,) = torch.autograd.grad(y.sum(), x)
        assert gradient.abs().sum() > 0


@pytest.mark.parametrize("spec", DIFFERENTIABLE)
def test_gradcheck(spec):
    # Distinct random values keep the median's selection and LGS's window decisions away from
    # ties, where the function is not differentiable; windows of 5 (overlap 2) fit a 9x11 image.
    small_windows = "|".join(
        "+".join(part + ",window=5,overlap=2" if part.startswith("lgs") else part for part in chain.split("+"))
        for chain in spec.split("|")
    )
    defense = defenses.get(small_windows)
    x = textured((1, 2, 9, 11), seed=6, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(defense, (x,))


def test_median_network_is_a_median_on_every_binary_input():
    # 0-1 principle: a comparator network selects the median of any input iff it does so for all
    # 2**9 binary inputs.
    for bits in itertools.product((0.0, 1.0), repeat=9):
        values = [torch.tensor(bit) for bit in bits]
        assert median_of_9(values).item() == sorted(bits)[4], bits


def test_module_function_and_transform_agree(photo_batch):
    pairs = [
        (defenses.JPEG(30), lambda x: defenses.jpeg(x, 30)),
        (defenses.TVBregman(20), lambda x: defenses.tv_bregman(x, 20)),
        (defenses.MedianFilter(3), lambda x: defenses.median_filter(x, 3)),
        (defenses.GaussianFilter(5), lambda x: defenses.gaussian_filter(x, 5)),
        (defenses.BilateralFilter(5), lambda x: defenses.bilateral_filter(x, 5)),
        (defenses.BitDepth(2), lambda x: defenses.bit_depth(x, 2)),
    ]
    image = photo_batch[0, :, :64, :80]
    for module, function in pairs:
        expected = function(image)
        assert torch.equal(module(image), expected), module
        assert torch.equal(module(photo_batch[:1, :, :64, :80])[0], expected), module
        wrapped = module(tv_tensors.Image(image))
        assert isinstance(wrapped, tv_tensors.Image) and torch.equal(wrapped.as_subclass(torch.Tensor), expected)
        pil = module(PIL.Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()))
        assert isinstance(pil, PIL.Image.Image)
        assert torch.equal(TF.pil_to_tensor(pil), expected)


@pytest.mark.parametrize("call, error, match", [
    (lambda: defenses.jpeg(torch.rand(3, 8, 8), quality=0), ValueError, "1..100"),
    (lambda: defenses.jpeg(torch.rand(3, 8, 8), quality=101), ValueError, "1..100"),
    (lambda: defenses.jpeg(torch.rand(3, 8, 8), quality=30.0), TypeError, "int"),
    (lambda: defenses.jpeg(torch.rand(4, 8, 8)), ValueError, "1 .grayscale. or 3"),
    (lambda: defenses.bit_depth(torch.rand(3, 8, 8), bits=0), ValueError, "1..8"),
    (lambda: defenses.bit_depth(torch.rand(3, 8, 8), bits=9), ValueError, "1..8"),
    (lambda: defenses.median_filter(torch.rand(3, 8, 8), window=4), ValueError, "odd"),
    (lambda: defenses.median_filter(torch.rand(3, 8, 8), window=0), ValueError, ">= 1"),
    (lambda: defenses.gaussian_filter(torch.rand(3, 8, 8), sigma=0), ValueError, "> 0"),
    (lambda: defenses.gaussian_filter(torch.rand(3, 8, 8), sigma=float("nan")), ValueError, "finite"),
    (lambda: defenses.bilateral_filter(torch.rand(3, 8, 8), style="opencv"), ValueError, "skimage"),
    (lambda: defenses.bilateral_filter(torch.rand(3, 8, 8), sigma_color=-1), ValueError, "> 0"),
    (lambda: defenses.tv_bregman(torch.rand(3, 8, 8), weight=0), ValueError, "> 0"),
    (lambda: defenses.tv_bregman(torch.rand(3, 8, 8), max_iterations=0), ValueError, ">= 1"),
    (lambda: defenses.median_filter(torch.rand(8, 8)), ValueError, r"\[B, C, H, W\]"),
    (lambda: defenses.gaussian_filter(torch.zeros(3, 8, 8, dtype=torch.int32)), TypeError, "dtype"),
    (lambda: defenses.bit_depth([[0.5]]), TypeError, "torch.Tensor"),
    (lambda: defenses.jpeg(torch.rand(1, 3, 0, 8)), ValueError, ">= 1"),
    (lambda: defenses.Compose([]), ValueError, "at least one"),
    (lambda: defenses.Compose([torch.nn.Identity()]), TypeError, "lgs_gpu defenses"),
])  # fmt: skip
def test_bad_input_raises(call, error, match):
    with pytest.raises(error, match=match):
        call()
