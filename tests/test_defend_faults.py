"""``lgs-gpu defend`` when writing fails, under a umask, with its output folder inside its input
folder, and with inputs that would write the same output (issue 21, item 3; lgs_gpu/app/defend.py)."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess

import PIL.Image
import pytest
from torchvision.io import encode_jpeg, read_image, write_file, write_png

from lgs_gpu.app import defend_outputs  # its Writer writes the outputs and the manifest
from lgs_gpu.app.cli import main
from lgs_gpu.app.defend import WriteFailure, defend_files
from lgs_gpu.app.defend_outputs import MANIFEST_STEM, read_manifest

DEFENSE = "median:3"  # fast; the faults do not depend on the defense


@pytest.fixture
def photos(tmp_path, photo_batch):
    """A folder of 12 PNG crops of real photographs, in two sizes."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for number in range(12):
        size = 40 + 8 * (number % 2)
        write_png(photo_batch[number % 4, :, number : number + size, 2 * number : 2 * number + 48].contiguous(),
                  str(folder / f"{number:02}.png"))  # fmt: skip
    return folder


def written_outputs(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def failing_after(monkeypatch, good_writes: int, code: int) -> None:
    """Every write of an output after the first ``good_writes`` fails with ``code`` (as a full disk would)."""
    real, count = defend_outputs.atomic_write_bytes, [0]

    def write(path, data):
        count[0] += 1
        if count[0] > good_writes:
            raise OSError(code, os.strerror(code), str(path))
        real(path, data)

    monkeypatch.setattr(defend_outputs, "atomic_write_bytes", write)


class TestWriteFailures:
    @pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on device"),
                                             (errno.EROFS, "read-only file system"),
                                             (errno.EDQUOT, "quota exceeded")])  # fmt: skip
    def test_a_full_disk_stops_the_run_non_zero_and_says_write_failure(self, tmp_path, photos, monkeypatch, capsys,
                                                                        code, words):  # fmt: skip
        out = tmp_path / "out"
        failing_after(monkeypatch, 5, code)
        argv = ["defend", str(photos), "-o", str(out), "--defense", DEFENSE, "--batch-size", "2", "--workers", "0"]
        assert main(argv) == 1
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "write failure" in line]
        assert len(lines) == 1 and words in lines[0] and "unreadable" not in err and "Traceback" not in err
        assert "stopped after 5 output(s)" in lines[0] and "--resume" in lines[0]
        # It stopped: the images after the failure were neither written nor attempted by the dozen.
        assert len(written_outputs(out)) == 5 and len(read_manifest(out)) == 5
        assert not list(out.rglob("*.part"))
        monkeypatch.undo()
        assert main([*argv, "--resume"]) == 0
        reference = tmp_path / "reference"
        assert main(["defend", str(photos), "-o", str(reference), "--defense", DEFENSE, "--workers", "0"]) == 0
        assert written_outputs(out) == written_outputs(reference)

    def test_a_real_full_disk(self, tmp_path, photos, capsys):
        disk = tmp_path / "small-disk"
        disk.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(disk)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip("mounting a small tmpfs needs root and CAP_SYS_ADMIN")
        try:
            argv = ["defend", str(photos), "-o", str(disk / "out"), "--defense", DEFENSE, "--workers", "0"]
            assert main(argv) == 1
            err = capsys.readouterr().err
            # An output or the manifest hits the full disk first, as it happens.
            assert re.search(r"write failure: cannot (write|append to) .*: no space left on device", err)
            assert "Traceback" not in err
            recorded = read_manifest(disk / "out")
            assert f"stopped after {len(recorded)} output(s)" in err and len(written_outputs(disk / "out")) < 12
            assert not list(disk.rglob("*.part"))
            for name in recorded:  # every output the manifest names is whole
                assert read_image(str(disk / "out" / name)).shape == (3, 40 + 8 * (int(name[-6:-4]) % 2), 48), name
        finally:
            subprocess.run(["umount", str(disk)], check=True)

    def test_the_api_raises_write_failure(self, tmp_path, photos, monkeypatch):
        failing_after(monkeypatch, 0, errno.ENOSPC)
        with pytest.raises(WriteFailure, match="write failure: cannot write .*00.png: no space left on device"):
            defend_files([photos], tmp_path / "out", defense=DEFENSE, progress=False)

    def test_a_manifest_that_cannot_be_appended_to_stops_without_a_traceback(self, tmp_path, photos, monkeypatch,
                                                                             capsys):  # fmt: skip
        out = tmp_path / "out"

        def full(path, records):
            if records:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))

        monkeypatch.setattr(defend_outputs, "append_manifest", full)
        argv = ["defend", str(photos), "-o", str(out), "--defense", DEFENSE, "--workers", "0"]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "write failure: cannot append to" in err and MANIFEST_STEM in err and "Traceback" not in err
        assert "stopped after 0 output(s)" in err  # whole files, but unrecorded: a resume redoes them
        monkeypatch.undo()
        assert main([*argv, "--resume"]) == 0
        assert len(read_manifest(out)) == 12

    def test_a_write_refused_for_one_file_skips_that_image_only(self, tmp_path, photos, monkeypatch, capsys):
        real = defend_outputs.atomic_write_bytes

        def write(path, data):
            if path.name == "03.png":
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            real(path, data)

        monkeypatch.setattr(defend_outputs, "atomic_write_bytes", write)
        out = tmp_path / "out"
        assert main(["defend", str(photos), "-o", str(out), "--defense", DEFENSE, "--workers", "0"]) == 0
        err = capsys.readouterr().err
        assert "skipped" in err and "write failure: cannot write" in err and "03.png: permission denied" in err
        assert len(written_outputs(out)) == 11 and "photos/03.png" not in read_manifest(out)


