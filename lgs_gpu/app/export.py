"""``lgs-gpu export``: a defended classifier as one AOTInductor package (``.pt2``), checked before it is kept.

The defense and the classifier are exported together (``torch.export``, any batch size), compiled
by AOTInductor and written atomically. Before the file is put in place, the package is loaded back
and compared with the eager model on a batch it was not exported with: a package that disagrees
is refused, so a defense can never vanish on the way (docs/deploy.md).

Inside the package LGS is compiled code (the Triton kernels on CUDA, the traced form on CPU), so
loading it needs only torch. Defenses that stay calls into this package (``jpeg``, ``tvm``: Pillow
and the Bregman loop are not torch ops) need ``import lgs_gpu.defenses`` before the package is
loaded, which registers them; :attr:`ExportSummary.imports` lists what to import.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..core.parameters import lgs_spec_for
from ..core.torch_internals import is_operator_overload
from ..defenses import get as get_defense
from ..models import Classifier, load_model

# Operators that AOTInductor compiles into the package, needing nothing from lgs_gpu at load time.
_COMPILED_IN = ("lgs_gpu::lgs", "lgs_gpu::lgs_map")


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    defense: str
    model: str
    input_shape: tuple[int, int, int]  # (channels, height, width); the batch size is free
    device: str
    imports: tuple[str, ...]  # modules to import before loading (registers the package's operators)
    max_difference: float  # package against the eager model, on a batch it was not exported with

    def loading_instructions(self) -> str:
        channels, height, width = self.input_shape
        lines = ["import torch"]
        lines += [f"import {module}  # registers the operators the package calls" for module in self.imports]
        lines += [
            f"model = torch._inductor.aoti_load_package({str(self.path)!r})",
            f"logits = model(images)  # images: [B, {channels}, {height}, {width}] float32 in [0, 1] on {self.device}, any B",
        ]
        return "\n".join(lines)


def _operators_in(program: torch.export.ExportedProgram) -> set[str]:
    return {
        node.target.name().split(".")[0]
        for node in program.graph.nodes
        if node.op == "call_function" and is_operator_overload(node.target)
    }


def export_defended(
    output: str | Path,
    classifier: Classifier | str = "efficientnet_lite0",
    defense: str | None = None,
    *,
    weights: str | None = "default",
    size: int | None = None,
    device: str | torch.device = "cpu",
    tolerance: float = 1e-3,
) -> ExportSummary:
    """Package ``defense`` in front of ``classifier`` as one ``.pt2`` at ``output``.

    Args:
        output: the package's path (``.pt2``); written only once it has been checked.
        classifier: a :class:`lgs_gpu.models.Classifier` or a model name for :func:`load_model`.
        defense: a registry spec (``lgs@efficientnet_lite0``, ``lgs:1.7,window=25``, ``median:3|lgs``, ``jpeg:30``
            ...); ``None``: the model's calibrated LGS preset where it has one, else the paper's ``lgs``
            (:func:`lgs_gpu.core.parameters.lgs_spec_for`).
        weights: for a model name, as :func:`load_model` takes them.
        size: the image side the package takes (default: the classifier's input size).
        device: where the package runs (``cpu`` or ``cuda``).
        tolerance: the largest logit difference from the eager model that is accepted.
    Returns:
        :class:`ExportSummary`: what was written, and how to load it.
    Raises:
        ValueError: a bad spec or path, or a package that disagrees with the eager model.

    Example (a small classifier; the offline model takes a minute or two):
        >>> import tempfile
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
        >>> tiny = Classifier(net, "tiny", 32, [0.5] * 3, [0.5] * 3, "random")
        >>> summary = export_defended(tempfile.mkdtemp() + "/tiny.pt2", tiny, "lgs")
        >>> summary.imports, summary.max_difference < 1e-5
        ((), True)
        >>> loaded = torch._inductor.aoti_load_package(str(summary.path))
        >>> loaded(torch.rand(5, 3, 32, 32)).shape
        torch.Size([5, 10])
    """
    output = Path(output)
    if output.suffix != ".pt2":
        raise ValueError(f"the package's name must end in .pt2 (AOTInductor's format). Got {str(output)!r}")
    if not output.parent.is_dir():
        raise ValueError(f"the folder for the package does not exist: {str(output.parent)!r}")
    device = torch.device(device)
    if isinstance(classifier, str):
        classifier = load_model(classifier, weights=weights, device=device)
    if defense is None:
        defense = lgs_spec_for(classifier.name)
    side = size or classifier.input_size
    if not isinstance(side, int) or side < 1:
        raise ValueError(f"size must be a positive int. Got {size!r}")
    defended = nn.Sequential(get_defense(defense), classifier).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(2, 3, side, side, generator=generator).to(device)
    fresh = torch.rand(3, 3, side, side, generator=generator).to(device)  # another batch size, other pixels

    from torch._inductor import aoti_compile_and_package, aoti_load_package

    with torch.no_grad():
        program = torch.export.export(defended, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        needed = sorted(
            name for name in _operators_in(program) if name.startswith("lgs_gpu::") and name not in _COMPILED_IN
        )
        descriptor, temporary = tempfile.mkstemp(suffix=".pt2", prefix=f".{output.stem}-", dir=output.parent)
        os.close(descriptor)
        try:
            aoti_compile_and_package(program, package_path=temporary)
            difference = float((aoti_load_package(temporary)(fresh) - defended(fresh)).abs().max())
            if not difference <= tolerance:  # NaN fails too
                raise ValueError(
                    f"the package of {defense!r} + {classifier.name} differs from the eager model by {difference:.3g} "
                    f"(> {tolerance:g}) on a new batch; it was not written"
                )
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(temporary, 0o666 & ~mask)  # as open() would create it (mkstemp makes it 0600)
            os.replace(temporary, output)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return ExportSummary(
        output,
        defense,
        classifier.name,
        (3, side, side),
        str(device),
        ("lgs_gpu.defenses",) if needed else (),
        difference,
    )
