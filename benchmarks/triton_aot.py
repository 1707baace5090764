"""Compile the Triton kernels for sm_80 / sm_90 exactly as a CUDA launch would, without a GPU.

:func:`compile_only` swaps Triton's active driver for one that reports a CUDA target of the
chosen architecture and turns every launch into ``JITFunction.run(..., warmup=True)``: the real
launcher (:func:`lgs_gpu.smoothing.backends.triton_path.kernels.stages`) runs on CPU or ``meta`` tensors of the
real shapes, Triton specialises the arguments as it would for a launch (which integers are 1,
which are divisible by 16, which pointers are 16-byte aligned), compiles, and nothing runs. Each
launch is recorded with its grid, its bound arguments and the compiled kernel; ``cuobjdump`` and
``nvdisasm``, shipped in Triton's wheel, read registers, spills and the machine code (SASS).

Run as ``python benchmarks/triton_aot.py [--json PATH] [--arch 80 90]`` with
``TRITON_INTERPRET`` unset (the interpreter replaces kernels by Python functions that cannot be
compiled); it compiles :func:`configurations` and prints each kernel's resources.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch

ARCHITECTURES = (80, 90)
DTYPES = ("uint8", "float16", "bfloat16", "float32", "float64")
# The stage sets the front asks for: lgs, lgs_map, both (defend --save-map), and every stage.
STAGE_SETS = (("output",), ("suppression_map",), ("output", "suppression_map"),
              ("output", "normalised_gradient", "window_mask", "suppression_map", "window_means"))  # fmt: skip


@dataclass
class Launch:
    """One kernel launch the launcher asked for, compiled and not run."""

    kernel: str
    grid: tuple[int, ...]
    arguments: dict  # parameter name -> value (tensors, ints, floats, constexprs) as the launcher passed them
    compiled: object = field(repr=False)  # triton's CompiledKernel
    arch: int = 90

    @property
    def programs(self) -> int:
        total = 1
        for size in self.grid:
            total *= size
        return total

    @property
    def num_warps(self) -> int:
        return self.compiled.metadata.num_warps


class _CompileOnlyDriver:
    """What ``JITFunction.run`` asks of Triton's active driver, for a CUDA target with no GPU."""

    def __init__(self, arch: int, multiprocessors: int | None = None) -> None:
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", arch, 32)
        self.arch = arch
        self.multiprocessors = multiprocessors

    def get_current_target(self):
        return self.target

    def get_current_device(self) -> int:
        # Keys Triton's per-device kernel caches: one per architecture, never a real device index.
        return 1000 + self.arch

    def get_current_stream(self, device=None) -> int:
        return 0

    # What the launcher's grid fitting (lgs_gpu/smoothing/backends/triton_path/occupancy.py) reads of the
    # device: an H100 SXM for sm_90 (kernel_report's device), an A100 for sm_80, unless told the SMs.
    @property
    def utils(self):
        return self

    def get_device_properties(self, device: int) -> dict[str, int]:
        sms, shared = {80: (108, 166912), 90: (132, 232448)}[self.arch]
        return {"multiprocessor_count": self.multiprocessors or sms, "max_num_regs": 65536, "max_shared_mem": shared,
                "warpSize": 32}  # fmt: skip

    def load_binary(self, name, cubin, shared, device):
        usage = resource_usage(cubin)  # local memory, as the driver counts it: spills and stack, in 4-byte words
        return None, None, usage["registers"], (usage["spill_bytes"] + usage["stack_bytes"]) // 4, 1024

    def launcher_cls(self, source, metadata) -> None:
        return None


@contextlib.contextmanager
def compile_only(arch: int = 90, multiprocessors: int | None = None) -> Iterator[list[Launch]]:
    """Inside this block, Triton launches compile for ``sm_<arch>`` and are recorded, not run; the launcher
    fits its grid to ``multiprocessors`` SMs (default: an H100 SXM's for sm_90, an A100's for sm_80).

    Example:
        >>> with compile_only(90) as launches:  # doctest: +SKIP
        ...     kernels.stages(torch.empty(64, 3, 299, 299, device="meta"), 2.3, 0.1, 15, 5, ("output",))
        >>> [launch.kernel for launch in launches]  # doctest: +SKIP
        ['_statistics_kernel', '_finish_kernel', '_suppress_kernel']
    """
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("unset TRITON_INTERPRET to compile kernels (the interpreter cannot be compiled)")
    from triton.runtime import driver
    from triton.runtime.jit import JITFunction

    launches: list[Launch] = []
    real_run = JITFunction.run

    def run(self, *args, grid, warmup, **kwargs):
        compiled = real_run(self, *args, grid=grid, warmup=True, **kwargs)
        if warmup:  # the launcher compiling to read the registers (its grid fitting): not a launch
            return compiled
        bound = inspect.signature(self.fn).bind_partial(*args, **{k: v for k, v in kwargs.items() if k in self.arg_names})
        grid_tuple = tuple(grid(bound.arguments) if callable(grid) else grid)
        launches.append(Launch(self.fn.__name__, grid_tuple, dict(bound.arguments), compiled, arch))
        return compiled

    # The active driver as stored, not read through driver.active: in triton 3.5 and later that property
    # creates the real driver (which needs a GPU); triton 3.4 stores a lazy proxy in .active itself.
    state = "_active" if "_active" in vars(driver) else "active"
    saved = vars(driver)[state]
    driver.set_active(_CompileOnlyDriver(arch, multiprocessors))
    JITFunction.run = run
    try:
        yield launches
    finally:
        JITFunction.run = real_run
        setattr(driver, state, saved)


