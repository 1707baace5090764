"""The commands' allocator setting: applied at start unless asked not to, reported, never applied by the library."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from lgs_gpu.app import allocator

# Minor page faults per round of a loop that fills two 64 MiB tensors and frees them, as a batch
# loop does. glibc's default gives each back to the kernel (munmap), so every round faults every
# page in again; tuned, the heap keeps them, and once it has grown to the loop's need (a few rounds,
# as small allocations between rounds shift where the blocks land) no round faults.
PROBE = textwrap.dedent("""
    import json, resource, sys
    import torch
    from lgs_gpu.app import allocator

    setting = allocator.in_effect() if sys.argv[1] == "unconfigured" else allocator.configure(
        sys.argv[1] if sys.argv[1] != "-" else None)
    faults = []
    for _ in range(12):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.empty(16 << 20, dtype=torch.float32).fill_(1.0)
        y = x * 2
        del x, y
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"setting": setting, "last_rounds_faults": faults[-4:]}))
""")


def probe(flag: str | None, **environment) -> dict:
    env = {**os.environ, **environment}
    env.pop("LD_PRELOAD", None)
    result = subprocess.run([sys.executable, "-c", PROBE, flag or "-"], capture_output=True, text=True, env=env,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(allocator._glibc() is None, reason="glibc's mallopt is what the tuned setting sets")
def test_tuned_keeps_freed_memory_for_the_next_batch_and_system_does_not():
    tuned, system = probe(None), probe("system")
    assert tuned["setting"].startswith("glibc tuned") and system["setting"].startswith("glibc defaults")
    pages = 2 * (64 << 20) // 4096
    assert min(system["last_rounds_faults"]) >= pages * 0.9  # every page faulted in again, every round
    assert max(tuned["last_rounds_faults"]) <= pages * 0.1  # the heap kept them
    assert probe(None, LGS_GPU_ALLOCATOR="system")["setting"].startswith("glibc defaults")  # the variable too


def test_a_preloaded_allocator_is_left_alone(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert allocator.preloaded().startswith("jemalloc")


def test_a_bad_setting_names_the_choices(monkeypatch):
    with pytest.raises(ValueError, match="--allocator must be one of tuned, system"):
        allocator.requested("fast")
    monkeypatch.setenv("LGS_GPU_ALLOCATOR", "fast")
    with pytest.raises(ValueError, match="LGS_GPU_ALLOCATOR must be one of"):
        allocator.requested()


@pytest.mark.skipif(allocator._glibc() is None, reason="glibc's defaults are what the probe tells apart")
def test_importing_the_library_leaves_the_allocator_alone():
    """The probe imports torch and lgs_gpu and runs LGS-free tensors: glibc's defaults must still be in effect."""
    script = PROBE.replace("import torch\n", "import torch, lgs_gpu\nfrom lgs_gpu import lgs\nlgs(torch.rand(1, 3, 8, 8))\n")
    result = subprocess.run([sys.executable, "-c", script, "unconfigured"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "LGS_GPU_CACHE_DIR": "off"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["setting"].startswith("glibc defaults (not configured")
    assert min(found["last_rounds_faults"]) >= 2 * (64 << 20) // 4096 * 0.9  # memory still returned each round


def test_info_reports_what_the_commands_use(capsys):
    from lgs_gpu.app.cli import main

    assert main(["info"]) == 0
    assert "memory allocator of the commands: " in capsys.readouterr().out
