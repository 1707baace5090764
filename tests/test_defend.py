"""``lgs-gpu defend`` at dataset scale: batching by size, workers, the manifest and resume, interrupts,
sharding, and plain-word skip messages (lgs_gpu/app/defend.py, defend_outputs.py, lgs_gpu/core/imageio.py)."""

from __future__ import annotations

import json
import os

import PIL.Image
import pytest
import torch
from torchvision.io import decode_image, encode_jpeg, write_png

from lgs_gpu.app.cli import main
from lgs_gpu.app.defend import defend_files
from lgs_gpu.app.defend_outputs import MANIFEST_STEM, read_manifest
from lgs_gpu.core.imageio import UnreadableImage, plain_reason, read_image, read_jpeg_bytes
from lgs_gpu.defenses import ImageDefense, get

# (file name, height, width): three sizes, arriving interleaved, so that a batch of 2 must gather
# images that are not neighbours and leave the odd ones alone.
MIXED = [("01.png", 40, 56), ("02.png", 48, 48), ("03.png", 40, 56), ("04.png", 33, 47), ("05.png", 48, 48),
         ("06.png", 40, 56)]  # fmt: skip


class Recording(ImageDefense):
    """Another defense, recording the batch shapes it is called on; raises KeyboardInterrupt on call ``stop_at``."""

    name = "recording"

    def __init__(self, inner: ImageDefense, stop_at: int | None = None) -> None:
        super().__init__()
        self.inner, self.stop_at, self.shapes = inner, stop_at, []

    @property
    def spec(self) -> str:  # the inner spec: a resume with the plain spec string must match
        return self.inner.spec

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.shapes) == self.stop_at:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread, mid-run
        self.shapes.append(tuple(x.shape))
        return self.inner(x)


@pytest.fixture
def mixed(tmp_path, photo_batch):
    """A folder of PNG crops of real photographs in three sizes; ``{name: [3, H, W] uint8}``."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    images = {}
    for number, (name, height, width) in enumerate(MIXED):
        image = photo_batch[
            number % 4, :, 7 * number : 7 * number + height, 5 * number : 5 * number + width
        ].contiguous()
        write_png(image, str(folder / name))
        images[name] = image
    return folder, images


def outputs(folder) -> dict[str, bytes]:
    """Every file under ``folder`` but the manifests, by relative path."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(MANIFEST_STEM)
    }


def mtimes(folder) -> dict[str, int]:
    return {path.relative_to(folder).as_posix(): path.stat().st_mtime_ns for path in folder.rglob("*.png")}


