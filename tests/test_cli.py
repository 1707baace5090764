"""The lgs-gpu command: defend files and folders safely, and the demo on bundled photographs."""

import json

import pytest
import torch
from torchvision.io import decode_image, write_png

from lgs_gpu import lgs, lgs_map
from lgs_gpu.app.cli import main


@pytest.fixture
def image_folder(tmp_path, photo_batch):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    write_png(photo_batch[0], str(folder / "a.png"))
    write_png(photo_batch[1], str(folder / "nested" / "b.png"))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_defend_folder_writes_defended_images_and_maps(tmp_path, image_folder, photo_batch):
    out = tmp_path / "out"
    assert main(["defend", str(image_folder), "-o", str(out), "--save-map", "--backend", "torch"]) == 0
    written = decode_image(str(out / "photos" / "nested" / "b.png"))
    assert torch.equal(written, lgs(photo_batch[1], backend="torch"))
    saved_map = decode_image(str(out / "photos" / "a_map.png"))
    expected_map = (lgs_map(photo_batch[0], backend="torch") * 255).round().to(torch.uint8)
    assert torch.equal(saved_map, expected_map)
    assert not list(out.rglob("*.part"))  # no temporary file left behind


def test_defend_never_overwrites_an_input(tmp_path, image_folder, capsys):
    before = (image_folder / "a.png").read_bytes()
    assert main(["defend", str(image_folder / "a.png"), "-o", str(image_folder)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (image_folder / "a.png").read_bytes() == before


def test_defend_skips_corrupt_files_and_reports_them(tmp_path, image_folder, capsys):
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    assert main(["defend", str(image_folder), "-o", str(tmp_path / "out"), "--backend", "torch"]) == 0
    captured = capsys.readouterr()
    assert "defended 2 image(s)" in captured.out and "skipped" in captured.err and "broken.png" in captured.err


@pytest.mark.parametrize("arguments, message", [
    (["missing.png"], "does not exist"),
    (["notes.txt"], "not an image file"),
])
def test_defend_bad_inputs(tmp_path, image_folder, capsys, arguments, message):
    paths = [str(image_folder / name) for name in arguments]
    assert main(["defend", *paths, "-o", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_defend_rejects_bad_lgs_parameters(tmp_path, image_folder, capsys):
    assert main(["defend", str(image_folder), "-o", str(tmp_path / "out"), "--overlap", "20"]) == 2
    assert "overlap" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_demo_writes_the_figure_and_finds_the_patches(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--size", "160", "--backend", "torch"]) == 0
    assert (out / "lgs_demo.png").stat().st_size > 10_000
    summary = json.loads((out / "lgs_demo.json").read_text())
    assert len(summary["images"]) == 4
    for record in summary["images"]:
        # A noise patch is where LGS acts: nearly all of it is suppressed, far more than the rest.
        assert record["patch_pixels_suppressed"] > 0.9
        assert record["patch_mean_strength"] > 2 * record["other_mean_strength"]
    assert "astronaut" in capsys.readouterr().out


def test_defend_with_a_baseline_defense_spec(tmp_path, image_folder, photo_batch):
    from lgs_gpu.defenses import jpeg

    out = tmp_path / "out"
    assert main(["defend", str(image_folder), "-o", str(out), "--defense", "jpeg:30"]) == 0
    assert torch.equal(decode_image(str(out / "photos" / "a.png")), jpeg(photo_batch[0], 30))


def test_defend_with_a_masked_spec_and_its_map(tmp_path, image_folder, photo_batch):
    from lgs_gpu import defenses

    out = tmp_path / "out"
    spec = "lgs:1.9,backend=torch+median:3"
    assert main(["defend", str(image_folder), "-o", str(out), "--defense", spec, "--save-map"]) == 0
    assert torch.equal(decode_image(str(out / "photos" / "a.png")), defenses.get(spec)(photo_batch[0]))
    expected_map = (lgs_map(photo_batch[0], backend="torch") * 255).round().to(torch.uint8)
    assert torch.equal(decode_image(str(out / "photos" / "a_map.png")), expected_map)


@pytest.mark.parametrize("arguments, message", [
    (["--defense", "fog:3"], "unknown defense 'fog'"),
    (["--defense", "jpeg:300"], "1..100"),
    (["--defense", "jpeg:30", "--smoothing-factor", "1.5"], "cannot be combined with --defense"),
    (["--defense", "jpeg:30", "--save-map"], "LGS-based defense"),
])  # fmt: skip
def test_defend_rejects_bad_defense_arguments_before_any_work(tmp_path, image_folder, capsys, arguments, message):
    assert main(["defend", str(image_folder), "-o", str(tmp_path / "out"), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_defenses_command_lists_every_defense(capsys):
    from lgs_gpu.defenses import available

    assert main(["defenses"]) == 0
    listing = capsys.readouterr().out
    for info in available():
        assert info.name in listing and info.checked_against in listing
    assert "jpeg:10" in listing and "no (attack with BPDA)" in listing


def test_defend_with_a_model_preset(tmp_path, image_folder, photo_batch):
    from lgs_gpu import LocalGradientsSmoothing

    out = tmp_path / "out"
    assert main(["defend", str(image_folder), "-o", str(out), "--defense", "lgs@efficientnet_lite0,backend=torch"]) == 0
    preset = LocalGradientsSmoothing.for_model("efficientnet_lite0", backend="torch")
    assert torch.equal(decode_image(str(out / "photos" / "a.png")), preset(photo_batch[0]))


@pytest.mark.parametrize("spec", ["lgs:1.9,backend=torch", "lgs:1.9,backend=torch+median:3"])
def test_defend_save_map_computes_the_gradient_once_per_image(monkeypatch, tmp_path, image_folder, spec):
    from lgs_gpu.smoothing.backends import torch_path

    calls = []
    original = torch_path.gradient_magnitude
    monkeypatch.setattr(torch_path, "gradient_magnitude", lambda x: calls.append(x.shape[0]) or original(x))
    out = tmp_path / "out"
    assert main(["defend", str(image_folder), "-o", str(out), "--defense", spec, "--save-map"]) == 0
    written = sorted(p for p in out.rglob("*.png") if not p.stem.endswith("_map"))
    # Images of one size go through LGS as one batch: one gradient per image, not per call.
    assert written and sum(calls) == len(written)


def test_defend_reads_what_every_reader_reads_and_keeps_the_bomb_guard(tmp_path, photo_batch, monkeypatch, capsys):
    """One image reader for the package: defend accepts WebP (as the data loaders do) and skips an
    image past Pillow's decompression-bomb limit with a plain reason."""
    import PIL.Image

    folder = tmp_path / "mixed"
    folder.mkdir()
    PIL.Image.fromarray(photo_batch[0].permute(1, 2, 0).numpy()).save(folder / "small.webp", lossless=True)
    PIL.Image.fromarray(torch.zeros(300, 300, 3, dtype=torch.uint8).numpy()).save(folder / "big.png")
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 60_000)  # 224² passes, 300² is a "bomb"
    out = tmp_path / "out"
    assert main(["defend", str(folder), "-o", str(out), "--backend", "torch"]) == 0
    assert torch.equal(decode_image(str(out / "mixed" / "small.png")), lgs(photo_batch[0], backend="torch"))
    assert not (out / "mixed" / "big.png").exists()
    assert "image larger than the 60,000-pixel limit (300 x 300 pixels)" in capsys.readouterr().err


def test_info_reports_each_backend_and_why_not(capsys, monkeypatch, tmp_path):
    import shutil

    from lgs_gpu import BACKENDS, backend_info

    info = backend_info("cpu")
    assert set(info) == set(BACKENDS) and info["auto"] == "torch" and info["torch"] == "available"
    assert info["triton"] != "available"  # never on CPU tensors: interpreted at best, and auto skips it
    from lgs_gpu.core import package_cache

    monkeypatch.setenv("LGS_GPU_CACHE_DIR", str(tmp_path))  # the suite runs with the cache off
    monkeypatch.setattr(shutil, "which", lambda name: None)
    package_cache.compiler_on_path.cache_clear()
    info = backend_info("cpu")
    assert info["compiled"] == "no C++ compiler on PATH (AOTInductor needs one to build the CPU programs)"
    assert info["auto"] == "torch"
    monkeypatch.undo()
    package_cache.compiler_on_path.cache_clear()
    assert main(["info", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "backends for cpu tensors:" in printed and "  auto: torch" in printed
    assert "compiled CPU programs: off (LGS_GPU_CACHE_DIR=off)" in printed


@pytest.mark.parametrize("command, config, flags, unset", [
    ("evaluate", "EvaluationConfig", "EVALUATE_FLAGS", {"device"}),
    ("calibrate", "CalibrationConfig", "CALIBRATE_FLAGS", {"device"}),
    ("certify", "CertifyConfig", "CERTIFY_FLAGS", {"device"}),
    ("defend", "DefendConfig", "DEFEND_FLAGS", {"defense", "device", "progress", "shard", "decode_on_device",
                                                 "resume", "overwrite"}),
])  # fmt: skip
def test_the_cli_options_are_the_config_fields_with_the_config_defaults(command, config, flags, unset):
    """Every field has its option (but those the command sets itself), and no flag given means the
    config's own defaults: the CLI writes none of them again."""
    from dataclasses import fields

    from lgs_gpu.app import configs, options

    config, flags = getattr(configs, config), getattr(options, flags)
    assert {flag.field for flag in flags} == {f.name for f in fields(config)} - unset
    argv = [command, "in", "-o", "out"] if command == "defend" else [command]
    args = options.build_parser().parse_args(argv)
    assert options.config_from(args, config, flags) == config(), command
    parser = options.build_parser()
    help_text = "".join(parser._subparsers._group_actions[0].choices[command].format_help().split())
    for flag in flags:
        shown = configs.shown_default(config, flag.field)
        if shown is not None and flag.action is None and flag.shown is None:
            assert "(default" + "".join(shown.split()) + ")" in help_text, (flag.flag, shown)