def test_a_failed_map_write_names_the_map(tmp_path, photos, monkeypatch):
    real = defend_outputs.atomic_write_bytes

    def write(path, data):
        if path.name.endswith("_map.png"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path.with_name(".tmp.part")))
        real(path, data)

    monkeypatch.setattr(defend_outputs, "atomic_write_bytes", write)
    with pytest.raises(WriteFailure, match=r"cannot write .*00_map.png: no space left"):
        defend_files([photos], tmp_path / "out", defense="lgs", save_map=True, progress=False)


def test_a_torn_manifest_append_is_taken_back(tmp_path, monkeypatch):

    manifest = tmp_path / "m.jsonl"
    defend_outputs.append_manifest(manifest, [{"output": "a.png", "spec": "none"}])
    real_write, calls = os.write, [0]

    def half_then_full(handle, data):
        calls[0] += 1
        if calls[0] == 1:
            return real_write(handle, bytes(data[:7]))  # part of the first line lands ...
        raise OSError(errno.ENOSPC, "No space left on device")  # ... then the disk is full

    monkeypatch.setattr(defend_outputs.os, "write", half_then_full)
    with pytest.raises(OSError):
        defend_outputs.append_manifest(manifest, [{"output": "b.png", "spec": "none"}])
    monkeypatch.undo()
    defend_outputs.append_manifest(manifest, [{"output": "c.png", "spec": "none"}])
    lines = manifest.read_text().splitlines()
    assert [json.loads(line)["output"] for line in lines] == ["a.png", "c.png"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_mode_the_umask_gives(tmp_path, photos, umask, mode):
    previous = os.umask(umask)
    try:
        defend_files([photos], tmp_path / "out", defense="lgs", save_map=True, progress=False)
    finally:
        os.umask(previous)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(files) == 25  # 12 outputs, 12 maps, the manifest
    assert {oct(p.stat().st_mode & 0o777) for p in files if p.suffix == ".png"} == {oct(mode)}


class TestOutputFolderInsideTheInputs:
    def test_it_is_not_read_back_as_input_and_a_resume_keeps_everything(self, photos):
        out = photos / "defended"
        first = defend_files([photos], out, defense=DEFENSE, progress=False)
        assert len(first.written) == 12
        again = defend_files([photos], out, defense=DEFENSE, progress=False, resume=True)
        assert (len(again.written), len(again.kept), again.skipped) == (0, 12, [])
        assert sorted(p.name for p in out.rglob("*.png")) == [f"{n:02}.png" for n in range(12)]

    def test_nor_when_it_is_the_input_folder_itself(self, photos):
        first = defend_files([photos], photos, defense=DEFENSE, progress=False)
        assert len(first.written) == 12 and all(p.parent == photos / "photos" for p in first.written)
        again = defend_files([photos], photos, defense=DEFENSE, progress=False, resume=True)
        assert (len(again.written), len(again.kept)) == (0, 12)

    def test_outputs_beside_their_inputs_are_known_by_the_manifest(self, tmp_path, photos):
        # tmp_path/photos/*.png -> tmp_path/photos/*.jpg: the outputs land in the input folder itself.
        first = defend_files([photos], tmp_path, defense=DEFENSE, output_format="jpg", save_map=False, progress=False)
        assert len(first.written) == 12 and all(p.parent == photos for p in first.written)
        again = defend_files([photos], tmp_path, defense=DEFENSE, output_format="jpg", progress=False, resume=True)
        assert (len(again.written), len(again.kept), again.skipped) == (0, 12, [])

    def test_outputs_that_would_overwrite_inputs_are_still_refused(self, tmp_path, photos):
        with pytest.raises(ValueError, match="refusing to overwrite the input"):
            defend_files([photos], tmp_path, defense=DEFENSE, progress=False)


class TestCollisions:
    @pytest.fixture
    def clashing(self, tmp_path, photo_batch):
        folder = tmp_path / "clashing"
        folder.mkdir()
        image = photo_batch[0, :, :40, :40].contiguous()
        write_png(image, str(folder / "a.png"))
        write_file(str(folder / "a.jpg"), encode_jpeg(image))
        write_png(image, str(folder / "b.png"))
        PIL.Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / "b.bmp")
        write_png(image, str(folder / "c.png"))
        return folder

    def test_every_collision_is_named_in_one_error_before_any_work(self, tmp_path, clashing, capsys):
        out = tmp_path / "out"
        assert main(["defend", str(clashing), "-o", str(out), "--defense", DEFENSE]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "2 output(s) would be written by more than one input" in err
        for name in ("a.png", "a.jpg", "b.png", "b.bmp"):
            assert name in err
        assert "c.png and" not in err and "--format same" in err
        assert not out.exists()

    def test_format_same_keeps_them_apart(self, tmp_path, clashing):
        summary = defend_files([clashing], tmp_path / "out", defense=DEFENSE, output_format="same", progress=False)
        assert sorted(p.name for p in summary.written) == ["a.jpg", "a.png", "b.bmp", "b.png", "c.png"]

    def test_a_map_that_would_overwrite_another_output(self, tmp_path, clashing):
        write_png(read_image(str(clashing / "c.png")), str(clashing / "c_map.png"))
        with pytest.raises(ValueError, match=r"c_map.png -> .*c_map.png") as caught:
            defend_files([clashing], tmp_path / "out", defense="lgs", output_format="same", save_map=True,
                         progress=False)  # fmt: skip
        # a.png's and a.jpg's maps (and b's) are one file too: a_map.png
        assert "3 output(s)" in str(caught.value) and "a_map.png" in str(caught.value)
        assert "--format same" not in str(caught.value)

    def test_a_file_given_twice_is_defended_once(self, tmp_path, clashing):
        summary = defend_files([clashing / "c.png", clashing / "c.png"], tmp_path / "out", defense=DEFENSE,
                               progress=False)  # fmt: skip
        assert [p.name for p in summary.written] == ["c.png"]

