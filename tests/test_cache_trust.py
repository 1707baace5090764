"""The compiled CPU path loads native code from its cache folder: it refuses a folder or program
that another user could change, as ssh and pip do (issue 21, item 9; lgs_gpu/core/package_cache.py)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest
import torch

from lgs_gpu import lgs, lgs_stages
from lgs_gpu.core.package_cache import PackageCache, untrusted_reason
from lgs_gpu.smoothing.backends import compiled_path, fused_cpu
from lgs_gpu.smoothing.backends.compiled_path import ProgramBuildError

IMAGES = torch.rand(1, 3, 32, 32)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("LGS_GPU_CACHE_DIR", str(folder))
    return folder


@pytest.mark.parametrize("mode, words", [(0o777, "writable by others (mode 0777)"),
                                         (0o775, "writable by its group (mode 0775)")])  # fmt: skip
def test_a_folder_others_can_write_is_refused_and_auto_falls_back_saying_why(cache, caplog, mode, words):
    cache.chmod(mode)
    with pytest.raises(ProgramBuildError, match=rf"refusing the CPU program cache: .*{re.escape(words)}.*chmod go-w"):
        lgs(IMAGES, backend="compiled")
    with caplog.at_level(logging.WARNING, logger="lgs_gpu"):
        assert torch.equal(lgs(IMAGES), lgs(IMAGES, backend="torch"))  # auto: the eager torch path
    assert words in caplog.text and "using the eager torch path" in caplog.text
    assert words in compiled_path.unusable_reason()
    assert not list(cache.rglob("*.pt2"))  # nothing was built into it either


def test_a_program_others_can_write_is_not_loaded(cache):
    folder = compiled_path._PACKAGES.folder()
    folder.mkdir(mode=0o700, parents=True)
    planted = folder / "gradient-float32-c3.pt2"
    planted.write_bytes(b"not a package: loading it would crash, refusing it says why")
    planted.chmod(0o666)
    with pytest.raises(ProgramBuildError, match=r"gradient-float32-c3.pt2 is writable by others \(mode 0666\)"):
        lgs_stages(IMAGES, backend="compiled", stages=("output", "suppression_map"))  # stages the programs compute


def test_a_fused_kernel_others_can_write_is_not_loaded(cache, caplog):
    folder = fused_cpu._LIBRARY.folder()
    folder.mkdir(mode=0o700, parents=True)
    planted = folder / f"{fused_cpu.NAME}.so"
    planted.write_bytes(b"not a library: loading it would crash, refusing it says why")
    planted.chmod(0o666)
    with caplog.at_level(logging.WARNING, logger="lgs_gpu"):
        defended = lgs(IMAGES, backend="compiled")  # the programs compute it instead
    assert torch.equal(defended, lgs_stages(IMAGES, backend="compiled", stages=("output", "suppression_map")).output)
    assert f"not loading the fused CPU kernel: refusing the CPU program cache: {planted} is writable by others" in caplog.text


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_folder_another_user_owns_is_refused(cache):
    os.chown(cache, 12345, 12345)
    assert "is owned by uid 12345" in untrusted_reason(cache)
    with pytest.raises(ProgramBuildError, match="owned by uid 12345"):
        lgs(IMAGES, backend="compiled")


def test_a_parent_others_can_rename_it_in_is_refused_unless_sticky(tmp_path):
    parent = tmp_path / "shared"
    parent.mkdir()
    (parent / "cache").mkdir(mode=0o700)
    parent.chmod(0o777)
    assert "a folder above the cache" in untrusted_reason(parent / "cache")
    parent.chmod(0o1777)  # sticky, like /tmp: others cannot rename what is ours
    assert untrusted_reason(parent / "cache") is None


def test_folders_it_creates_are_private_whatever_the_umask(tmp_path, monkeypatch):
    monkeypatch.setenv("LGS_GPU_CACHE_DIR", str(tmp_path / "fresh"))
    packages = PackageCache("trust-test", (Path(__file__),))
    previous = os.umask(0o002)
    try:
        (path,) = packages._packages(["program"], lambda targets: targets["program"].write_bytes(b"built"))
    finally:
        os.umask(previous)
    for folder in (tmp_path / "fresh", tmp_path / "fresh" / "trust-test", path.parent):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    assert path.stat().st_mode & 0o077 == 0
    assert packages.untrusted_reason() is None


def test_a_group_writable_parent_is_refused_too(tmp_path):
    parent = tmp_path / "team"
    (parent / "cache").mkdir(parents=True, mode=0o700)
    parent.chmod(0o2775)
    assert "writable by group or others without the sticky bit (mode 2775)" in untrusted_reason(parent / "cache")


def test_a_cache_path_that_cannot_be_checked_is_a_reason_not_a_crash(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("LGS_GPU_CACHE_DIR", str(tmp_path / "file" / "cache"))
    assert "cannot check" in compiled_path.unusable_reason()
    assert torch.equal(lgs(IMAGES), lgs(IMAGES, backend="torch"))  # auto still answers


def test_its_own_subfolders_made_by_an_older_version_under_umask_002_are_made_private(cache, caplog):
    own = compiled_path._PACKAGES.folder()
    own.mkdir(parents=True)
    for folder in (own.parent, own):
        folder.chmod(0o775)
    with caplog.at_level(logging.WARNING, logger="lgs_gpu"):
        assert compiled_path._PACKAGES.untrusted_reason() is None
    assert {oct(folder.stat().st_mode & 0o777) for folder in (own.parent, own)} == {oct(0o755)}
    assert "made the program cache folder" in caplog.text
    cache.chmod(0o775)  # the root the user chose (LGS_GPU_CACHE_DIR) is theirs: refused, not changed
    compiled_path._PACKAGES._trust.clear()
    assert "writable by its group" in compiled_path._PACKAGES.untrusted_reason()
    assert cache.stat().st_mode & 0o777 == 0o775


def test_missing_parents_are_private_under_umask_000(tmp_path, monkeypatch):
    monkeypatch.setenv("LGS_GPU_CACHE_DIR", str(tmp_path / "a" / "b"))
    packages = PackageCache("trust-test", (Path(__file__),))
    previous = os.umask(0)
    try:
        packages._packages(["program"], lambda targets: targets["program"].write_bytes(b"built"))
    finally:
        os.umask(previous)
    assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "a", tmp_path / "a" / "b")} == {oct(0o700)}