class TestBatching:
    def test_batched_output_equals_the_per_image_defense_exactly(self, tmp_path, mixed):
        folder, images = mixed
        lgs = get("lgs")
        recording = Recording(lgs)
        summary = defend_files([folder], tmp_path / "out", defense=recording, batch_size=2, progress=False)
        assert recording.shapes == [(2, 3, 40, 56), (2, 3, 48, 48), (1, 3, 33, 47), (1, 3, 40, 56)]
        assert [path.name for path in summary.written] == [name for name, _, _ in MIXED]
        for name, image in images.items():
            assert torch.equal(decode_image(str(tmp_path / "out" / "mixed" / name)), lgs(image)), name

    def test_maps_of_a_batch_equal_the_maps_of_each_image(self, tmp_path, mixed):
        from lgs_gpu import lgs_map

        folder, images = mixed
        defend_files([folder], tmp_path / "out", save_map=True, batch_size=4, progress=False)
        for name, image in images.items():
            expected = (lgs_map(image) * 255).round().to(torch.uint8)
            saved = decode_image(str(tmp_path / "out" / "mixed" / name.replace(".png", "_map.png")))
            assert torch.equal(saved, expected), name

    def test_decoding_workers_change_nothing_in_the_files(self, tmp_path, mixed):
        folder, _ = mixed
        for workers in (0, 2):
            defend_files([folder], tmp_path / f"out{workers}", workers=workers, batch_size=2, progress=False)
        assert outputs(tmp_path / "out0") == outputs(tmp_path / "out2")
        assert len(outputs(tmp_path / "out0")) == len(MIXED)

    def test_jpeg_bytes_path_decodes_like_the_cpu_reader(self, tmp_path, photo_batch):
        """The path the GPU takes (header read and size-checked, then torchvision's batched decode),
        here on the CPU: the same files as Pillow's reader."""
        folder = tmp_path / "jpegs"
        folder.mkdir()
        for number in range(3):
            (folder / f"{number}.jpg").write_bytes(
                encode_jpeg(photo_batch[number, :, :40, :48], quality=90).numpy().tobytes()
            )
        for on_device in (False, True):
            defend_files([folder], tmp_path / f"out{on_device}", decode_on_device=on_device, progress=False)
        assert outputs(tmp_path / "outFalse") == outputs(tmp_path / "outTrue")

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the nvJPEG decode path needs a GPU")
    def test_gpu_decode_path(self, tmp_path, photo_batch):
        folder = tmp_path / "jpegs"
        folder.mkdir()
        for number in range(4):
            (folder / f"{number}.jpg").write_bytes(encode_jpeg(photo_batch[number], quality=90).numpy().tobytes())
        (folder / "cut.jpg").write_bytes((folder / "0.jpg").read_bytes()[:2000])
        summary = defend_files([folder], tmp_path / "out", device="cuda", defense="none", progress=False)
        assert [why for _, why in summary.skipped] == ["truncated or incomplete JPEG"]
        for number in range(4):
            written = decode_image(str(tmp_path / "out" / "jpegs" / f"{number}.png")).int()
            on_cpu = read_image(folder / f"{number}.jpg").int()
            assert (written - on_cpu).abs().max() <= 8  # nvJPEG's IDCT and upsampling differ from libjpeg's a little


class TestExistingOutputs:
    def test_refuses_to_overwrite_by_default(self, tmp_path, mixed, capsys):
        folder, _ = mixed
        out = tmp_path / "out"
        defend_files([folder], out, progress=False)
        before = mtimes(out)
        with pytest.raises(ValueError, match=r"6 output file\(s\) already exist .* --resume .* --overwrite"):
            defend_files([folder], out, progress=False)
        assert main(["defend", str(folder), "-o", str(out)]) == 2
        assert "already exist" in capsys.readouterr().err
        assert mtimes(out) == before

    def test_resume_skips_finished_outputs_and_redoes_missing_ones(self, tmp_path, mixed):
        folder, _ = mixed
        out = tmp_path / "out"
        defend_files([folder], out, progress=False)
        reference = outputs(out)
        (out / "mixed" / "04.png").unlink()
        before = mtimes(out)
        summary = defend_files([folder], out, resume=True, progress=False)
        assert [path.name for path in summary.written] == ["04.png"] and len(summary.kept) == 5
        after = mtimes(out)
        assert all(after[name] == before[name] for name in before)  # the finished ones were not touched
        assert outputs(out) == reference

    def test_resume_redoes_an_output_whose_input_changed(self, tmp_path, mixed, photo_batch):
        folder, _ = mixed
        out = tmp_path / "out"
        defend_files([folder], out, progress=False)
        write_png(photo_batch[3, :, :48, :48].contiguous(), str(folder / "02.png"))
        summary = defend_files([folder], out, resume=True, progress=False)
        assert [path.name for path in summary.written] == ["02.png"]
        assert torch.equal(decode_image(str(out / "mixed" / "02.png")), get("lgs")(photo_batch[3, :, :48, :48]))

    def test_manifest_records_the_spec_and_a_resume_refuses_another(self, tmp_path, mixed, capsys):
        folder, _ = mixed
        out = tmp_path / "out"
        defend_files([folder], out, defense="median:3", progress=False)
        records = read_manifest(out)
        assert sorted(records) == [f"mixed/{name}" for name, _, _ in MIXED]
        assert {record["spec"] for record in records.values()} == {"median:3"}
        assert records["mixed/01.png"]["bytes"] == (out / "mixed" / "01.png").stat().st_size
        before = mtimes(out)
        with pytest.raises(ValueError, match=r"made by another defense .* 'median:3', now 'jpeg:30'.*--overwrite"):
            defend_files([folder], out, defense="jpeg:30", resume=True, progress=False)
        assert main(["defend", str(folder), "-o", str(out), "--defense", "jpeg:30", "--resume"]) == 2
        assert "made by another defense" in capsys.readouterr().err
        assert mtimes(out) == before  # refused before any work

    def test_overwrite_redoes_everything_and_records_the_new_spec(self, tmp_path, mixed, capsys):
        folder, images = mixed
        out = tmp_path / "out"
        defend_files([folder], out, defense="median:3", progress=False)
        assert main(["defend", str(folder), "-o", str(out), "--defense", "jpeg:30", "--overwrite"]) == 0
        assert "defended 6 image(s)" in capsys.readouterr().out
        assert {record["spec"] for record in read_manifest(out).values()} == {"jpeg:30"}
        assert torch.equal(decode_image(str(out / "mixed" / "01.png")), get("jpeg:30")(images["01.png"]))
        with pytest.raises(SystemExit):  # one or the other
            main(["defend", str(folder), "-o", str(out), "--overwrite", "--resume"])
        with pytest.raises(ValueError, match="choose one"):
            defend_files([folder], out, resume=True, overwrite=True)


