"""`lgs-gpu evaluate`: files and rows, resume after a kill, 2-process gloo sharding, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lgs_gpu.app.cli import main
from lgs_gpu.evaluate import EvaluationConfig, evaluate, plan

DEFENSES = "none;lgs:2.3;jpeg:30"
# A tiny run on the real offline model: 3 bundled photographs in batches of 1 (3 batches, so
# 2 processes get unequal shares), few steps. Fast, not strong: numbers are checked for shape
# and consistency here and for strength in the slow test.
TINY = [
    "--limit", "3", "--batch-size", "1", "--defenses", DEFENSES, "--lavan-fractions", "0.04",
    "--iterations", "3", "--patch-steps", "2", "--bpda-defenses", "jpeg:30",
]  # fmt: skip


def child_environment() -> dict:
    # No TRITON_INTERPRET (set for this suite), and no OMP_NUM_THREADS: evaluate pins its own
    # threads, which is what makes the single and the 2-process runs compute identically.
    return {key: value for key, value in os.environ.items() if key not in ("TRITON_INTERPRET", "OMP_NUM_THREADS")}


def run_cli(output: Path, launcher=None):
    command = [*(launcher or [sys.executable, "-m", "lgs_gpu"]), "evaluate", "-o", str(output), *TINY]
    return subprocess.run(command, capture_output=True, text=True, env=child_environment(), timeout=600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("evaluation") / "run"
    finished = run_cli(output)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return output, finished


def results_of(output: Path) -> dict:
    return json.loads((output / "results.json").read_text())


def test_writes_every_file_with_every_requested_row(tiny_run):
    output, finished = tiny_run
    for name in ("results.json", "results.csv", "results.md", "figure4_defenses.png", "figure2_lgs_stages.png"):
        assert (output / name).stat().st_size > 0, name
    results = results_of(output)
    assert results["images"]["count"] == 3 and results["model"]["name"] == "efficientnet_lite0"
    assert "clean top-1 prediction" in results["label_source"]
    tables = results["tables"]
    assert [row["defense"] for row in tables["table1"]] == DEFENSES.split(";")
    assert [row["defense"] for row in tables["table2"]] == DEFENSES.split(";")
    assert {row["defense"] for row in tables["table3"]} == {"jpeg:30", "lgs:2.3"}
    assert [row["attacker"] for row in tables["adaptive"]] == ["none (non-adaptive)", "exact gradient through LGS", "BPDA"]
    assert [key for key in tables["table1"][0] if key.startswith("lavan")][::2] == ["lavan-4%", "lavan-2%"]
    for table in tables.values():
        for row in table:
            for key, value in row.items():
                if key not in ("defense", "attacker") and value is not None:
                    assert 0 <= value <= 1, (key, value)
    none_row = tables["table1"][0]
    assert none_row["clean"] == 1.0  # labels are the clean predictions of the undefended model
    markdown = (output / "results.md").read_text()
    assert "Table 1" in markdown and "Table 3" in markdown and "lgs:2.3" in markdown
    assert "Table 1" in finished.stdout and "Table 3" in finished.stdout
    csv_lines = (output / "results.csv").read_text().splitlines()
    assert csv_lines[0] == "table,defense,column,value" and len(csv_lines) > 20
    # adversarial examples are cached for re-scoring, one file per attacked batch
    assert len(list((output / "adversarial").rglob("batch-*.pt"))) == 3 * (len(plan_units(results)) - 1)


def plan_units(results):
    config = EvaluationConfig(**results["config"])
    return plan(config)


def test_resume_after_a_kill_gives_the_same_results_without_redoing_work(tiny_run, tmp_path):
    output = tmp_path / "killed"
    command = [sys.executable, "-m", "lgs_gpu", "evaluate", "-o", str(output), *TINY]
    process = subprocess.Popen(command, env=child_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(output.glob("records/*/*.json"))) < 5:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before = {path: path.stat().st_mtime_ns for path in output.glob("records/*/*.json")}
    assert 5 <= len(finished_before) < 3 * len(plan_units(results_of(tiny_run[0]))), "the kill came too late"
    assert not (output / "results.json").exists()
    resumed = run_cli(output)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for path, mtime in finished_before.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was redone"
    assert results_of(output)["tables"] == results_of(tiny_run[0])["tables"]
    assert results_of(output)["records"] == results_of(tiny_run[0])["records"]


def test_two_gloo_processes_give_the_same_results(tiny_run, tmp_path):
    output = tmp_path / "distributed"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "lgs_gpu"]
    finished = run_cli(output, launcher=torchrun)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("Table 1") == 1  # only rank 0 reports
    assert results_of(output)["records"] == results_of(tiny_run[0])["records"]
    assert results_of(output)["tables"] == results_of(tiny_run[0])["tables"]


@pytest.mark.parametrize("arguments, message", [
    (["--model", "resnet_9000"], "unknown model"),
    (["--defenses", "none;fog:3"], "unknown defense 'fog'"),
    (["--attacks", "lavan,teleport"], "unknown attack"),
    (["--lavan-fractions", "0.02,big"], "comma-separated numbers"),
    (["--lavan-fractions", "1.5"], "fractions must be in"),
    (["--iterations", "0"], "lavan_iterations must be >= 1"),
])  # fmt: skip
def test_bad_arguments_fail_before_any_work(tmp_path, capsys, arguments, message):
    output = tmp_path / "out"
    assert main(["evaluate", "-o", str(output), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (output / "records").exists()


def test_bad_data_and_output_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "-o", str(tmp_path / "out"), "--data", str(tmp_path / "empty")]) == 2
    assert "no image" in capsys.readouterr().err
    assert main(["evaluate", "-o", str(tmp_path / "out"), "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should be")
    assert main(["evaluate", "-o", str(blocker / "out")]) == 2
    assert "not writable" in capsys.readouterr().err


@pytest.mark.slow
def test_a_real_run_shows_the_attack_and_the_defense(tmp_path):
    results = evaluate(EvaluationConfig(
        output_dir=str(tmp_path / "real"), limit=8, defenses=["none", "lgs:2.3"], attacks=["lavan"],
        lavan_fractions=[0.04], lavan_iterations=300,
    ), progress=False)  # fmt: skip
    none_row, lgs_row = results["tables"]["table1"]
    assert none_row["lavan-4%"] <= none_row["clean"] - 0.5  # measured: 100% clean -> 25% under LaVAN
    assert none_row["lavan-4% target"] >= 0.5 and lgs_row["lavan-4% target"] <= 0.125  # measured 75% -> 0%


def test_a_resume_under_other_conditions_is_refused(tiny_run, tmp_path, capsys):
    """Cached attacks made with other settings are never mixed into a run (here: other iterations)."""
    import shutil

    output = tmp_path / "copy"
    shutil.copytree(tiny_run[0], output)
    conditions = json.loads((output / "conditions.json").read_text())
    assert conditions["threads"] == 1 and conditions["torch"] == torch.__version__
    arguments = ["evaluate", "-o", str(output), *TINY]
    iterations = arguments.index("--iterations") + 1
    arguments[iterations] = str(int(arguments[iterations]) + 1)
    assert main(arguments) == 2
    assert "holds work made under other conditions (lavan_iterations" in capsys.readouterr().err


def test_evaluate_pins_its_threads_and_restores_the_callers(tmp_path, monkeypatch):
    import lgs_gpu.app.runs as module  # the run skeleton loads the model once the threads are pinned

    seen = []
    original = module.load_model
    monkeypatch.setattr(module, "load_model", lambda *a, **k: seen.append(torch.get_num_threads()) or original(*a, **k))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        config = EvaluationConfig(output_dir=str(tmp_path / "out"), limit=1, defenses=["none"], attacks=[], threads=1)
        evaluate(config, progress=False)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_patchcleanser_rows_beside_lgs(tmp_path):
    """PatchCleanser specs score every attack, get clean certificates and an adaptive (EoT over masks) row."""
    config = EvaluationConfig(
        output_dir=str(tmp_path / "out"), limit=2, batch_size=2, defenses=["none", "lgs:2.3", "pc:5%,masks=2"],
        attacks=["lavan", "adaptive"], lavan_fractions=[0.05], lavan_iterations=2,
    )  # fmt: skip
    results = evaluate(config, progress=False)
    assert [unit.key for unit in plan(config)][-1] == "masks-pc:5%,masks=2"
    (row,) = results["tables"]["certified"]
    assert row["defense"] == "pc:5%,masks=2" and row["certificates broken"] == 0
    assert set(row) >= {"clean", "certified", "lavan-5%", "adaptive (EoT over masks)"}
    assert 0 <= row["certified"] <= row["clean"] <= 1
    clean = [r for r in results["records"] if r["unit"] == "clean"][0]
    assert len(clean["certified"]["pc:5%,masks=2"]) == 2
    assert "pc:5%,masks=2" in [r["defense"] for r in results["tables"]["table1"]]


@pytest.mark.parametrize("arguments, message", [
    (["--defenses", "none;lgs:2.3|pc:2%"], "must see the image first"),
    (["--bpda-defenses", "pc:2%"], "gives labels, not images"),
])  # fmt: skip
def test_patchcleanser_specs_are_checked_before_any_work(tmp_path, capsys, arguments, message):
    assert main(["evaluate", "-o", str(tmp_path / "out"), *arguments]) == 2
    assert message in capsys.readouterr().err


def test_a_resume_with_more_defenses_scores_them_on_the_cached_attacks(tmp_path):
    settings = {"output_dir": str(tmp_path / "run"), "limit": 2, "batch_size": 2, "lavan_iterations": 2,
                "attacks": ["lavan"], "lavan_fractions": [0.04]}  # fmt: skip
    first = evaluate(EvaluationConfig(defenses=["none"], **settings), progress=False)
    cached = sorted((tmp_path / "run" / "adversarial").rglob("*.pt"))
    stamps = [path.stat().st_mtime_ns for path in cached]
    second = evaluate(EvaluationConfig(defenses=["none", "jpeg:30"], **settings), progress=False)
    assert cached and [path.stat().st_mtime_ns for path in cached] == stamps  # nothing attacked again
    assert [row["defense"] for row in second["tables"]["table1"]] == ["none", "jpeg:30"]
    assert second["tables"]["table1"][0] == first["tables"]["table1"][0]
    for record in second["records"]:
        assert set(record["predictions"]) == {"none", "jpeg:30"}


@pytest.mark.parametrize("chain", ["lgs:2|median:3", "median:3|lgs:1.5"])
def test_a_chain_holding_lgs_gets_its_stages_figure(tmp_path, chain):
    """Figure 2 shows the stages of the LGS inside the first spec holding one (a chain has no .lgs: an
    AttributeError after results.json was written)."""
    from lgs_gpu.app.evaluate_tables import _first_lgs

    results = evaluate(EvaluationConfig(output_dir=str(tmp_path / "run"), limit=1, defenses=["none", chain],
                                        attacks=["lavan"], lavan_fractions=[0.04], lavan_iterations=1), progress=False)  # fmt: skip
    assert [row["defense"] for row in results["tables"]["table1"]] == ["none", chain]
    assert (tmp_path / "run" / "figure2_lgs_stages.png").stat().st_size > 0
    assert _first_lgs(["none", chain]).spec == chain.split("|")[0 if chain.startswith("lgs") else 1]
