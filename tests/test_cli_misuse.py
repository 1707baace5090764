"""CLI misuse gets one plain line and exit 2 before any work; Ctrl-C in a resumable run gets exit 130."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lgs_gpu.app import cli

NO_GPU = not torch.cuda.is_available()


@pytest.mark.parametrize("arguments, message", [
    (["info", "--device", "bogus"], "is not a torch device"),
    (["demo", "--device", "mps"], "runs on cpu or cuda"),
    (["defend", "in", "-o", "{out}", "--backend", "compiled", "--device", "meta"], "runs on cpu or cuda"),
    (["evaluate", "-o", "{out}", "--limit", "-1"], "limit must be an int >= 1"),
    (["certify", "-o", "{out}", "--limit", "0"], "limit must be an int >= 1"),
    (["calibrate", "-o", "{out}", "--limit", "0"], "limit must be an int >= 1"),
    (["evaluate", "-o", "{out}", "--iterations", "0"], "lavan_iterations must be >= 1"),
    (["demo", "--size", "0", "-o", "{out}"], "size must be an int in 16..4096"),
    (["demo", "--size", "100000", "-o", "{out}"], "size must be an int in 16..4096"),
    (["demo", "-o", "{file}"], "is a file, not a folder"),
    (["evaluate", "-o", "{out}", "--defenses", ";"], "--defenses names no defense"),
    (["evaluate", "-o", "{out}", "--defenses", "none", "--bpda-defenses", " ; "], "--bpda-defenses names no defense"),
    (["defend", "in", "-o", "{out}", "--defense", "lgs:2,threshold=0.1,threshold=0.2"], "threshold given twice"),
    (["defend", "in", "-o", "{out}", "--defense", "median:3,window=5"], "window given twice"),
])  # fmt: skip
def test_misuse_is_one_line_and_exit_2_before_any_work(arguments, message, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    arguments = [a.format(out=tmp_path / "out", file=tmp_path / "a-file") for a in arguments]
    assert cli.main(arguments) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1, error
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not NO_GPU, reason="a GPU is here: --device cuda is valid")
@pytest.mark.parametrize("arguments", [["demo", "--device", "cuda"], ["defend", "in", "-o", "x", "--backend", "triton"]])
def test_cuda_asked_for_without_a_gpu(arguments, capsys):
    assert cli.main(arguments) == 2
    error = capsys.readouterr().err
    assert ("no CUDA device here" in error or "--backend triton runs on cuda tensors" in error) and error.count("\n") == 1


def test_warmup_with_an_unusable_cache_folder_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("LGS_GPU_CACHE_DIR", str(blocker / "cache"))  # under a file: cannot be made
    assert cli.main(["warmup"]) == 2
    error = capsys.readouterr().err
    assert "LGS_GPU_CACHE_DIR" in error and error.count("\n") == 1, error
    # The failure belongs to that folder: another one is usable (it once poisoned the whole process).
    from lgs_gpu import backend_info

    monkeypatch.setenv("LGS_GPU_CACHE_DIR", str(tmp_path / "good"))
    assert backend_info("cpu")["compiled"] == "available"


@pytest.mark.parametrize("command, runner", [("evaluate", "evaluate"), ("certify", "certify"), ("calibrate", "calibrate")])
def test_ctrl_c_in_a_resumable_run_is_one_line_and_exit_130(command, runner, tmp_path, monkeypatch, capsys):
    import importlib

    module = importlib.import_module(f"lgs_gpu.app.{runner}")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, runner, interrupted)
    assert cli.main([command, "-o", str(tmp_path / "out"), "--limit", "1"]) == 130
    error = capsys.readouterr().err
    assert error.strip() == f"lgs-gpu {command}: interrupted; every finished record is kept: run the same command to resume"


@pytest.mark.parametrize("command, runner, field, flags, expected", [
    ("evaluate", "lgs_gpu.app.evaluate.evaluate", "lavan_iterations", ["--iterations", "1000"], 1000),
    ("evaluate", "lgs_gpu.app.evaluate.evaluate", "lavan_iterations", [], 100),
    ("evaluate", "lgs_gpu.app.evaluate.evaluate", "lavan_fractions", ["--lavan-fractions", "0.02,0.03,0.04"], [0.02, 0.03, 0.04]),
    ("evaluate", "lgs_gpu.app.evaluate.evaluate", "attacks", ["--attacks", "lavan,patch,bpda,adaptive"],
     ["lavan", "patch", "bpda", "adaptive"]),
    ("evaluate", "lgs_gpu.app.evaluate.evaluate", "limit", ["--limit", "2"], 2),
    ("calibrate", "lgs_gpu.app.calibrate.calibrate", "iterations", ["--iterations", "1000"], 1000),
    ("calibrate", "lgs_gpu.app.calibrate.calibrate", "thresholds", [], [0.1, 0.2, 0.3]),
])  # fmt: skip
def test_quick_keeps_every_flag_given_even_at_its_default(command, runner, field, flags, expected, tmp_path, monkeypatch):
    """--quick presets only the flags not given: --iterations 1000 (the full default) is 1000 steps."""
    seen = {}

    def record(config, *args, **kwargs):
        seen["config"] = config
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(runner, record)
    assert cli.main([command, "--quick", "-o", str(tmp_path / "out"), *flags]) == 130
    assert getattr(seen["config"], field) == expected


def test_help_and_argument_errors_answer_without_importing_torch():
    script = ("import sys; from lgs_gpu.app.cli import main\n"
              "for argv in (['--help'], ['evaluate', '--help'], ['frobnicate']):\n"
              "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
              "print('torch' in sys.modules)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False", result.stdout