class TestInterrupts:
    @pytest.mark.parametrize("workers", [0, 2])
    def test_an_interrupted_run_leaves_whole_files_and_a_resume_completes_it(self, tmp_path, mixed, workers):
        folder, _ = mixed
        defend_files([folder], tmp_path / "reference", batch_size=2, progress=False)
        out = tmp_path / "out"
        with pytest.raises(KeyboardInterrupt):
            defend_files([folder], out, defense=Recording(get("lgs"), stop_at=2), batch_size=2, workers=workers,
                         progress=False)  # fmt: skip
        assert not [path for path in out.rglob("*") if path.name.endswith(".part")]  # no temporary file left
        written = {name for name in outputs(out)}
        assert written == {"mixed/01.png", "mixed/03.png", "mixed/02.png", "mixed/05.png"}  # the first two batches
        assert set(read_manifest(out)) == written  # every whole file recorded, nothing else
        assert all(data == outputs(tmp_path / "reference")[name] for name, data in outputs(out).items())
        before = mtimes(out)
        summary = defend_files([folder], out, resume=True, batch_size=2, workers=workers, progress=False)
        assert sorted(path.name for path in summary.written) == ["04.png", "06.png"] and len(summary.kept) == 4
        assert outputs(out) == outputs(tmp_path / "reference")
        assert all(mtimes(out)[name] == mtime for name, mtime in before.items())

    def test_resume_after_a_hard_kill(self, tmp_path, mixed):
        """A killed process can leave a temporary file, an output written but not recorded, and a torn
        manifest line: resume removes the first, redoes the second and ignores the third."""
        folder, _ = mixed
        out = tmp_path / "out"
        defend_files([folder], out, progress=False)
        reference = outputs(out)
        manifest = next(out.glob(f"{MANIFEST_STEM}*"))
        lines = manifest.read_text().splitlines(keepends=True)
        dropped = json.loads(lines[-1])["output"]
        manifest.write_text("".join(lines[:-1]) + lines[-1][:20])  # the last record torn
        (out / dropped).write_bytes(b"half an image")  # ...and its output damaged
        stale = out / "mixed" / ".04.png.k3j9x2.part"
        stale.write_bytes(b"partial")
        summary = defend_files([folder], out, resume=True, progress=False)
        assert [path.relative_to(out).as_posix() for path in summary.written] == [dropped]
        assert not stale.exists() and outputs(out) == reference

    def test_an_interrupted_overwrite_is_finished_by_resume(self, tmp_path, mixed):
        folder, _ = mixed
        out = tmp_path / "out"
        defend_files([folder], out, defense="median:3", batch_size=2, progress=False)
        with pytest.raises(KeyboardInterrupt):
            defend_files([folder], out, defense=Recording(get("jpeg:30"), stop_at=1), batch_size=2, overwrite=True,
                         progress=False)  # fmt: skip
        # The outputs median:3 made were retired by the overwrite: resume redoes them rather than refuse.
        summary = defend_files([folder], out, defense="jpeg:30", resume=True, batch_size=2, progress=False)
        assert len(summary.written) == 4 and len(summary.kept) == 2
        assert {record["spec"] for record in read_manifest(out).values()} == {"jpeg:30"}


