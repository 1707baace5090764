"""``lgs-gpu certify``: tables and files, resume, refusal of other conditions, torchrun sharding."""

import json
import os
import subprocess
import sys

import pytest

from lgs_gpu.app.cli import main

# 3 photographs, 2 per record (so 2 processes get unequal shares), 2 x 2 masks: fast.
TINY = ["--limit", "3", "--batch-size", "2", "--patch", "2%,0.05", "--masks", "2", "--model-batch-size", "16"]


def child_environment() -> dict:
    return {key: value for key, value in os.environ.items() if key not in ("TRITON_INTERPRET", "OMP_NUM_THREADS")}


def run_cli(output, launcher=None):
    command = [*(launcher or [sys.executable, "-m", "lgs_gpu"]), "certify", "-o", str(output), *TINY]
    return subprocess.run(command, capture_output=True, text=True, env=child_environment(), timeout=600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("certify") / "run"
    finished = run_cli(output)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return output, finished.stdout


def test_writes_the_table_and_every_file(tiny_run):
    output, stdout = tiny_run
    for name in ("certify.json", "certify.csv", "certify.md", "conditions.json"):
        assert (output / name).is_file(), name
    results = json.loads((output / "certify.json").read_text())
    assert [row["patch"] for row in results["table"]] == ["2% (32 px)", "5% (51 px)"]
    for row in results["table"]:
        assert row["images"] == 3
        assert row["clean accuracy (model)"] == 1.0  # labels are the model's own predictions
        assert 0 <= row["certified accuracy"] <= row["clean accuracy (PatchCleanser)"] <= 1
        assert row["case I"] + row["case II"] + row["case III"] == pytest.approx(1)
        assert row["forward passes"] >= 3 * 4  # at least the four one-mask predictions per image
    for records in results["records"].values():
        for record in records:  # a certified image went through every pair; case I is needed for it
            for certified, case, passes in zip(record["certified"], record["cases"], record["forward_passes"],
                                               strict=True):  # fmt: skip
                assert not certified or (case == 1 and passes == 4 + 6)
    assert "certified accuracy" in stdout and (output / "certify.csv").read_text().count("\n") == 1 + 2 * 3


def test_resume_redoes_nothing(tiny_run, tmp_path):
    import shutil

    output = tmp_path / "copy"
    shutil.copytree(tiny_run[0], output)
    before = {path: path.stat().st_mtime_ns for path in output.glob("records/*/*.json")}
    (output / "certify.json").unlink()
    finished = run_cli(output)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in before.items())
    assert json.loads((output / "certify.json").read_text())["records"] == json.loads(
        (tiny_run[0] / "certify.json").read_text()
    )["records"]


def test_other_conditions_are_refused(tiny_run, tmp_path, capsys):
    import shutil

    output = tmp_path / "copy"
    shutil.copytree(tiny_run[0], output)
    arguments = ["certify", "-o", str(output), *TINY]
    arguments[arguments.index("--masks") + 1] = "3"
    assert main(arguments) == 2
    assert "other conditions (masks_per_axis: 2 -> 3)" in capsys.readouterr().err


def test_two_gloo_processes_give_the_same_records(tiny_run, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "lgs_gpu"]
    finished = run_cli(tmp_path / "distributed", launcher=torchrun)
    assert finished.returncode == 0, finished.stderr[-3000:]
    distributed = json.loads((tmp_path / "distributed" / "certify.json").read_text())
    single = json.loads((tiny_run[0] / "certify.json").read_text())
    strip = ("seconds",)
    for key in single["records"]:
        for a, b in zip(distributed["records"][key], single["records"][key], strict=True):
            assert {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}


@pytest.mark.parametrize("arguments, message", [
    (["--patch", "2%,big"], "comma-separated percentages"),
    (["--patch", "150%"], "patch fractions must be in (0, 1)"),
    (["--masks", "0"], "masks_per_axis must be >= 1"),
    (["--data", "/no/such/folder"], "does not exist"),
])  # fmt: skip
def test_bad_arguments_fail_before_any_work(tmp_path, capsys, arguments, message):
    output = tmp_path / "out"
    assert main(["certify", "-o", str(output), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (output / "records").exists()


def test_patch_sizes_that_would_share_a_folder_are_refused(tmp_path, capsys):
    assert main(["certify", "-o", str(tmp_path / "out"), "--patch", "0.02,0.0200000001"]) == 2
    assert "patch fractions must differ" in capsys.readouterr().err
