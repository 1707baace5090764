"""An image's output does not depend on its batch neighbours, on any path."""

import pytest
import torch

from lgs_gpu import lgs

from helpers import interpreter_config, lgs_triton, triton_or_skip


def run(x, backend):
    if backend == "triton":
        triton_or_skip()
        return lgs_triton(x, 2.3, 0.1, 15, 5, config=interpreter_config(*x.shape[2:]))[0]
    return lgs(x, backend=backend)


@pytest.mark.parametrize("backend", ["torch", "triton", "reference"])
def test_image_alone_equals_image_in_any_batch(backend, photo_batch):
    generator = torch.Generator().manual_seed(0)
    # Crops keep the interpreted Triton path fast; each still holds a photograph's edges (and a patch).
    batch = photo_batch[:, :, :96, 100:228].float() / 255
    # Neighbours with very different ranges of gradient: a flat image, pure noise, a dim copy.
    neighbours = torch.stack([torch.full_like(batch[0], 0.5), torch.rand(batch[0].shape, generator=generator), batch[1] * 0.1])
    for index in range(batch.shape[0]):
        alone = run(batch[index : index + 1], backend)
        mixed = torch.cat([neighbours[:2], batch[index : index + 1], neighbours[2:]])
        assert torch.equal(run(mixed, backend)[2], alone[0])
    together = run(batch, backend)
    for index in range(batch.shape[0]):
        assert torch.equal(together[index], run(batch[index : index + 1], backend)[0])


@pytest.mark.parametrize("chunk_bytes", [1, 2 * 3 * 40 * 52 * 4 + 1])  # one image per chunk; two per chunk (2, 2, 1)
def test_torch_path_chunks_change_no_value(monkeypatch, chunk_bytes):
    """The CPU torch path runs a few images at a time: bit-identical to the whole batch, gradient included."""
    from lgs_gpu.smoothing.backends import torch_path as lgs_torch

    x = torch.rand(5, 3, 40, 52, generator=torch.Generator().manual_seed(3))
    whole = lgs_torch.lgs(x, 2.3, 0.1, 15, 5)
    whole_map = lgs_torch.stages(x, 2.3, 0.1, 15, 5, ("suppression_map", "window_means"))
    leaf = x.clone().requires_grad_()
    whole_gradient = torch.autograd.grad(lgs_torch.lgs(leaf, 2.3, 0.1, 15, 5).sum(), leaf)[0]
    monkeypatch.setattr(lgs_torch, "CPU_CHUNK_BYTES", chunk_bytes)
    assert lgs_torch._chunk_size(x) < x.shape[0]
    assert torch.equal(lgs_torch.lgs(x, 2.3, 0.1, 15, 5), whole)
    chunked_map = lgs_torch.stages(x, 2.3, 0.1, 15, 5, ("suppression_map", "window_means"))
    assert all(torch.equal(chunked_map[name], whole_map[name]) for name in whole_map)
    leaf = x.clone().requires_grad_()
    assert torch.equal(torch.autograd.grad(lgs_torch.lgs(leaf, 2.3, 0.1, 15, 5).sum(), leaf)[0], whole_gradient)
