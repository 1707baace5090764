"""LocalGradientsSmoothing as an nn.Module, in nn.Sequential, and as a torchvision v2 transform."""

import PIL.Image
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from lgs_gpu import LocalGradientsSmoothing, lgs


@pytest.fixture
def images(photo_batch):
    return photo_batch.float() / 255


def test_function_and_module_agree(images):
    module = LocalGradientsSmoothing(smoothing_factor=1.5, threshold=0.05, backend="torch")
    torch.testing.assert_close(module(images), lgs(images, 1.5, 0.05, backend="torch"))
    assert "smoothing_factor=1.5" in repr(module)


def test_in_sequential_before_normalize(images):
    normalize = v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    pipeline = torch.nn.Sequential(LocalGradientsSmoothing(backend="torch"), normalize)
    torch.testing.assert_close(pipeline(images), normalize(lgs(images, backend="torch")))


def test_v2_transform_on_a_single_image_with_targets(photo_batch):
    image = tv_tensors.Image(photo_batch[0])
    boxes = tv_tensors.BoundingBoxes([[10, 10, 50, 50]], format="XYXY", canvas_size=image.shape[-2:])
    pipeline = v2.Compose([LocalGradientsSmoothing(backend="torch"), v2.ToDtype(torch.float32, scale=True)])
    out_image, out_target = pipeline(image, {"boxes": boxes, "label": 3})
    assert isinstance(out_image, tv_tensors.Image)
    torch.testing.assert_close(out_image.as_subclass(torch.Tensor), lgs(photo_batch[0], backend="torch").float() / 255)
    assert torch.equal(out_target["boxes"], boxes) and out_target["label"] == 3


def test_v2_transform_on_a_plain_tensor_and_a_pil_image(photo_batch):
    transform = LocalGradientsSmoothing(backend="torch")
    assert torch.equal(transform(photo_batch[1]), lgs(photo_batch[1], backend="torch"))
    pil = PIL.Image.fromarray(photo_batch[1].permute(1, 2, 0).numpy())
    out = transform(pil)
    assert isinstance(out, PIL.Image.Image) and out.size == pil.size
    assert torch.equal(torch.from_numpy(__import__("numpy").asarray(out)).permute(2, 0, 1), lgs(photo_batch[1], backend="torch"))


def test_gradients_flow_through_the_module(images):
    x = images[:1].clone().requires_grad_()
    LocalGradientsSmoothing()(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_module_compiles():
    x = torch.rand(2, 3, 32, 32)
    compiled = torch.compile(LocalGradientsSmoothing(backend="torch"), backend="eager")
    torch.testing.assert_close(compiled(x), lgs(x, backend="torch"))
