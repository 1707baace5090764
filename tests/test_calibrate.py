"""`lgs_sweep` (many settings from one gradient) and `lgs-gpu calibrate`: the numbers, the rules, the shared cache."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_lgs_parity import textured_images

from lgs_gpu import lgs, lgs_sweep
from lgs_gpu.app import calibrate as calibration
from lgs_gpu.app.cli import main
from lgs_gpu.defenses import get

# --- the sweep entry --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.float64])
def test_sweep_equals_lgs_at_every_setting(dtype):
    x = textured_images((3, 3, 61, 83), dtype, seed=31)
    lambdas, gammas = [0.0, 0.7, 2.3, 9.0], [-1.0, 0.05, 0.1, 0.3, float("inf")]
    seen = []
    for smoothing_factor, threshold, defended in lgs_sweep(x, lambdas, gammas, 15, 5, backend="torch"):
        seen.append((smoothing_factor, threshold))
        assert torch.equal(defended, lgs(x, smoothing_factor, threshold, 15, 5, backend="torch")), (smoothing_factor, threshold)
    assert seen == [(lam, gam) for gam in gammas for lam in lambdas]


def test_sweep_on_single_images_odd_windows_and_the_reference():
    x = textured_images((1, 3, 40, 37), torch.float32, seed=32)[0]
    for smoothing_factor, threshold, defended in lgs_sweep(x, [1.5], [0.08, 0.2], 9, 3, backend="reference"):
        assert defended.shape == x.shape
        torch.testing.assert_close(defended, lgs(x, smoothing_factor, threshold, 9, 3, backend="reference"), rtol=0, atol=1e-6)


def test_sweep_rejects_bad_grids():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="at least one value"):
        list(lgs_sweep(x, [], [0.1]))
    with pytest.raises(ValueError, match="finite"):
        list(lgs_sweep(x, [float("inf")], [0.1]))
    with pytest.raises(TypeError, match="real number"):
        list(lgs_sweep(x, ["2"], [0.1]))


def test_a_hundred_settings_cost_far_less_than_a_hundred_lgs_calls():
    x = textured_images((4, 3, 96, 96), torch.float32, seed=33)
    lambdas, gammas = [0.5 + 0.5 * i for i in range(10)], [0.02 * (i + 1) for i in range(10)]

    def calls():
        for gam in gammas:
            for lam in lambdas:
                lgs(x, lam, gam, backend="torch")

    def sweep():
        for _ in lgs_sweep(x, lambdas, gammas, backend="torch"):
            pass

    timings = {"calls": [], "sweep": []}
    for _ in range(3):  # interleaved, best of three: the ratio, not the times, is the claim
        for name, run in (("calls", calls), ("sweep", sweep)):
            started = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - started)
    assert min(timings["sweep"]) < 0.35 * min(timings["calls"]), timings


# --- the rules --------------------------------------------------------------------------------------


def setting(spec_parts, clean, robust):
    lam, gam, window = spec_parts
    return {"spec": calibration.setting_spec(lam, gam, window), "smoothing_factor": lam, "threshold": gam,
            "window_size": window, "clean_accuracy": clean, "robust_accuracy": robust}  # fmt: skip


def test_recommendation_rules():
    grid = [setting((1.0, 0.3, 15), 1.0, 0.5), setting((2.3, 0.1, 15), 0.75, 0.875), setting((4.0, 0.1, 15), 0.875, 0.875),
            setting((2.3, 0.3, 9), 1.0, 0.5), setting((2.3, 0.3, 15), 1.0, 0.5)]  # fmt: skip
    # Within 5 points only the clean-keeping settings fit; they tie, and the one nearest the paper wins.
    assert calibration.recommend(grid, 1.0, 0.05) == "lgs:2.3,threshold=0.3,window=15,overlap=5"
    # A 12.5-point budget admits 4.0/0.1 (7 of 8 kept) with the best robust accuracy.
    assert calibration.recommend(grid, 1.0, 0.125) == "lgs:4,threshold=0.1,window=15,overlap=5"
    # A wider budget: 2.3/0.1 and 4.0/0.1 tie on robust; the better clean accuracy wins.
    assert calibration.recommend(grid, 1.0, 0.5) == "lgs:4,threshold=0.1,window=15,overlap=5"
    assert calibration.recommend([setting((2.3, 0.1, 15), 0.5, 1.0)], 1.0, 0.05) is None
    paper_tie = [setting((3.0, 0.1, 15), 1.0, 0.5), setting((2.3, 0.1, 15), 1.0, 0.5)]
    assert calibration.recommend(paper_tie, 1.0, 0.0) == "lgs:2.3,threshold=0.1,window=15,overlap=5"


def test_pareto_front_keeps_exactly_the_undominated():
    grid = [setting((1, 0.1, 15), 1.0, 0.25), setting((2, 0.1, 15), 0.75, 0.5), setting((3, 0.1, 15), 0.75, 0.375),
            setting((4, 0.1, 15), 0.5, 0.875), setting((5, 0.1, 15), 0.25, 0.875)]  # fmt: skip
    assert calibration.pareto_front(grid) == [grid[0]["spec"], grid[1]["spec"], grid[3]["spec"]]


def test_wilson_interval_against_known_values():
    low, high = calibration.wilson_interval(4, 8)
    assert abs(low - 0.2152) < 1e-3 and abs(high - 0.7848) < 1e-3  # 0.5 ± the textbook Wilson bounds
    assert calibration.wilson_interval(0, 8)[0] == 0.0 and calibration.wilson_interval(8, 8)[1] == 1.0
    with pytest.raises(ValueError, match="successes"):
        calibration.wilson_interval(10, 5)


def test_specs_are_usable_everywhere():
    module = get(calibration.setting_spec(1.7, 0.25, 9))
    assert (module.smoothing_factor, module.threshold, module.window_size, module.overlap) == (1.7, 0.25, 9, 3)
    # Read back exactly: no "+" (it chains specs), no digits lost to %g (found in review).
    for smoothing_factor, threshold in ((1e6, 0.1), (1.23456789, 1.23456781), (1e-7, 1e20), (2.3, float("inf"))):
        module = get(calibration.setting_spec(smoothing_factor, threshold, 15))
        assert (module.smoothing_factor, module.threshold) == (smoothing_factor, threshold)
    assert calibration.overlap_for(15) == 5 and calibration.overlap_for(25) == 8


def test_bad_configurations_are_refused_before_any_work(tmp_path):
    for changes, message in (({"budget": 5.0}, "budget must be in"), ({"window_sizes": [1]}, "window sizes"),
                             ({"thresholds": []}, "at least one"), ({"smoothing_factors": [-1.0]}, "λ"),
                             ({"thresholds": [0.1, 0.1]}, "repeats"), ({"window_sizes": [15, 15]}, "repeats")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            calibration.validate(calibration.CalibrationConfig(output_dir=str(tmp_path), **changes))
    assert main(["calibrate", "-o", str(tmp_path), "--budget", "five"]) == 2
    assert main(["calibrate", "-o", str(tmp_path), "--thresholds", "0.1,x"]) == 2


# --- the command, on the offline model ---------------------------------------------------------------

TINY = ["--limit", "3", "--batch-size", "2", "--iterations", "3", "--smoothing-factors", "1,2.3",
        "--thresholds", "0.1,0.3", "--window-sizes", "9,15", "--budget", "40%"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_calibration(tmp_path_factory):
    output = tmp_path_factory.mktemp("calibration") / "run"
    finished = subprocess.run([sys.executable, "-m", "lgs_gpu", "calibrate", "-o", str(output), *TINY],
                              capture_output=True, text=True, timeout=900)  # fmt: skip
    return output, finished


def test_calibration_writes_its_files_and_recommends_a_spec(tiny_calibration):
    output, finished = tiny_calibration
    assert finished.returncode == 0, finished.stderr[-3000:]
    for name in ("calibration.json", "calibration.csv", "calibration.md", "calibration.png"):
        assert (output / name).stat().st_size > 0
    result = json.loads((output / "calibration.json").read_text())
    specs = [s["spec"] for s in result["settings"]]
    assert len(specs) == 8 == len(set(specs)) and set(result["pareto"]) <= set(specs)
    assert result["recommended"] in specs and finished.stdout.strip().endswith(result["recommended"])
    assert result["recommended"] == calibration.recommend(result["settings"], result["bare"]["clean"]["accuracy"], 0.4)
    assert set(result["adaptive"]) == {"exact", "bpda"} and result["adaptive"]["exact"]["n"] == 3
    for s in result["settings"]:
        assert s["n"] == 3 and s["clean_ci95"][0] <= s["clean_accuracy"] <= s["clean_ci95"][1]


def test_calibration_numbers_are_those_of_each_setting_scored_alone(tiny_calibration):
    from lgs_gpu.models import load_model

    output, _ = tiny_calibration
    result = json.loads((output / "calibration.json").read_text())
    model = load_model()
    adversarial = torch.cat([torch.load(path, weights_only=True)["adversarial"]
                             for path in sorted((output / "adversarial" / "lavan-4pc").glob("batch-*.pt"))])  # fmt: skip
    from lgs_gpu.data import bundled

    clean = bundled(model.input_size).images[:3]
    labels = model.predict(clean)[0]
    for s in result["settings"][::3]:
        defense = get(s["spec"])
        assert int((model.predict(defense(clean))[0] == labels).sum()) / 3 == s["clean_accuracy"], s["spec"]
        assert int((model.predict(defense(adversarial))[0] == labels).sum()) / 3 == s["robust_accuracy"], s["spec"]


def test_evaluate_reuses_the_calibration_attack_and_scores_its_recommendation(tiny_calibration):
    output, _ = tiny_calibration
    cached = sorted((output / "adversarial" / "lavan-4pc").glob("batch-*.pt"))
    stamps = [path.stat().st_mtime_ns for path in cached]
    result = json.loads((output / "calibration.json").read_text())
    command = [sys.executable, "-m", "lgs_gpu", "evaluate", "-o", str(output), "--calibration", str(output / "calibration.json"),
               "--defenses", "none", "--attacks", "lavan", "--lavan-fractions", "0.04", "--limit", "3", "--batch-size", "2",
               "--iterations", "3"]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert [path.stat().st_mtime_ns for path in cached] == stamps  # scored, not attacked again
    table = json.loads((output / "results.json").read_text())["tables"]["table1"]
    row = next(row for row in table if row["defense"] == result["recommended"])
    chosen = next(s for s in result["settings"] if s["spec"] == result["recommended"])
    assert row["lavan-4%"] == pytest.approx(chosen["robust_accuracy"]) and row["clean"] == pytest.approx(chosen["clean_accuracy"])


def test_nothing_within_the_budget_exits_non_zero(tmp_path):
    output = tmp_path / "run"
    # λ = 50 with every window passing blackens most of every image: clean accuracy collapses.
    command = [sys.executable, "-m", "lgs_gpu", "calibrate", "-o", str(output), "--limit", "2", "--batch-size", "2",
               "--iterations", "1", "--smoothing-factors", "50", "--thresholds", "-1", "--window-sizes", "15",
               "--budget", "0%", "--no-adaptive"]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 1, finished.stderr[-2000:]
    assert "no setting stays within the 0% budget" in finished.stderr
    assert json.loads((output / "calibration.json").read_text())["recommended"] is None
    assert not Path(output / "records").exists()
