"""An image's output does not depend on its batch neighbours, on any path."""

import pytest
import torch

from lgs_gpu import lgs
from lgs_gpu.kernels.lgs_triton import lgs_triton

from helpers import interpreter_config


def run(x, backend):
    if backend == "triton":
        return lgs_triton(x, 2.3, 0.1, 15, 5, config=interpreter_config(*x.shape[2:]))[0]
    return lgs(x, backend=backend)


@pytest.mark.parametrize("backend", ["torch", "triton", "reference"])
def test_image_alone_equals_image_in_any_batch(backend, photo_batch):
    generator = torch.Generator().manual_seed(0)
    batch = photo_batch.float() / 255
    # Neighbours with very different ranges of gradient: a flat image, pure noise, a dim copy.
    neighbours = torch.stack([torch.full_like(batch[0], 0.5), torch.rand(batch[0].shape, generator=generator), batch[1] * 0.1])
    for index in range(batch.shape[0]):
        alone = run(batch[index : index + 1], backend)
        mixed = torch.cat([neighbours[:2], batch[index : index + 1], neighbours[2:]])
        assert torch.equal(run(mixed, backend)[2], alone[0])
    together = run(batch, backend)
    for index in range(batch.shape[0]):
        assert torch.equal(together[index], run(batch[index : index + 1], backend)[0])
