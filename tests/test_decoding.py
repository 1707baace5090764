"""The one image reader on files that decode wrong when read naively: EXIF orientation, 16-bit and
float samples, multi-frame files, and huge non-images (issue 21, items 4 and 5; lgs_gpu/core/imageio.py)."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import numpy as np
import PIL.Image
import pytest
import torch

from lgs_gpu.app.cli import main
from lgs_gpu.app.defend import defend_files
from lgs_gpu.core.imageio import DecodeNote, decode_image_file, decode_jpegs, read_image, read_jpeg_bytes
from lgs_gpu.data import image_folder

tifffile = pytest.importorskip("tifffile")  # scikit-image's dependency: writes 16-bit and float TIFFs

# EXIF orientation -> how to make the stored pixels upright, written out from the EXIF 2.3 table
# (0th row / 0th column of the stored image), independently of Pillow's ImageOps.
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # turned 180 degrees
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # transposed
    6: lambda a: np.rot90(a, -1),  # stored turned 90 degrees anticlockwise: turn it clockwise
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # transversed: b[i, j] = a[H - 1 - j, W - 1 - i]
    8: lambda a: np.rot90(a, 1),
}


@pytest.fixture
def asymmetric(photo_batch) -> np.ndarray:
    """A 30 x 52 crop of a photograph, ``[H, W, 3]`` uint8: no flip or turn maps it onto itself."""
    return photo_batch[0, :, 5:35, 11:63].permute(1, 2, 0).numpy().copy()


def with_orientation(path, array: np.ndarray, orientation: int, **options) -> None:
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    PIL.Image.fromarray(array).save(path, exif=exif, **options)


class TestOrientation:
    @pytest.mark.parametrize("orientation", range(1, 9))
    def test_every_exif_orientation_is_applied(self, tmp_path, asymmetric, orientation):
        path = tmp_path / "turned.png"  # lossless, so the pixels can be compared exactly
        with_orientation(path, asymmetric, orientation)
        expected = np.ascontiguousarray(UPRIGHT[orientation](asymmetric))
        assert np.array_equal(read_image(path).permute(1, 2, 0).numpy(), expected)

    @pytest.mark.parametrize("orientation", [3, 6, 8])
    def test_the_jpeg_decoder_path_agrees_with_the_reader(self, tmp_path, asymmetric, orientation):
        path = tmp_path / "turned.jpg"
        with_orientation(path, asymmetric, orientation, quality=95)
        on_cpu = read_image(path)
        encoded = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
        (decoded,) = decode_jpegs([encoded], "cpu")  # the batched decoder defend uses on CUDA (here on the CPU)
        assert decoded.shape == on_cpu.shape == (3, *UPRIGHT[orientation](asymmetric).shape[:2])
        assert (decoded.int() - on_cpu.int()).abs().max() <= 2
        # nvJPEG ignores the orientation: the device path hands turned JPEGs to the CPU reader.
        with pytest.raises(ValueError, match="EXIF orientation"):
            read_jpeg_bytes(path)

    @pytest.mark.parametrize("decode_on_device", [False, True], ids=["pillow", "jpeg-bytes path"])
    def test_defend_writes_upright_images(self, tmp_path, asymmetric, decode_on_device):
        folder = tmp_path / "in"
        folder.mkdir()
        with_orientation(folder / "six.jpg", asymmetric, 6, quality=95)
        summary = defend_files([folder], tmp_path / "out", defense="none", decode_on_device=decode_on_device,
                               progress=False)  # fmt: skip
        written = np.asarray(PIL.Image.open(summary.written[0]))
        assert written.shape == (52, 30, 3)  # the 30 x 52 photo, turned upright
        assert np.abs(written.astype(int) - np.rot90(asymmetric, -1)).mean() < 3

    def test_evaluate_and_certify_read_it_upright(self, tmp_path, asymmetric):
        with_orientation(tmp_path / "eight.png", asymmetric, 8)
        images = image_folder(tmp_path, size=24)
        plain = tmp_path / "plain"
        plain.mkdir()
        PIL.Image.fromarray(np.ascontiguousarray(np.rot90(asymmetric, 1))).save(plain / "upright.png")
        assert torch.equal(images.images, image_folder(plain, size=24).images)


def png_16bit_rgb(path, array: np.ndarray) -> None:
    """A 16-bit RGB PNG, written chunk by chunk (Pillow cannot write one)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width, _ = array.shape
    rows = b"".join(b"\x00" + array[row].astype(">u2").tobytes() for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))  # fmt: skip


