"""Image folders read batch by batch: the same images as an in-memory read, decoded in worker processes, and runs
(evaluate, certify, calibrate) that finish each batch before the next is decoded."""

import json
from pathlib import Path

import PIL.Image
import pytest
import torch

from lgs_gpu import data

SYNSETS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331"]


def _photo(path: Path, seed: int, size=(40, 52), suffix_format="PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (*size, 3), dtype=torch.uint8, generator=generator).numpy()
    PIL.Image.fromarray(pixels).save(path, format=suffix_format)


def _folder(root: Path, count: int) -> Path:
    """``count`` synset-named photographs of a few sizes (labels from their names)."""
    for number in range(count):
        _photo(root / f"{SYNSETS[number % len(SYNSETS)]}_{number:03d}.png", number, (30 + number, 44 - number))
    return root


def _truncated_jpeg(path: Path, seed: int) -> None:
    """A JPEG whose header reads but whose pixel data stops half-way."""
    _photo(path, seed, (64, 64), "JPEG")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_hold_the_images_an_in_memory_read_gives(tmp_path, workers):
    folder = _folder(tmp_path / "data", 11)
    whole = data.image_folder(folder, 24)
    files = data.image_files(folder, 24)
    assert len(files) == 11 and files.names == whole.names and files.label_source == whole.label_source
    batches = list(files.batches(4, workers=workers))
    assert [batch.index for batch in batches] == [0, 1, 2]
    assert [batch.images.shape[0] for batch in batches] == [4, 4, 3]
    assert torch.equal(torch.cat([batch.images for batch in batches]), whole.images)
    assert torch.equal(torch.cat([batch.labels for batch in batches]), whole.labels)
    assert [name for batch in batches for name in batch.names] == whole.names
    chosen = list(files.batches(4, [2, 0], workers=workers))  # a rank's share, in the order asked
    assert [batch.index for batch in chosen] == [2, 0] and torch.equal(chosen[1].images, batches[0].images)


def test_the_in_memory_set_cuts_the_same_batches(tmp_path):
    folder = _folder(tmp_path / "data", 7)
    whole = data.image_folder(folder, 16)
    from_memory = list(whole.batches(3))
    from_files = list(data.image_files(folder, 16).batches(3))
    for memory, files in zip(from_memory, from_files, strict=True):
        assert memory.index == files.index and memory.names == files.names
        assert torch.equal(memory.images, files.images) and torch.equal(memory.labels, files.labels)


def test_listing_reads_headers_only_and_a_file_cut_short_is_left_out_of_its_batch(tmp_path):
    folder = _folder(tmp_path / "data", 5)
    (folder / f"{SYNSETS[0]}_000a.png").write_bytes(b"not an image at all")  # refused from its first bytes
    _truncated_jpeg(folder / f"{SYNSETS[1]}_000b.jpg", 9)  # its header reads: refused when decoded
    files = data.image_files(folder, 16)
    assert len(files) == 6  # the truncated JPEG is listed
    assert [Path(path).name for path, _ in files.skipped] == [f"{SYNSETS[0]}_000a.png"]
    assert "not an image file" in files.skipped[0][1]
    batches = list(files.batches(3))
    first = batches[0]  # sorted: ..._000.png, ..._000b.jpg, ..._001.png
    assert first.names == [f"{SYNSETS[0]}_000.png", f"{SYNSETS[1]}_001.png"]
    assert first.labels.tolist() == [0, 1] and first.images.shape[0] == 2
    assert len(first.skipped) == 1 and "truncated" in first.skipped[0][1]
    # --limit counts files whose header reads; a corrupt header never uses up the count
    assert data.image_files(folder, 16, limit=3).names == [f"{SYNSETS[0]}_000.png", f"{SYNSETS[1]}_000b.jpg",
                                                           f"{SYNSETS[1]}_001.png"]  # fmt: skip


def test_a_batch_whose_files_all_fail_decodes_to_no_images(tmp_path):
    folder = tmp_path / "data"
    for number in range(2):
        _truncated_jpeg(folder / f"{SYNSETS[number]}_{number}.jpg", number)
    (batch,) = data.image_files(folder, 16).batches(4)
    assert batch.images.shape == (0, 3, 16, 16) and batch.names == [] and batch.labels.tolist() == []
    assert len(batch.skipped) == 2


def _tiny_evaluation(folder: Path, output: Path, **overrides):
    from lgs_gpu.evaluate import EvaluationConfig

    settings = {"output_dir": str(output), "data": str(folder), "model": "resnet18", "weights": None,
                "defenses": ["none", "lgs"], "attacks": ["lavan"], "lavan_fractions": [0.02], "lavan_iterations": 1,
                "batch_size": 4, "workers": 0} | overrides  # fmt: skip
    return EvaluationConfig(**settings)


def test_evaluate_runs_every_unit_on_a_batch_before_it_decodes_the_next(tmp_path, monkeypatch):
    from lgs_gpu.app import evaluate as evaluation

    folder = _folder(tmp_path / "data", 10)
    events = []
    decode = data._BatchDecoder.__getitem__
    run = evaluation.run_unit_batch

    def decoding(self, position):
        batch = decode(self, position)
        events.append(("decode", batch.index))
        return batch

    def running(config, unit, model, batch, *args):
        events.append((unit.key, batch.index))
        return run(config, unit, model, batch, *args)

    monkeypatch.setattr(data._BatchDecoder, "__getitem__", decoding)
    monkeypatch.setattr(evaluation, "run_unit_batch", running)
    results = evaluation.evaluate(_tiny_evaluation(folder, tmp_path / "run"), progress=False)
    expected = [event for index in range(3) for event in (("decode", index), ("clean", index), ("lavan-2%", index))]
    assert events == [*expected, ("decode", 0)]  # the figures read batch 0 again
    assert results["images"]["count"] == 10 and results["images"]["names"] == data.image_files(folder, 8).names
    assert results["label_source"] == "ground truth: synset-prefixed file names (10)"


def test_evaluate_reports_files_that_fail_in_their_batch_and_keeps_the_cut(tmp_path):
    from lgs_gpu.evaluate import evaluate

    folder = _folder(tmp_path / "data", 4)
    for number in range(4):  # sorted after the photographs: the whole second batch fails to decode
        _truncated_jpeg(folder / f"{SYNSETS[5]}_x{number}.jpg", 20 + number)
    config = _tiny_evaluation(folder, tmp_path / "run", attacks=[])
    results = evaluate(config, progress=False)
    assert results["images"]["count"] == 4 and len(results["images"]["skipped"]) == 4
    assert all("truncated" in why for _, why in results["images"]["skipped"])
    clean = [record for record in results["records"] if record["unit"] == "clean"]
    assert [len(record["images"]) for record in clean] == [4, 0]
    again = evaluate(config, progress=False)  # a resume reads the records, the empty one too
    assert again["tables"] == results["tables"]


def test_certify_and_calibrate_read_the_folder_batch_by_batch(tmp_path, monkeypatch):
    from lgs_gpu.app.calibrate import CalibrationConfig, calibrate
    from lgs_gpu.app.certify import CertifyConfig, certify

    folder = _folder(tmp_path / "data", 6)
    decoded = []  # every batch decoded, in order: each pass over the folder reads each batch once
    decode = data._BatchDecoder.__getitem__
    monkeypatch.setattr(data._BatchDecoder, "__getitem__",
                        lambda self, position: decoded.append(self.indices[position]) or decode(self, position))  # fmt: skip
    certified = certify(CertifyConfig(output_dir=str(tmp_path / "certify"), data=str(folder), model="resnet18",
                                      weights=None, patch_fractions=[0.1], masks_per_axis=2, images_per_batch=4,
                                      workers=0), progress=False)  # fmt: skip  (0: the decodes are counted here)
    assert certified["images"] == 6 and certified["names"] == data.image_files(folder, 8).names
    assert decoded == [0, 1]
    decoded.clear()
    records = json.loads((tmp_path / "certify" / "certify.json").read_text())["records"]["patch-10pc"]
    assert [len(record["images"]) for record in records] == [4, 2]
    calibrated = calibrate(CalibrationConfig(output_dir=str(tmp_path / "calibrate"), data=str(folder), model="resnet18",
                                             weights=None, smoothing_factors=[2.3], thresholds=[0.1, 0.3],
                                             window_sizes=[15], iterations=1, batch_size=4, adaptive=True, budget=1.0,
                                             workers=0), progress=False)  # fmt: skip
    assert calibrated["images"]["count"] == 6 and calibrated["bare"]["clean"]["n"] == 6
    assert decoded == [0, 1, 0, 1]  # the sweep, then the adaptive attacks on the recommendation
    assert calibrated["adaptive"]["exact"]["n"] == 6 and calibrated["adaptive"]["bpda"]["n"] == 6
    assert calibrated["label_source"] == "ground truth: synset-prefixed file names (6)"
