"""benchmarks/bench.py: every defense against the CPU libraries and the copy roof, and the files it writes."""

import json

import bench
import pytest


def test_bench_smoke_writes_every_row_and_file(tmp_path, capsys):
    out = tmp_path / "bench"
    arguments = ["-o", str(out), "--batch", "2", "--size", "24", "--repeats", "1", "--per-image-sample", "1"]
    # Batches >= 2: a batch of one makes torch.compile specialise (a second compilation).
    assert bench.main([*arguments, "--sweep-batches", "2,3", "--sweep-sizes", "16"]) == 0
    report = json.loads((out / "bench.json").read_text())
    names = [row["name"] for row in report["rows"]]
    assert names[:2] == ["copy_ (roof)", "clone"]
    assert {"lgs torch", "lgs compiled", "lgs reference", "lgs numpy/scipy per image"} <= set(names)
    assert sum(row["group"] == "baseline library" for row in report["rows"]) == 6
    for row in report["rows"] + report["sweep"]:
        assert all(value > 0 and value != float("inf") for key, value in row.items() if isinstance(value, float)), row
    assert report["machine"]["versions"]["torch"] and len(report["sweep"]) == 4  # 2 batches x (torch, compiled)
    memory = {row["path"]: row["times_input"] for row in report["memory"]}
    assert set(memory) == {"lgs torch", "lgs compiled", "lgs reference", "lgs numpy/scipy per image"}
    assert all(value >= 1 for value in memory.values()), memory  # the output alone is one input's worth
    assert [row["path"] for row in report["traffic_model"]["rows"]][:2] == ["copy_ (roof)", "lgs triton"]
    assert (out / "bench.png").stat().st_size > 5000 and "x copy" in (out / "bench.md").read_text()
    assert len((out / "bench.csv").read_text().splitlines()) == len(names) + 1
    with pytest.raises(SystemExit) as refused:
        bench.main(["-o", str(out), "--sweep-sizes", "big"])
    assert refused.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err