def test_two_ranks_cover_every_file_exactly_once(tmp_path, mixed):
    folder, _ = mixed
    out = tmp_path / "out"
    shards = [defend_files([folder], out, shard=(rank, 2), progress=False) for rank in (0, 1)]
    names = [[path.name for path in summary.written] for summary in shards]
    assert names == [["01.png", "03.png", "05.png"], ["02.png", "04.png", "06.png"]]
    assert sorted(path.name for path in out.glob(f"{MANIFEST_STEM}.rank*.jsonl")) == [
        f"{MANIFEST_STEM}.rank0.jsonl", f"{MANIFEST_STEM}.rank1.jsonl",
    ]  # fmt: skip
    assert len(read_manifest(out)) == len(MIXED)
    summary = defend_files([folder], out, resume=True, progress=False)  # one rank resumes what two made
    assert summary.written == [] and len(summary.kept) == len(MIXED)


def _bomb_jpeg(data: bytes, height: int, width: int) -> bytes:
    """``data`` (a JPEG) with its frame header claiming ``height x width``."""
    position = data.index(b"\xff\xc0")
    return data[: position + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[position + 9 :]


class TestPlainReasons:
    @pytest.fixture
    def broken(self, tmp_path, photo_batch):
        folder = tmp_path / "broken"
        folder.mkdir()
        jpeg = encode_jpeg(photo_batch[0, :, :64, :64].contiguous(), quality=90).numpy().tobytes()
        write_png(photo_batch[1, :, :64, :64].contiguous(), str(tmp_path / "whole.png"))
        png = (tmp_path / "whole.png").read_bytes()
        (folder / "good.jpg").write_bytes(jpeg)
        (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
        (folder / "short.png").write_bytes(png[: len(png) // 2])
        (folder / "text.jpg").write_text("this is a text file, not a photograph")
        (folder / "empty.png").write_bytes(b"")
        (folder / "bomb.jpg").write_bytes(_bomb_jpeg(jpeg, 50_000, 40_000))
        return folder

    EXPECTED = {
        "bomb.jpg": "image larger than the 89,478,485-pixel limit",
        "cut.jpg": "truncated or incomplete JPEG",
        "short.png": "truncated or incomplete PNG",
        "empty.png": "empty file (0 bytes)",
        "text.jpg": "not an image file, or a format that cannot be read",
    }

    @pytest.mark.parametrize("jpeg_bytes", [False, True], ids=["pillow", "jpeg-bytes path"])
    def test_skip_messages_say_what_is_wrong_in_plain_words(self, tmp_path, broken, jpeg_bytes):
        summary = defend_files([broken], tmp_path / "out", defense="none", decode_on_device=jpeg_bytes, progress=False)
        assert [path.name for path in summary.written] == ["good.png"]
        reasons = {path.name: why for path, why in summary.skipped}
        assert sorted(reasons) == sorted(self.EXPECTED)
        for name, expected in self.EXPECTED.items():
            assert reasons[name].startswith(expected), (name, reasons[name])
        assert all("/" not in why and ".cpp" not in why and "Errno" not in why for why in reasons.values())

    def test_the_cli_prints_them(self, tmp_path, broken, capsys):
        assert main(["defend", str(broken), "-o", str(tmp_path / "out"), "--defense", "none"]) == 0
        err = capsys.readouterr().err
        assert f"skipped {broken / 'cut.jpg'}: truncated or incomplete JPEG\n" in err
        assert "bomb.jpg: image larger than the 89,478,485-pixel limit" in err

    def test_the_header_size_is_checked_before_decoding(self, tmp_path, photo_batch, monkeypatch):
        path = tmp_path / "big.jpg"
        path.write_bytes(encode_jpeg(photo_batch[0], quality=90).numpy().tobytes())
        assert read_jpeg_bytes(path)[1] == (224, 224)
        monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 224 * 224 - 1)
        with pytest.raises(ValueError, match=r"larger than the 50,175-pixel limit \(224 x 224 pixels\)"):
            read_jpeg_bytes(path)
        with pytest.raises(ValueError, match=r"larger than the 50,175-pixel limit"):
            read_image(path)

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
    def test_an_unreadable_file(self, tmp_path, photo_batch):
        path = tmp_path / "locked.png"
        write_png(photo_batch[0], str(path))
        path.chmod(0)
        with pytest.raises(ValueError, match="unreadable: permission denied"):
            read_image(path)

    @pytest.mark.parametrize("error, head, expected", [
        (RuntimeError("decode_jpeg, /__w/vision/vision/pytorch/vision/torchvision/csrc/io/image/cpu/decode_jpeg.cpp:171, "
                      "Image is incomplete or truncated"), b"\xff\xd8\xff\xe0", "truncated or incomplete JPEG"),
        (RuntimeError("operator(), /__w/vision/decode_png.cpp:79, Out of bound read in decode_png. Probably, the input "
                      "image is corrupted"), b"\x89PNG\r\n\x1a\n", "truncated or incomplete PNG"),
        (RuntimeError("decode_image, /__w/vision/decode_image.cpp:52, Unsupported image file. Only jpeg, png..."), b"hi",
         "not an image file, or a format that cannot be read"),
        (RuntimeError("decode_jpeg, /__w/x.cpp:9, Unknown marker"), b"\xff\xd8\xff\xe0", "corrupt JPEG (Unknown marker)"),
        (PermissionError(13, "Permission denied"), b"", "unreadable: permission denied"),
        (IsADirectoryError(21, "Is a directory"), b"", "unreadable: a folder, not a file"),
    ])  # fmt: skip
    def test_library_errors_in_plain_words(self, error, head, expected):
        assert plain_reason(error, head) == expected


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"exif": PIL.Image.Exif()}])
def test_read_jpeg_bytes_reads_the_frame_header(tmp_path, options):
    path = tmp_path / "a.jpg"
    PIL.Image.new("RGB", (37, 21)).save(path, **options)
    encoded, size = read_jpeg_bytes(path)
    assert size == (21, 37) and encoded.numpy().tobytes() == path.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(path.read_bytes()[:12])
    with pytest.raises(UnreadableImage, match="truncated or incomplete JPEG"):
        read_jpeg_bytes(tmp_path / "cut.jpg")
    PIL.Image.new("RGB", (37, 21)).save(tmp_path / "png-inside.jpg", format="PNG")
    with pytest.raises(ValueError, match="not a JPEG inside"):
        read_jpeg_bytes(tmp_path / "png-inside.jpg")
    # A multi-picture JPEG (MPO: stereo shots, gain-map photos) is a JPEG whose first frame is the image.
    frames = [PIL.Image.new("RGB", (37, 21), colour) for colour in ("red", "blue")]
    frames[0].save(tmp_path / "two-frames.jpg", format="MPO", save_all=True, append_images=frames[1:])
    assert read_jpeg_bytes(tmp_path / "two-frames.jpg")[1] == (21, 37)


@pytest.mark.parametrize("arguments, message", [
    (["--batch-size", "0"], "batch_size must be an int >= 1"),
    (["--workers", "-1"], "workers must be an int >= 0"),
])  # fmt: skip
def test_bad_scale_arguments_are_refused_before_any_work(tmp_path, mixed, capsys, arguments, message):
    folder, _ = mixed
    assert main(["defend", str(folder), "-o", str(tmp_path / "out"), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