def compile_stages(
    shape: tuple[int, int, int, int], dtype: str = "float32", stages: tuple[str, ...] = ("output",),
    arch: int = 90, channels_last: bool = False, window_size: int = 15, overlap: int = 5, config=None,
    multiprocessors: int | None = None,
) -> list[Launch]:
    """The launches of one ``lgs_stages`` call on ``shape`` images, compiled for ``sm_<arch>``."""
    from lgs_gpu.smoothing.backends.triton_path.kernels import stages as launch_stages

    x = torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    with compile_only(arch, multiprocessors) as launches:
        launch_stages(x, 2.3, 0.1, window_size, overlap, tuple(stages), config)
    return launches


def configurations(quick: bool = False) -> list[dict]:
    """The launches the preflight compiles: every dtype x stage set at 64x3x299x299, and the other code paths.

    The others: one channel, four (the most the gradient walk carries), six (the reloading walk),
    channels_last (strided columns), a 224-px image (rows 16-byte aligned) and a 2**31-element
    image (int64 offsets inside the image). ``quick``: float32 and uint8 for two stage sets, the
    other dtypes for the output alone, and the other code paths.
    """
    dtypes = ("uint8", "float32") if quick else DTYPES
    stage_sets = STAGE_SETS[::3] if quick else STAGE_SETS
    configs = [dict(shape=(64, 3, 299, 299), dtype=dtype, stages=stages) for dtype in dtypes for stages in stage_sets]
    if quick:
        configs += [dict(shape=(64, 3, 299, 299), dtype=dtype, stages=("output",)) for dtype in DTYPES if dtype not in dtypes]
    configs += [
        dict(shape=(8, 1, 299, 299), dtype="float32", stages=("output",)),
        dict(shape=(8, 4, 299, 299), dtype="uint8", stages=("output",)),
        dict(shape=(8, 6, 64, 64), dtype="float32", stages=STAGE_SETS[-1]),
        dict(shape=(8, 3, 299, 299), dtype="float32", stages=("output",), channels_last=True),
        dict(shape=(64, 3, 224, 224), dtype="uint8", stages=("output",)),
        dict(shape=(1, 1, 46341, 46341), dtype="uint8", stages=("output", "suppression_map")),
    ]
    return configs


def _tool(name: str) -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def resource_usage(cubin: bytes) -> dict[str, int]:
    """Registers, spill (local) bytes, stack and shared memory of a cubin, as ``cuobjdump`` reports them."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as handle:
        handle.write(cubin)
        handle.flush()
        usage = subprocess.run([_tool("cuobjdump"), "--dump-resource-usage", handle.name],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip

    def number(name: str) -> int:
        match = re.search(rf"\b{name}:(\d+)", usage)
        if match is None:
            raise RuntimeError(f"cuobjdump printed no {name}:\n{usage}")
        return int(match.group(1))

    return {"registers": number("REG"), "spill_bytes": number("LOCAL"), "stack_bytes": number("STACK"),
            "shared_bytes": number("SHARED")}  # fmt: skip


def disassemble(cubin: bytes) -> str:
    """The SASS of a cubin with source lines and the call sites they were inlined through (``nvdisasm -gi -c``)."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as handle:
        handle.write(cubin)
        handle.flush()
        finished = subprocess.run([_tool("nvdisasm"), "-gi", "-c", handle.name], capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"nvdisasm failed: {finished.stderr.strip()}")
    return finished.stdout


@dataclass
class KernelReport:
    """The resources of one compiled launch."""

    kernel: str
    variant: str
    arch: int
    registers: int
    spill_bytes: int
    stack_bytes: int
    shared_bytes: int
    warps: int
    programs: int


def _variant(config: dict) -> str:
    shape = "x".join(map(str, config["shape"]))
    layout = " channels_last" if config.get("channels_last") else ""
    return f"{config['dtype']} {shape}{layout} {'+'.join(config['stages'])}"


def report(config: dict, arch: int) -> list[dict]:
    """Compile one configuration for ``sm_<arch>``: a :class:`KernelReport` (as a dict) per launch."""
    rows = []
    for launch in compile_stages(arch=arch, **config):
        usage = resource_usage(launch.compiled.asm["cubin"])
        rows.append(asdict(KernelReport(kernel=launch.kernel, variant=_variant(config), arch=arch, **usage,
                                        warps=launch.num_warps, programs=launch.programs)))  # fmt: skip
    return rows


def compile_all(architectures: tuple[int, ...] = ARCHITECTURES, workers: int = 2, quick: bool = False) -> list[dict]:
    """Every configuration (``quick``: a subset) for every architecture, in ``workers`` processes."""
    from concurrent.futures import ProcessPoolExecutor

    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("unset TRITON_INTERPRET to compile kernels ahead of time")
    jobs = [(config, arch) for config in configurations(quick) for arch in architectures]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [row for rows in pool.map(report, *zip(*jobs, strict=True)) for row in rows]


def markdown_table(reports: list[dict]) -> str:
    lines = ["| kernel | variant | sm | programs | warps | registers | spills (bytes) | stack | shared (bytes) |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in reports:
        lines.append(f"| {r['kernel']} | {r['variant']} | {r['arch']} | {r['programs']} | {r['warps']} | "
                     f"{r['registers']} | {r['spill_bytes']} | {r['stack_bytes']} | {r['shared_bytes']} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the reports to this JSON file")
    parser.add_argument("--arch", type=int, nargs="+", default=list(ARCHITECTURES), help="SM versions (default: 80 90)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer stage sets, and the other dtypes for the output alone")
    args = parser.parse_args(argv)
    import triton

    reports = compile_all(tuple(args.arch), args.workers, args.quick)
    print(f"triton {triton.__version__} from {os.path.dirname(triton.__file__)}")
    print(markdown_table(reports))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"triton": triton.__version__, "reports": reports}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
