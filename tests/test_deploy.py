"""A defended model keeps its defense through torch.export, torch.compile, AOTInductor and ONNX.

Every registry defense is exported with dynamic batch, height and width, then run on new inputs
of another batch size and another image size against the eager defense; none may come back as
an identity. The LGS operators are checked as PyTorch checks custom operators (``opcheck``), and
their gradient against the torch backend's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.export import Dim

import lgs_gpu.smoothing.operators  # noqa: F401  (registers torch.ops.lgs_gpu.*, which these tests call directly)
from lgs_gpu import LocalGradientsSmoothing, lgs, lgs_map
from lgs_gpu.defenses import get
from lgs_gpu.models import Classifier

ROOT = Path(__file__).resolve().parents[1]
SPECS = ["none", "lgs", "lgs:1.5,threshold=0.2,window=9,overlap=3", "jpeg:30", "tvm:10", "median:3", "median:5",
         "gaussian:5", "bilateral:5", "bilateral:5,style=textbook", "bitdepth:3", "lgs+median:3", "lgs+bitdepth:3",
         "median:3|lgs", "lgs|jpeg:30"]  # fmt: skip
DYNAMIC = ({0: Dim("batch"), 2: Dim("height"), 3: Dim("width")},)
PARAMETERS = (2.3, 0.1, 15, 5)


def images(*shape, seed=0):
    """Photographs-like inputs: a smooth field with a noisy patch (so LGS has something to suppress)."""
    generator = torch.Generator().manual_seed(seed)
    batch, channels, height, width = shape
    field = torch.linspace(0, 1, width).expand(batch, channels, height, width).clone()
    field[..., height // 4 : height // 2, width // 4 : width // 2] = torch.rand(
        batch, channels, height // 2 - height // 4, width // 2 - width // 4, generator=generator
    )
    return field


def lgs_gpu_operators(graph_module: torch.fx.GraphModule) -> set[str]:
    return {str(node.target) for node in graph_module.graph.nodes if "lgs_gpu" in str(node.target)}


@pytest.mark.parametrize("spec", SPECS)
def test_export_keeps_every_defense(spec):
    defense = get(spec).eval()
    program = torch.export.export(defense, (images(2, 3, 48, 56),), dynamic_shapes=DYNAMIC)
    exported = program.module()
    for new in (images(3, 3, 48, 56, seed=1), images(2, 3, 40, 64, seed=2), images(1, 3, 61, 33, seed=3)):
        expected = defense(new)
        got = exported(new)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        if spec != "none":
            assert (expected - new).abs().max() > 1e-3, "the eager defense left this input alone: a useless check"


@pytest.mark.parametrize("spec", ["lgs", "median:3|lgs", "jpeg:30", "tvm:10", "bilateral:5"])
def test_exported_program_serialises_and_reloads(spec, tmp_path):
    defense = get(spec).eval()
    program = torch.export.export(defense, (images(2, 3, 48, 56),), dynamic_shapes=DYNAMIC)
    torch.export.save(program, tmp_path / "defense.pt2")
    reloaded = torch.export.load(tmp_path / "defense.pt2").module()
    new = images(3, 3, 37, 45, seed=4)
    torch.testing.assert_close(reloaded(new), defense(new), atol=1e-5, rtol=0)


def test_a_saved_program_loads_in_a_new_process_after_importing_the_operators(tmp_path):
    program = torch.export.export(LocalGradientsSmoothing().eval(), (images(2, 3, 48, 56),), dynamic_shapes=DYNAMIC)
    torch.export.save(program, tmp_path / "lgs.pt2")
    new = images(3, 3, 37, 45, seed=4)
    torch.save(new, tmp_path / "new.pt")
    script = ("import sys, torch, lgs_gpu.smoothing.operators\n"
              "out = torch.export.load(sys.argv[1]).module()(torch.load(sys.argv[2]))\n"
              "torch.save(out, sys.argv[3])")  # fmt: skip
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "lgs.pt2"), str(tmp_path / "new.pt"),
                             str(tmp_path / "out.pt")], capture_output=True, text=True, timeout=300, env=environment)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), lgs(new), atol=1e-5, rtol=0)


def test_eager_calls_import_no_compiler_and_the_first_traced_call_registers_the_operators():
    script = ("import sys, torch\n"
              "from lgs_gpu import lgs\n"
              "x = torch.rand(2, 3, 40, 44)\n"
              "lgs(x); lgs(x, backend='torch')\n"
              "heavy = ('torchvision', 'torch._dynamo', 'torch._inductor', 'lgs_gpu.smoothing.operators')\n"
              "print([name for name in heavy if name in sys.modules])\n"
              "torch.compile(lambda x: lgs(x), fullgraph=True, backend='eager')(x)\n"
              "print('lgs_gpu.smoothing.operators' in sys.modules, hasattr(torch.ops.lgs_gpu, 'lgs'))")  # fmt: skip
    environment = {**{k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}, "LGS_GPU_CACHE_DIR": "off"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    eager, traced = result.stdout.strip().splitlines()[-2:]
    assert eager == "[]" and traced == "True True"


def test_export_of_lgs_is_one_operator_node():
    program = torch.export.export(LocalGradientsSmoothing().eval(), (images(2, 3, 48, 56),), dynamic_shapes=DYNAMIC)
    assert lgs_gpu_operators(program.graph_module) == {"lgs_gpu.lgs.default"}


def test_export_of_uint8_images():
    defense = LocalGradientsSmoothing().eval()
    example = (images(2, 3, 48, 56) * 255).to(torch.uint8)
    exported = torch.export.export(defense, (example,), dynamic_shapes=DYNAMIC).module()
    new = (images(3, 3, 40, 50, seed=5) * 255).to(torch.uint8)
    assert torch.equal(exported(new), defense(new))


@pytest.mark.parametrize("spec", ["lgs", "median:3|lgs", "lgs+median:3", "jpeg:30", "tvm:10", "gaussian:5", "bitdepth:3"])
def test_compile_fullgraph_has_no_graph_break_and_matches_eager(spec):
    torch._dynamo.reset()
    defense = get(spec).eval()
    example = images(2, 3, 48, 56)
    explanation = torch._dynamo.explain(defense)(example)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(defense, fullgraph=True, dynamic=True)
    for new in (example, images(3, 3, 40, 64, seed=1)):
        torch.testing.assert_close(compiled(new), defense(new), atol=1e-5, rtol=0)


def test_a_compiled_classifier_keeps_lgs():
    torch._dynamo.reset()
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    defended = nn.Sequential(LocalGradientsSmoothing(), Classifier(net, "tiny", 32, [0.5] * 3, [0.5] * 3, "random"))
    undefended = defended[1]
    compiled = torch.compile(defended.eval(), fullgraph=True)
    x = images(2, 3, 32, 32)
    torch.testing.assert_close(compiled(x), defended(x), atol=1e-5, rtol=0)
    assert (defended(x) - undefended(x)).abs().max() > 1e-4, "LGS changed nothing here: a useless check"


def test_compile_with_the_reference_backend_refuses_and_says_what_to_use():
    reason = "cannot be traced.*'auto' or 'torch'"
    torch._dynamo.reset()
    with pytest.raises(Exception, match=reason):  # the graph breaks there and eager raises the reason
        torch.compile(LocalGradientsSmoothing(backend="reference"))(images(1, 3, 32, 32))
    torch._dynamo.reset()
    compiled = torch.compile(LocalGradientsSmoothing(backend="reference"), fullgraph=True)
    # torch 2.8's dynamo names only the exception's class under fullgraph ("raised exception ExceptionVariable(...)")
    before_2_9 = tuple(int(part) for part in torch.__version__.split(".")[:2]) < (2, 9)
    with pytest.raises(Exception, match="ValueError" if before_2_9 else reason):
        compiled(images(1, 3, 32, 32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_the_operators_run_what_lgs_runs(dtype):
    x = images(2, 3, 40, 50)
    x = (x * 255).to(dtype) if dtype == torch.uint8 else x.to(dtype)
    assert torch.equal(torch.ops.lgs_gpu.lgs(x, *PARAMETERS), lgs(x))
    assert torch.equal(torch.ops.lgs_gpu.lgs_map(x, *PARAMETERS[1:]), lgs_map(x)[:, 0])  # [B, H, W]
    channels_last = x.contiguous(memory_format=torch.channels_last)
    assert torch.ops.lgs_gpu.lgs(channels_last, *PARAMETERS).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("operator, arguments", [
    ("lgs", PARAMETERS), ("lgs_map", PARAMETERS[1:]), ("lgs_cpu", (*PARAMETERS, "output")),
    ("lgs_cpu", (*PARAMETERS, "suppression_map")),
])  # fmt: skip
def test_opcheck(operator, arguments):
    """Schema, fake (meta) implementation, autograd registration and AOTDispatcher, as PyTorch checks them."""
    x = images(2, 3, 20, 24).double().requires_grad_(operator != "lgs_cpu")
    torch.library.opcheck(getattr(torch.ops.lgs_gpu, operator).default, (x, *arguments))
    torch.library.opcheck(getattr(torch.ops.lgs_gpu, operator).default, ((x.detach() * 255).to(torch.uint8), *arguments))


def test_the_fake_implementation_gives_shapes_for_any_size():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        for shape in ((1, 3, 1, 1), (5, 1, 7, 300), (2, 4, 299, 299)):
            x = torch.empty(shape)
            assert torch.ops.lgs_gpu.lgs(x, *PARAMETERS).shape == shape
            assert torch.ops.lgs_gpu.lgs_map(x, *PARAMETERS[1:]).shape == (shape[0], *shape[2:])
            assert torch.ops.lgs_gpu.lgs_map(x, *PARAMETERS[1:]).dtype == torch.float32


def test_the_operators_gradient_is_the_torch_backends():
    x = images(2, 3, 30, 34).double().requires_grad_()
    weights = torch.rand(2, 3, 30, 34, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (through_operator,) = torch.autograd.grad((torch.ops.lgs_gpu.lgs(x, *PARAMETERS) * weights).sum(), x)
    (through_torch,) = torch.autograd.grad((lgs(x, backend="torch") * weights).sum(), x)
    torch.testing.assert_close(through_operator, through_torch, atol=1e-10, rtol=1e-8)
    map_weights = weights[:, 0]
    (map_operator,) = torch.autograd.grad((torch.ops.lgs_gpu.lgs_map(x, *PARAMETERS[1:]) * map_weights).sum(), x)
    (map_torch,) = torch.autograd.grad((lgs_map(x, backend="torch")[:, 0] * map_weights).sum(), x)
    torch.testing.assert_close(map_operator, map_torch, atol=1e-10, rtol=1e-8)
    assert through_operator.abs().max() > 0


def test_compile_differentiates_through_lgs():
    torch._dynamo.reset()
    x = images(2, 3, 30, 34).requires_grad_()
    compiled = torch.compile(LocalGradientsSmoothing(), fullgraph=True)
    (got,) = torch.autograd.grad(compiled(x).square().sum(), x)
    (expected,) = torch.autograd.grad(lgs(x, backend="torch").square().sum(), x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_on_cpu_compile_keeps_the_compiled_programs_opaque(tmp_path, monkeypatch):
    """The programs are faster than Inductor's code for the traced form: Inductor calls them (docs/deploy.md)."""
    monkeypatch.setenv("LGS_GPU_CACHE_DIR", str(tmp_path))
    from torch._dynamo.backends.common import aot_autograd

    graphs = []

    def record(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    torch._dynamo.reset()
    compiled = torch.compile(LocalGradientsSmoothing().eval(), fullgraph=True, backend=aot_autograd(fw_compiler=record))
    x = images(2, 3, 40, 44)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), lgs(x), atol=0, rtol=0)
    assert lgs_gpu_operators(graphs[-1]) == {"lgs_gpu.lgs_cpu.default"}
    # backend="torch" asks for the decomposition: Inductor compiles LGS with the model.
    graphs.clear()
    torch._dynamo.reset()
    compiled = torch.compile(LocalGradientsSmoothing(backend="torch").eval(), fullgraph=True,
                             backend=aot_autograd(fw_compiler=record))  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), lgs(x), atol=1e-6, rtol=0)
    assert lgs_gpu_operators(graphs[-1]) == set()


