"""Ahead-of-time compilation of every Triton kernel configuration for sm_80 and sm_90, no GPU needed.

Each launch configuration that :func:`lgs_gpu.paths.triton_path.kernels.lgs_triton` can choose (one
per input dtype and output mode, with :data:`~lgs_gpu.paths.triton_path.kernels.DEFAULT_CONFIG`'s
block sizes) is compiled to PTX and a cubin with ``triton.compile``; ``cuobjdump``, shipped in
Triton's wheel, reads registers, spills (LOCAL bytes) and shared memory off each cubin.

Run as ``python -m lgs_gpu.paths.triton_path.aot [--json PATH]`` (with ``TRITON_INTERPRET`` unset: the
interpreter replaces the kernels by Python functions that cannot be compiled).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

ARCHITECTURES = (80, 90)
# Input dtypes the launcher accepts, as Triton pointer element types.
INPUT_TYPES = {"uint8": "u8", "float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float64": "fp64"}
# The suppress kernel's outputs (WRITE_OUTPUT, WRITE_MAP, WRITE_NORMALISED, WRITE_MASK) that the
# front asks for: lgs, lgs_map, both (defend --save-map), and every stage (lgs_stages' default).
# Other subsets of lgs_stages compile on first use like any Triton kernel.
OUTPUT_MODES = ((True, False, False, False), (False, True, False, False), (True, True, False, False),
                (True, True, True, True))  # fmt: skip
_MODE_NAMES = ("output", "map", "normalised", "mask")


@dataclass
class KernelReport:
    kernel: str
    variant: str
    arch: int
    registers: int
    spill_bytes: int
    stack_bytes: int
    shared_bytes: int
    ptx_lines: int
    warps: int


def kernel_configurations() -> list[tuple[str, str, dict[str, str], dict[str, object]]]:
    """Every (kernel name, variant label, signature, constexprs) the launcher can produce."""
    from .kernels import DEFAULT_CONFIG, RANGE_BLOCK

    configs = []
    for dtype_name, element in INPUT_TYPES.items():
        accumulate = "fp64" if element == "fp64" else "fp32"
        flags = {"IS_UINT8": element == "u8", "COMPUTE_F64": element == "fp64"}
        signature = {
            "x_ptr": f"*{element}", "window_sums_ptr": f"*{accumulate}",
            "block_min_ptr": f"*{accumulate}", "block_max_ptr": f"*{accumulate}",
            "row_starts_ptr": "*i32", "col_starts_ptr": "*i32",
            "channels": "i32", "height": "i32", "width": "i32", "n_row_windows": "i32", "n_col_windows": "i32",
            "window_height": "i32", "window_width": "i32",
            "stride_b": "i64", "stride_c": "i64", "stride_h": "i64", "stride_w": "i64",
        }
        constexprs = {
            **flags, "WINDOWS_PER_PROGRAM": DEFAULT_CONFIG.windows_per_program,
            "BLOCK_H": DEFAULT_CONFIG.sum_block_h, "BLOCK_W": DEFAULT_CONFIG.sum_block_w,
        }
        configs.append(("_window_sums_kernel", dtype_name, signature, constexprs))
        for write_output, write_map, write_normalised, write_mask in OUTPUT_MODES:
            signature = {
                "x_ptr": f"*{element}", "out_ptr": f"*{element}", "map_ptr": f"*{accumulate}",
                "normalised_ptr": f"*{accumulate}", "mask_ptr": "*u8" if write_mask else f"*{accumulate}",
                "window_sums_ptr": f"*{accumulate}", "stats_ptr": f"*{accumulate}", "params_ptr": f"*{accumulate}",
                "row_first_ptr": "*i32", "row_count_ptr": "*i32", "col_first_ptr": "*i32", "col_count_ptr": "*i32",
                "channels": "i32", "height": "i32", "width": "i32",
                "n_row_windows": "i32", "n_col_windows": "i32", "n_col_tiles": "i32",
                "max_row_cover": "i32", "max_col_cover": "i32", "window_area": "i32",
                **{name: "i64" for name in ("stride_b", "stride_c", "stride_h", "stride_w")},
                **{name: "i64" for name in ("out_stride_b", "out_stride_c", "out_stride_h", "out_stride_w")},
            }
            constexprs = {
                **flags, "WRITE_OUTPUT": write_output, "WRITE_MAP": write_map,
                "WRITE_NORMALISED": write_normalised, "WRITE_MASK": write_mask,
                "BLOCK_H": DEFAULT_CONFIG.block_h, "BLOCK_W": DEFAULT_CONFIG.block_w,
            }
            flags_on = (write_output, write_map, write_normalised, write_mask)
            mode = "+".join(name for name, on in zip(_MODE_NAMES, flags_on, strict=True) if on)
            configs.append(("_suppress_kernel", f"{dtype_name} {mode}", signature, constexprs))
    for accumulate in ("fp32", "fp64"):
        signature = {"block_min_ptr": f"*{accumulate}", "block_max_ptr": f"*{accumulate}",
                     "stats_ptr": f"*{accumulate}", "n_blocks": "i32"}
        configs.append(("_image_range_kernel", accumulate, signature, {"BLOCK": RANGE_BLOCK}))
    return configs


def _cuobjdump() -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def compile_one(kernel_name: str, variant: str, signature: dict, constexprs: dict, arch: int) -> KernelReport:
    """Compile one configuration for ``sm_<arch>`` and read its resource usage off the cubin."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from . import kernels

    kernel = getattr(kernels, kernel_name)
    full_signature = {**signature, **{name: "constexpr" for name in constexprs}}
    compiled = triton.compile(ASTSource(kernel, full_signature, constexprs), target=GPUTarget("cuda", arch, 32))
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        usage = subprocess.run(
            [_cuobjdump(), "--dump-resource-usage", cubin.name], capture_output=True, text=True, check=True
        ).stdout

    def field(name: str) -> int:
        match = re.search(rf"\b{name}:(\d+)", usage)
        if match is None:
            raise RuntimeError(f"cuobjdump printed no {name} for {kernel_name}:\n{usage}")
        return int(match.group(1))

    return KernelReport(
        kernel=kernel_name, variant=variant, arch=arch, registers=field("REG"), spill_bytes=field("LOCAL"),
        stack_bytes=field("STACK"), shared_bytes=compiled.metadata.shared, ptx_lines=compiled.asm["ptx"].count("\n"),
        warps=compiled.metadata.num_warps,
    )


def compile_all(architectures: tuple[int, ...] = ARCHITECTURES, workers: int = 2) -> list[KernelReport]:
    """Compile every configuration for every architecture (in ``workers`` processes)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("unset TRITON_INTERPRET to compile kernels ahead of time")
    jobs = [(*config, arch) for config in kernel_configurations() for arch in architectures]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(compile_one, *zip(*jobs, strict=True)))


def markdown_table(reports: list[KernelReport]) -> str:
    lines = ["| kernel | variant | sm | registers | spills (bytes) | stack | shared (bytes) |", "|---|---|---|---|---|---|---|"]
    for r in reports:
        lines.append(
            f"| {r.kernel} | {r.variant} | {r.arch} | {r.registers} | {r.spill_bytes} | {r.stack_bytes} | {r.shared_bytes} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the reports to this JSON file")
    parser.add_argument("--arch", type=int, nargs="+", default=list(ARCHITECTURES), help="SM versions (default: 80 90)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    reports = compile_all(tuple(args.arch), args.workers)
    print(markdown_table(reports))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([asdict(r) for r in reports], handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
