"""What long runs share (lgs_gpu/app/runs.py): each torchrun rank's device, checked without a GPU."""

from __future__ import annotations

import pytest
import torch

from lgs_gpu.app.runs import rank_device


@pytest.fixture
def current_gpu(monkeypatch):
    """The GPUs made current by ``torch.cuda.set_device``, recorded instead of set (no GPU needed)."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


def torchrun(monkeypatch, local_rank: int, world: int) -> None:
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))


def test_cuda_means_the_ranks_own_gpu_under_torchrun(monkeypatch, current_gpu):
    torchrun(monkeypatch, local_rank=1, world=2)
    assert rank_device("cuda") == "cuda:1"
    assert current_gpu == ["cuda:1"]  # a plain "cuda" used later also means this rank's GPU


@pytest.mark.parametrize("device", ["cuda:0", "cpu"])
def test_an_explicit_gpu_or_another_device_stays(monkeypatch, current_gpu, device):
    torchrun(monkeypatch, local_rank=1, world=2)
    assert rank_device(device) == device
    assert current_gpu == []


def test_one_process_keeps_cuda(monkeypatch, current_gpu):
    torchrun(monkeypatch, local_rank=0, world=1)  # torchrun --nproc_per_node 1
    assert rank_device("cuda") == "cuda"
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.delenv("WORLD_SIZE")  # no torchrun at all
    assert rank_device("cuda") == "cuda"
    assert current_gpu == []