class TestDeepSamples:
    @pytest.fixture
    def sixteen(self) -> np.ndarray:
        """16-bit samples over the whole range, ``[20, 24]``."""
        return np.linspace(0, 65535, 20 * 24).round().astype(np.uint16).reshape(20, 24)

    @pytest.mark.parametrize("suffix", [".png", ".tif"])
    def test_16_bit_grey_keeps_its_top_8_bits_not_white(self, tmp_path, sixteen, suffix):
        path = tmp_path / f"deep{suffix}"
        PIL.Image.fromarray(sixteen).save(path)
        image, notes = decode_image_file(path)
        expected = torch.from_numpy((sixteen >> 8).astype(np.uint8))
        assert torch.equal(image, expected.expand(3, -1, -1))
        assert image.float().mean() < 200  # saturated white was the bug
        assert notes == ["16-bit samples scaled to 8 bits (the top 8 bits of each)"]

    @pytest.mark.parametrize("suffix", [".png", ".tif"])
    def test_16_bit_colour_keeps_its_top_8_bits_and_says_so(self, tmp_path, sixteen, suffix):
        rgb = np.stack([sixteen, sixteen[::-1], 65535 - sixteen], axis=-1)
        path = tmp_path / f"deep{suffix}"
        png_16bit_rgb(path, rgb) if suffix == ".png" else tifffile.imwrite(path, rgb, photometric="rgb")
        image, notes = decode_image_file(path)
        assert torch.equal(image, torch.from_numpy((rgb >> 8).astype(np.uint8)).permute(2, 0, 1))
        assert notes == ["16-bit samples scaled to 8 bits (the top 8 bits of each)"]
        with pytest.warns(DecodeNote, match="16-bit samples scaled"):
            read_image(path)

    def test_an_8_bit_image_has_no_note(self, tmp_path, asymmetric):
        PIL.Image.fromarray(asymmetric).save(tmp_path / "plain.tif")
        assert decode_image_file(tmp_path / "plain.tif")[1] == []

    def test_float_samples_in_0_1_are_scaled(self, tmp_path):
        samples = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
        tifffile.imwrite(tmp_path / "float.tif", samples)
        image, notes = decode_image_file(tmp_path / "float.tif")
        assert torch.equal(image[0], torch.from_numpy(np.round(samples * 255).astype(np.uint8)))
        assert image.max() == 255 and notes == ["float samples (0..1) scaled to 8 bits"]

    @pytest.mark.parametrize("samples, reason", [
        (np.full((8, 8), 300.0, np.float32), r"float samples in \[300, 300\], not 0..1: their scale is unknown"),
        (np.array([[0.5, np.nan]], np.float32), "float samples that are NaN or infinite"),
        (np.zeros((8, 8, 3), np.float32), "a TIFF that cannot be read"),
    ], ids=["out of range", "nan", "float colour"])  # fmt: skip
    def test_other_float_images_are_refused_with_the_reason(self, tmp_path, samples, reason):
        path = tmp_path / "float.tif"
        tifffile.imwrite(path, samples, photometric="rgb" if samples.ndim == 3 else None)
        with pytest.raises(ValueError, match=reason):
            read_image(path)

    def test_defend_says_it_in_a_note(self, tmp_path, sixteen, capsys):
        folder = tmp_path / "in"
        folder.mkdir()
        PIL.Image.fromarray(sixteen).save(folder / "deep.png")
        assert main(["defend", str(folder), "-o", str(tmp_path / "out"), "--defense", "none"]) == 0
        assert f"note {folder / 'deep.png'}: 16-bit samples scaled to 8 bits" in capsys.readouterr().err