def tiny_classifier() -> Classifier:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    return Classifier(net, "tiny", 32, [0.5] * 3, [0.5] * 3, "random").eval()


LOADER = """
import json, sys, torch
if sys.argv[3]:
    __import__(sys.argv[3])
model = torch._inductor.aoti_load_package(sys.argv[1])
inputs, expected = torch.load(sys.argv[2], weights_only=True)
print(json.dumps({"difference": float((model(inputs) - expected).abs().max()),
                  "lgs_gpu imported": "lgs_gpu" in sys.modules}))
"""


def load_in_a_fresh_process(package: Path, tmp_path: Path, defended: nn.Module, imports: tuple[str, ...]) -> dict:
    inputs = images(5, 3, 32, 32, seed=7)
    with torch.no_grad():
        torch.save((inputs, defended(inputs)), tmp_path / "expected.pt")
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    finished = subprocess.run(
        [sys.executable, "-c", LOADER, str(package), str(tmp_path / "expected.pt"), ",".join(imports)],
        capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=300,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(finished.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("spec", ["lgs", "jpeg:30"])
def test_an_aoti_package_loads_in_a_fresh_process_and_equals_eager(spec, tmp_path):
    from lgs_gpu.app.export import export_defended

    classifier = tiny_classifier()
    summary = export_defended(tmp_path / "defended.pt2", classifier, spec)
    assert summary.path.is_file() and summary.max_difference < 1e-5
    defended = nn.Sequential(get(spec), classifier).eval()
    result = load_in_a_fresh_process(summary.path, tmp_path, defended, summary.imports)
    assert result["difference"] < 1e-5
    if spec == "lgs":  # compiled into the package: it runs without lgs_gpu
        assert summary.imports == () and not result["lgs_gpu imported"]
    else:  # Pillow's codec stays a call into lgs_gpu: the summary says to import it
        assert summary.imports == ("lgs_gpu.defenses",)
    assert "aoti_load_package" in summary.loading_instructions()


def test_export_refuses_a_package_that_disagrees_and_writes_nothing(tmp_path, monkeypatch):
    from lgs_gpu.app import export

    real_load = torch._inductor.aoti_load_package

    def broken_load(path):
        loaded = real_load(path)
        return lambda x: loaded(x) + 1.0

    monkeypatch.setattr(torch._inductor, "aoti_load_package", broken_load)
    with pytest.raises(ValueError, match="differs from the eager model"):
        export.export_defended(tmp_path / "defended.pt2", tiny_classifier(), "lgs")
    assert list(tmp_path.iterdir()) == []


def test_export_puts_the_models_calibrated_preset_in_front_by_default(tmp_path):
    from lgs_gpu.app.export import export_defended

    net = tiny_classifier().network
    classifier = Classifier(net, "efficientnet_lite0", 32, [0.5] * 3, [0.5] * 3, "random").eval()
    summary = export_defended(tmp_path / "defended.pt2", classifier)
    assert summary.defense == "lgs@efficientnet_lite0"
    generator = torch.Generator().manual_seed(3)
    images = 0.5 + 0.1 * torch.rand(4, 3, 32, 32, generator=generator)  # mild texture: window means between the γs
    images[..., 20:28, 20:28] = torch.rand(4, 3, 8, 8, generator=generator)  # and a patch of full-range noise
    packaged = torch._inductor.aoti_load_package(str(summary.path))(images)
    with torch.no_grad():
        preset = nn.Sequential(LocalGradientsSmoothing.for_model("efficientnet_lite0"), classifier)(images)
        paper = nn.Sequential(LocalGradientsSmoothing(), classifier)(images)
    assert (packaged - preset).abs().max() < 1e-5 < (packaged - paper).abs().max()
    assert export_defended(tmp_path / "tiny.pt2", tiny_classifier()).defense == "lgs"  # no preset: the paper's


@pytest.mark.parametrize("output, match", [("defended.onnx", "must end in .pt2"), ("missing/defended.pt2", "does not exist")])
def test_export_refuses_bad_paths(tmp_path, output, match):
    from lgs_gpu.app.export import export_defended

    with pytest.raises(ValueError, match=match):
        export_defended(tmp_path / output, tiny_classifier(), "lgs")


@pytest.mark.slow
def test_the_export_command_packages_the_offline_model(tmp_path):
    finished = subprocess.run(["lgs-gpu", "export", "-o", str(tmp_path / "defended.pt2")], capture_output=True,
                              text=True, timeout=900, cwd=tmp_path)  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "aoti_load_package" in finished.stdout and (tmp_path / "defended.pt2").is_file()
    assert "lgs@efficientnet_lite0 + efficientnet_lite0" in finished.stdout




def onnx_session(defense: nn.Module, example: torch.Tensor, path: Path):
    pytest.importorskip("onnxscript", reason="the [onnx] extra is not installed")
    runtime = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    program = torch.onnx.export(defense, (example,), dynamo=True, dynamic_shapes=DYNAMIC, verbose=False)
    program.save(str(path))
    return runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("spec", ["lgs", "lgs:1.7,threshold=0.2,window=9,overlap=3", "median:3", "gaussian:5",
                                  "bilateral:5", "bitdepth:3", "lgs+median:3", "median:3|lgs"])  # fmt: skip
def test_onnx_export_runs_in_onnxruntime_and_equals_eager(spec, tmp_path):
    defense = get(spec).eval()
    session = onnx_session(defense, images(2, 3, 48, 56), tmp_path / "defense.onnx")
    name = session.get_inputs()[0].name
    for new in (images(3, 3, 48, 56, seed=1), images(2, 3, 40, 64, seed=2)):
        (got,) = session.run(None, {name: new.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), defense(new), atol=1e-4, rtol=0)


@pytest.mark.parametrize("spec, reason", [
    ("jpeg:30", "no JPEG encoder"), ("tvm:10", "iterations stop"), ("lgs,backend=reference", "reference"),
    ("lgs+jpeg:30", "no JPEG encoder"),
])  # fmt: skip
def test_onnx_export_refuses_what_onnx_cannot_express(spec, reason, tmp_path):
    pytest.importorskip("onnxscript", reason="the [onnx] extra is not installed")
    with pytest.raises(Exception, match=reason) as raised:
        torch.onnx.export(get(spec).eval(), (images(2, 3, 48, 56),), dynamo=True, verbose=False)
    assert not isinstance(raised.value, (AttributeError, KeyError))


CUDA_TRACE = """
import json, torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext
from lgs_gpu.smoothing import routing

environment = ShapeEnv()
mode = FakeTensorMode(shape_env=environment)
context = StatelessSymbolicContext(dynamic_sizes=[DimDynamic.DYNAMIC] * 4)
symbolic = mode.from_tensor(torch.empty(4, 3, 299, 299, device="meta"), symbolic_context=context)
with mode:  # the same symbolic sizes on a (fake) CUDA device: no GPU is touched
    with unset_fake_temporarily():  # a plain meta tensor to wrap (torch 2.8 refuses to wrap a fake one)
        meta = torch.empty_strided(symbolic.shape, symbolic.stride(), device="meta")
    x = FakeTensor(mode, meta, torch.device("cuda", 0))
graph = make_fx(lambda x: routing.compute(x, 2.3, 0.1, 15, 5, "auto", ("output",))["output"], tracing_mode="symbolic")(x)
kernels = [node for node in graph.graph.nodes if "triton_kernel_wrapper" in str(node.target)]
# A size the trace compiled in is replaced by its value in the shape environment.
def specialised(size):
    return isinstance(size, int) or environment.replacements.get(size.node.expr, size.node.expr).is_number

names = ("batch", "channels", "height", "width")
print(json.dumps({"kernels": len(kernels), "grids": [str(node.kwargs["grid"]) for node in kernels],
                  "specialised": [name for name, size in zip(names, x.shape) if specialised(size)]}))
"""


def test_the_cuda_path_traces_into_triton_kernels_for_any_size():
    """What Inductor sees of LGS on CUDA, traced here without a GPU: the two Triton launches through
    ``wrap_triton``, with batch, height and width left symbolic (no size compiled in)."""
    pytest.importorskip("triton")
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    finished = subprocess.run([sys.executable, "-c", CUDA_TRACE], capture_output=True, text=True, env=environment,
                              cwd=ROOT, timeout=300)  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    traced = json.loads(finished.stdout.strip().splitlines()[-1])
    assert traced["kernels"] == 2, traced  # statistics, then suppress
    assert set(traced["specialised"]) <= {"channels"}, traced  # the channel loop is unrolled: one per count
    assert all("s" in grid for grid in traced["grids"]), traced  # grids computed from the symbolic sizes


@pytest.mark.parametrize("spec", ["lgs", "median:3", "jpeg:30", "median:3|lgs"])
def test_torchscript_refuses_instead_of_recording_one_inputs_choices(spec):
    with pytest.raises(Exception, match="cannot be captured by torch.jit.trace"):
        torch.jit.trace(get(spec).eval(), (images(2, 3, 48, 56),))
    with pytest.raises(Exception, match="cannot be captured by torch.jit.trace"):
        torch.jit.trace(lambda x: lgs(x), (images(2, 3, 48, 56),))
    with pytest.raises(RuntimeError, match="cannot be JIT scripted"):  # torchvision's v2 transforms refuse scripting
        torch.jit.script(get(spec))
