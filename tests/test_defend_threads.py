"""``lgs-gpu defend`` under load: the main process's torch threads are sized to the CPUs its decoding
workers leave, said in defend's closing line and ``lgs-gpu info``; and its throughput against plain Pillow
(issue 21, item 6; lgs_gpu/app/defend.py, benchmarks/defend_vs_pillow.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.io import write_png

from lgs_gpu.app.cli import main
from lgs_gpu.app.defend import defend_files
from lgs_gpu.app.resources import ThreadPlan, usable_cpus
from lgs_gpu.defenses import ImageDefense, get

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("workers, cpus, threads", [(0, 2, 2), (1, 2, 1), (2, 2, 1), (4, 2, 1), (4, 16, 12)])
def test_torch_threads_are_the_cpus_the_workers_leave(workers, cpus, threads):
    plan = ThreadPlan.choose(workers, None, None, cpus)
    assert (plan.threads, plan.write_threads) == (threads, cpus)
    assert ThreadPlan.choose(workers, 3, 5, cpus) == ThreadPlan(workers, 3, 5, cpus)  # given: kept


class Counting(ImageDefense):
    """The identity, recording torch's thread count at each call."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.threads = []

    @property
    def spec(self) -> str:
        return "none"

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        self.threads.append(torch.get_num_threads())
        return get("none")(x)


@pytest.fixture
def folder(tmp_path, photo_batch):
    folder = tmp_path / "in"
    folder.mkdir()
    for number in range(3):
        write_png(photo_batch[number, :, :32, :32].contiguous(), str(folder / f"{number}.png"))
    return folder


@pytest.mark.parametrize("workers, threads", [(0, None), (1, None), (0, 1)])
def test_the_run_uses_the_plan_and_gives_the_callers_setting_back(tmp_path, folder, workers, threads):
    before = torch.get_num_threads()
    counting = Counting()
    defend_files([folder], tmp_path / "out", defense=counting, workers=workers, threads=threads, progress=False)
    assert set(counting.threads) == {ThreadPlan.choose(workers, None, threads).threads}
    assert torch.get_num_threads() == before


def test_the_cli_and_info_say_what_was_chosen(tmp_path, folder, capsys):
    assert main(["defend", str(folder), "-o", str(tmp_path / "out"), "--defense", "none", "--workers", "1"]) == 0
    expected = ThreadPlan.choose(1, None, None).describe()
    assert f"defended 3 image(s) into {tmp_path / 'out'}; {expected}" in capsys.readouterr().out
    assert main(["info"]) == 0
    assert "defend by default: " in capsys.readouterr().out
    assert main(["defend", str(folder), "-o", str(tmp_path / "bad"), "--threads", "0"]) == 2
    assert "threads must be an int >= 1" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(usable_cpus() < 2, reason="the roof runs one Pillow process per CPU")
def test_defend_reaches_80_percent_of_plain_pillow_in_one_run():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "defend_vs_pillow.py"), "--count", "120", "--repeats", "3"],
                            capture_output=True, text=True, check=True, cwd=BENCHMARKS)  # fmt: skip
    ratio = float(re.search(r"defend / roof: ([\d.]+)%", result.stdout).group(1))
    assert ratio >= 80, result.stdout


def test_a_containers_cpu_quota_and_memory_limit_count(tmp_path, monkeypatch):
    import lgs_gpu.app.resources as resources

    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: 2 threads' worth
    (tmp_path / "memory.max").write_text(f"{8 << 30}\n")
    (tmp_path / "memory.current").write_text(f"{2 << 30}\n")
    monkeypatch.setattr(resources, "CGROUP", tmp_path)
    assert resources.usable_cpus() == min(2, len(os.sched_getaffinity(0)))
    assert resources.default_batch_memory("cpu") <= (6 << 30) // 4
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert resources.usable_cpus() == len(os.sched_getaffinity(0))
