"""benchmarks/gpu_check.py: a dry run lists its steps anywhere; without CUDA it says so and exits 1."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def run(*arguments):
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=120)


def test_dry_run_lists_the_steps():
    finished = run("--dry-run")
    assert finished.returncode == 0
    assert [line.split(":")[0] for line in finished.stdout.splitlines()] == ["device", "tests", "kernels", "bench"]
    assert run("--dry-run", "--only", "bench").stdout.startswith("bench: lgs-gpu bench on CUDA")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the check would run")
def test_without_cuda_it_says_so_in_one_line(tmp_path):
    finished = run("-o", str(tmp_path / "out"))
    assert finished.returncode == 1
    assert finished.stdout.strip() == "gpu_check: no CUDA device here; run it on a GPU machine (nothing was measured)"
    assert not (tmp_path / "out").exists()
