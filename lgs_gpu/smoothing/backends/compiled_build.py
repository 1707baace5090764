"""Builds the compiled CPU path's programs in a process of its own.

:func:`lgs_gpu.smoothing.backends.compiled_path.build_in_child` runs
``python -m lgs_gpu.smoothing.backends.compiled_build REQUESTS``, ``REQUESTS`` a JSON list of
:meth:`.compiled_graphs.Program.fields` lists, each followed by a package path: each graph of
:func:`.compiled_graphs.examples` is exported with dynamic shapes and compiled by AOTInductor into
the ``.pt2`` package at that path. A failure prints its reason as the last line on stderr and exits non-zero.
"""

from __future__ import annotations

import json
import sys

import torch


def build(name: str, dtype: str, extents: list[int] | None, channels: int | None, path: str) -> None:
    """Export the program these fields name and compile it into ``path``."""
    from torch._inductor import aoti_compile_and_package

    from .compiled_graphs import Program, examples

    module, inputs, dynamic_shapes = examples(Program.from_fields(name, dtype, extents, channels))
    exported = torch.export.export(module, inputs, dynamic_shapes=dynamic_shapes)
    aoti_compile_and_package(exported, package_path=path)


def main(arguments: list[str]) -> int:
    if len(arguments) != 1:
        print(
            "usage: python -m lgs_gpu.smoothing.backends.compiled_build '[[name, dtype, extents, channels, path], ...]'",
            file=sys.stderr,
        )
        return 2
    for request in json.loads(arguments[0]):
        build(*request)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
