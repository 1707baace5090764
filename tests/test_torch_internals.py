"""Each private torch internal the package reads is behind a guard: without it, the safe answer and a reason."""

import importlib
import sys

import pytest
import torch

from lgs_gpu.core import torch_internals as internals

_NATIVE = internals.degraded()  # what this torch lacks on its own


@pytest.fixture
def reload_internals(monkeypatch):
    """Re-import the guards under the test's conditions; afterwards, with the patches undone, as they were."""
    yield lambda: importlib.reload(internals)
    monkeypatch.undo()
    importlib.reload(internals)
    assert not internals.degraded() or internals.degraded() == _NATIVE, "a guard leaked the test's conditions"


def test_without_is_exporting_an_export_counts_as_a_compile(monkeypatch, reload_internals):
    monkeypatch.delattr(torch.compiler, "is_exporting", raising=False)
    guards = reload_internals()
    assert guards.exporting() is False
    assert "torch.compiler.is_exporting" in guards.degraded()


def test_without_the_onnx_exporters_flag_the_answer_is_no(monkeypatch, reload_internals):
    exporter = importlib.import_module("torch.onnx._internal.exporter")
    monkeypatch.delattr(exporter, "_flags", raising=False)
    monkeypatch.setitem(sys.modules, "torch.onnx._internal.exporter._flags", None)  # import fails
    guards = reload_internals()
    assert guards.onnx_exporter_flag() is False
    assert "torch.onnx._internal.exporter._flags" in guards.degraded()


def test_without_is_fake_fake_tensors_are_told_by_class(monkeypatch, reload_internals):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = torch.empty(2)
    monkeypatch.delattr(importlib.import_module("torch._subclasses"), "fake_tensor", raising=False)
    monkeypatch.setitem(sys.modules, "torch._subclasses.fake_tensor", None)
    guards = reload_internals()
    assert guards.is_fake(fake) and not guards.is_fake(torch.empty(2))
    assert "torch._subclasses.fake_tensor.is_fake" in guards.degraded()


def test_without_inductors_flag_every_compile_is_taken_for_aot(monkeypatch):
    monkeypatch.setattr(internals, "_DEGRADED", {})
    monkeypatch.setitem(sys.modules, "torch._inductor.virtualized", None)  # import fails
    assert internals.aot_compiling() is True  # the traced form: correct, and needs nothing of this package
    assert "torch._inductor.virtualized.V.aot_compilation" in internals.degraded()


def test_without_the_runtime_loader_packages_load_the_public_way(monkeypatch):
    inductor = importlib.import_module("torch._inductor")
    monkeypatch.setattr(internals, "_DEGRADED", {})
    monkeypatch.setattr(torch._C, "_aoti", None, raising=False)
    loaded = []
    monkeypatch.setattr(inductor, "aoti_load_package", lambda path: loaded.append(path) or (lambda *x: x[0] * 2))
    run = internals.aoti_package_runner("program.pt2")
    assert loaded == ["program.pt2"] and run([torch.ones(1)])[0].item() == 2  # one output: still a list
    assert "torch._C._aoti.AOTIModelPackageLoader" in internals.degraded()


def test_a_present_internal_is_not_reported():
    import importlib.util

    present = {
        "torch.compiler.is_exporting": hasattr(torch.compiler, "is_exporting"),
        "torch.onnx._internal.exporter._flags": importlib.util.find_spec("torch.onnx._internal.exporter._flags") is not None,
        "torch._C._aoti.AOTIModelPackageLoader": hasattr(getattr(torch._C, "_aoti", None), "AOTIModelPackageLoader"),
    }  # fmt: skip
    reported = internals.degraded()
    for what, found in present.items():
        assert (what in reported) != found, what
