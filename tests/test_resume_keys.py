"""Resumed evaluate and certify runs never reuse work made from other images or other attack settings.

Each cached file (record, adversarial batch, patch) stores what it was made from; these tests
change one thing at a time between two runs in the same folder and check that exactly the work
depending on it is redone, and that a damaged cached file is named and recomputed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import PIL.Image

from lgs_gpu.app.certify import CertifyConfig, certify
from lgs_gpu.data import bundled_photographs
from lgs_gpu.evaluate import EvaluationConfig, evaluate


def write_photographs(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    photographs = list(bundled_photographs(64).values())
    for index, name in enumerate(names):
        PIL.Image.fromarray(photographs[index % len(photographs)].permute(1, 2, 0).numpy()).save(folder / name)


def stamps(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in sorted(folder.rglob("batch-*"))}


def test_another_bpda_fraction_redoes_the_bpda_units_and_labels_them_right(tmp_path):
    settings = {"output_dir": str(tmp_path / "run"), "limit": 1, "batch_size": 1, "lavan_iterations": 2,
                "attacks": ["bpda"], "defenses": ["none", "bitdepth:3"], "bpda_defenses": ["bitdepth:3"]}  # fmt: skip
    evaluate(EvaluationConfig(bpda_fraction=0.02, **settings), progress=False)
    before = stamps(tmp_path / "run")
    evaluate(EvaluationConfig(bpda_fraction=0.02, **settings), progress=False)
    assert stamps(tmp_path / "run") == before  # the same settings: nothing redone
    results = evaluate(EvaluationConfig(bpda_fraction=0.04, **settings), progress=False)
    after = stamps(tmp_path / "run")
    bpda = [name for name in before if "bpda" in name]
    assert bpda and all(after[name] != before[name] for name in bpda)  # attacked again at 4%
    assert all(after[name] == before[name] for name in before if "bpda" not in name)  # the clean unit kept
    for record in results["records"]:
        if record["unit"].startswith("bpda"):
            assert record["depends_on"]["fraction"] == 0.04


def test_files_added_to_and_removed_from_data_are_not_answered_by_others_records(tmp_path, caplog):
    data = tmp_path / "data"
    write_photographs(data, ["a.png", "b.png", "c.png"])
    settings = {"output_dir": str(tmp_path / "run"), "data": str(data), "batch_size": 1, "attacks": [],
                "defenses": ["none"]}  # fmt: skip
    first = evaluate(EvaluationConfig(**settings), progress=False)
    assert [record["images"] for record in first["records"]] == [["a.png"], ["b.png"], ["c.png"]]
    (data / "a.png").unlink()  # batch 0 now holds b.png, batch 1 c.png, batch 2 the new d.png
    write_photographs(data, ["d.png"])
    with caplog.at_level(logging.WARNING, logger="lgs_gpu"):
        second = evaluate(EvaluationConfig(**settings), progress=False)
    assert [record["images"] for record in second["records"]] == [["b.png"], ["c.png"], ["d.png"]]
    assert second["images"]["names"] == ["b.png", "c.png", "d.png"]
    assert "made under other conditions (images differ)" in caplog.text


def test_a_truncated_record_and_a_truncated_attack_are_named_and_recomputed(tmp_path, caplog):
    settings = {"output_dir": str(tmp_path / "run"), "limit": 1, "batch_size": 1, "lavan_iterations": 2,
                "attacks": ["lavan"], "lavan_fractions": [0.04], "defenses": ["none"]}  # fmt: skip
    first = evaluate(EvaluationConfig(**settings), progress=False)
    record = next((tmp_path / "run" / "records").rglob("batch-00000.json"))
    attack = next((tmp_path / "run" / "adversarial").rglob("batch-00000.pt"))
    record.write_text(record.read_text()[:25])
    attack.write_bytes(attack.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="lgs_gpu"):
        second = evaluate(EvaluationConfig(**settings), progress=False)
    assert str(record) in caplog.text and str(attack) in caplog.text and "unreadable" in caplog.text
    assert second["tables"] == first["tables"]  # the same seeds: the same attack again
    json.loads(record.read_text())  # whole again


def test_certify_resumed_after_the_data_changed_certifies_the_images_there_now(tmp_path, caplog):
    data = tmp_path / "data"
    write_photographs(data, ["a.png", "b.png"])
    config = CertifyConfig(output_dir=str(tmp_path / "run"), data=str(data), images_per_batch=1,
                           patch_fractions=[0.05], masks_per_axis=2)  # fmt: skip
    certify(config, progress=False)
    (data / "a.png").unlink()
    write_photographs(data, ["c.png"])
    with caplog.at_level(logging.WARNING, logger="lgs_gpu"):
        results = certify(config, progress=False)
    names = [name for records in results["records"].values() for record in records for name in record["images"]]
    assert names == ["b.png", "c.png"]
    assert "images differ" in caplog.text
    record = next((tmp_path / "run" / "records").rglob("batch-00000.json"))
    record.write_text("{")
    with caplog.at_level(logging.WARNING, logger="lgs_gpu"):
        again = certify(config, progress=False)
    assert str(record) in caplog.text
    accuracy = ("clean accuracy (PatchCleanser)", "certified accuracy", "case I", "case II", "case III")
    assert [[row[key] for key in accuracy] for row in again["table"]] == [[row[key] for key in accuracy]
                                                                           for row in results["table"]]  # fmt: skip


def test_a_damaged_conditions_file_is_named_and_refused(tmp_path):
    import pytest

    from lgs_gpu.app.runs import check_conditions

    (tmp_path / "conditions.json").write_text('{"torch": "2.')
    with pytest.raises(ValueError, match="conditions.json is unreadable.*new output folder"):
        check_conditions(tmp_path, {"torch": "2.14"}, 0)


def test_work_through_a_preset_is_redone_when_the_preset_changes(tmp_path, monkeypatch):
    """Records and attacks name a preset (lgs@efficientnet_lite0) by what it stood for: a resume under another
    version's preset rescores it and attacks through it again; work that does not depend on it is kept."""
    from lgs_gpu.core import parameters

    settings = {"output_dir": str(tmp_path / "run"), "limit": 1, "batch_size": 1, "lavan_iterations": 2,
                "attacks": ["lavan", "adaptive"], "lavan_fractions": [0.02], "defenses": ["none", "lgs@efficientnet_lite0"],
                "adaptive_defense": "lgs@efficientnet_lite0"}  # fmt: skip
    first = evaluate(EvaluationConfig(**settings), progress=False)
    before = stamps(tmp_path / "run")
    clean = next(record for record in first["records"] if record["unit"] == "clean")
    assert clean["resolved"] == {"lgs@efficientnet_lite0": "lgs:3,threshold=0.3"}
    changed = {**parameters.MODEL_PRESETS["efficientnet_lite0"], "threshold": 0.5}
    monkeypatch.setitem(parameters.MODEL_PRESETS, "efficientnet_lite0", changed)
    again = evaluate(EvaluationConfig(**settings), progress=False)
    after = stamps(tmp_path / "run")
    redone = sorted(name for name in after if after[name] != before[name])
    # every record scored the preset again; the adaptive attacks through it were redone; LaVAN on the bare model was not
    assert redone == sorted([
        "records/clean/batch-00000.json", "records/lavan-2pc/batch-00000.json",
        "records/exact-lgs_at_efficientnet_lite0/batch-00000.json", "records/bpda-lgs_at_efficientnet_lite0/batch-00000.json",
        "adversarial/exact-lgs_at_efficientnet_lite0/batch-00000.pt", "adversarial/bpda-lgs_at_efficientnet_lite0/batch-00000.pt",
    ])  # fmt: skip
    clean = next(record for record in again["records"] if record["unit"] == "clean")
    assert clean["resolved"] == {"lgs@efficientnet_lite0": "lgs:3,threshold=0.5"}
