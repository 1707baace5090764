"""Every Triton kernel configuration the launcher can choose compiles for sm_80 and sm_90, no GPU needed.

The suite runs with TRITON_INTERPRET=1, under which kernels cannot be compiled, so the
compilation runs in a subprocess without it. Its register / spill table is printed (pytest -s or
the captured-output section shows it) and kept in the JSON written beside the test's tmp dir.
"""

import json
import os
import subprocess
import sys

import pytest

from lgs_gpu.paths.triton_path.aot import ARCHITECTURES

pytest.importorskip("triton")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    path = tmp_path_factory.mktemp("aot") / "kernels.json"
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-m", "lgs_gpu.paths.triton_path.aot", "--json", str(path)],
        capture_output=True, text=True, env=environment, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    print("\n" + result.stdout)
    return json.loads(path.read_text())


def test_every_configuration_compiles_for_each_architecture(reports):
    # Imported here: defining the kernels under the interpreter is fine, the listing is static.
    from lgs_gpu.paths.triton_path.aot import kernel_configurations

    expected = {(name, variant) for name, variant, _, _ in kernel_configurations()}
    for arch in ARCHITECTURES:
        compiled = {(r["kernel"], r["variant"]) for r in reports if r["arch"] == arch}
        assert compiled == expected, f"sm_{arch}: missing {expected - compiled}"
    kernels = {r["kernel"] for r in reports}
    assert kernels == {"_window_sums_kernel", "_image_range_kernel", "_suppress_kernel"}


def test_no_configuration_spills(reports):
    for report in reports:
        assert 0 < report["registers"] <= 255, report
        assert report["spill_bytes"] == 0, report
        assert report["stack_bytes"] <= 64, report  # a small frame, not a spilled tile


def test_roofline_reads_the_compiled_kernels(reports):
    from lgs_gpu.tooling import roofline

    rows = roofline.kernel_table(reports, 64, 299)
    assert {row["kernel"] for row in rows} == {"_window_sums_kernel", "_suppress_kernel", "_image_range_kernel"}
    for row in rows:
        assert row["warps"] >= 1 and 0 < row["resident_warps"] <= roofline.MAX_WARPS_PER_SM
    image = 64 * 3 * 299 * 299 * 4
    assert sum(row["megabytes"] for row in rows) * 1e6 <= 4 * image  # at most 3 reads + 1 write