class TestFrames:
    @pytest.mark.parametrize("suffix", [".tif", ".webp", ".png"])
    def test_a_multi_frame_file_gives_its_first_frame_and_says_so(self, tmp_path, asymmetric, suffix):
        frames = [PIL.Image.fromarray(np.roll(asymmetric, 7 * k, axis=1)) for k in range(3)]
        path = tmp_path / f"frames{suffix}"
        frames[0].save(path, save_all=True, append_images=frames[1:], **({"lossless": True} if suffix == ".webp" else {}))
        image, notes = decode_image_file(path)
        assert np.array_equal(image.permute(1, 2, 0).numpy(), asymmetric)
        assert notes == ["3 frames (an animated or multi-page file): only the first is used"]

    def test_a_jpeg_with_gain_or_depth_maps_is_no_multi_frame_file(self, tmp_path, asymmetric):
        frames = [PIL.Image.fromarray(asymmetric), PIL.Image.fromarray(asymmetric[::2, ::2].copy())]
        frames[0].save(tmp_path / "phone.jpg", format="MPO", save_all=True, append_images=frames[1:])
        assert PIL.Image.open(tmp_path / "phone.jpg").n_frames == 2
        assert decode_image_file(tmp_path / "phone.jpg")[1] == []

    def test_bigtiff_is_read(self, tmp_path, asymmetric):
        PIL.Image.fromarray(asymmetric).save(tmp_path / "big.tif", big_tiff=True)
        assert np.array_equal(read_image(tmp_path / "big.tif").permute(1, 2, 0).numpy(), asymmetric)

    def test_defend_evaluate_and_certify_report_it(self, tmp_path, asymmetric, capsys):
        folder = tmp_path / "in"
        folder.mkdir()
        frames = [PIL.Image.fromarray(asymmetric)] * 2
        frames[0].save(folder / "two.tif", save_all=True, append_images=frames[1:])
        summary = defend_files([folder], tmp_path / "out", defense="none", progress=False)
        assert [(path.name, note) for path, note in summary.notes] == [
            ("two.tif", "2 frames (an animated or multi-page file): only the first is used")]
        assert main(["defend", str(folder), "-o", str(tmp_path / "cli"), "--defense", "none"]) == 0
        assert f"note {folder / 'two.tif'}: 2 frames" in capsys.readouterr().err
        assert image_folder(folder, size=16).notes == [(str(folder / "two.tif"), summary.notes[0][1])]


class TestHugeFiles:
    SIZE = 1 << 28  # 256 MiB, sparse: costs no disk

    def peak_bytes(self, function, *arguments) -> int:
        tracemalloc.start()
        try:
            try:
                function(*arguments)
            except ValueError:
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def test_a_non_image_is_refused_from_its_first_bytes(self, tmp_path):
        path = tmp_path / "huge.png"
        with open(path, "wb") as stream:
            stream.write(b"this is not a PNG")
            stream.truncate(self.SIZE)
        with pytest.raises(ValueError, match="not an image file"):
            read_image(path)
        assert self.peak_bytes(read_image, path) < 1 << 20
        assert self.peak_bytes(read_jpeg_bytes, path) < 1 << 20

    def test_an_oversized_jpeg_header_is_refused_before_the_rest_is_read(self, tmp_path, asymmetric, monkeypatch):
        path = tmp_path / "huge.jpg"
        PIL.Image.fromarray(asymmetric).save(path, quality=90)
        with open(path, "r+b") as stream:
            stream.truncate(self.SIZE)  # a valid header, then 256 MiB
        monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)
        with pytest.raises(ValueError, match="larger than the 100-pixel limit"):
            read_jpeg_bytes(path)
        assert self.peak_bytes(read_jpeg_bytes, path) < 4 << 20
