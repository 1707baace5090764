"""The package's size as issue 28 measures it: lines after ``ruff format`` with every ``# fmt: skip`` removed.

Copies ``lgs_gpu/`` (or the folder given) into a temporary folder, drops the ``# fmt: skip`` markers,
formats the copy with ruff (the project's settings) and counts lines per module. Prints the total,
the modules over ``--limit`` lines (kernels apart) and the lines of the LGS front.

Usage: ``python benchmarks/package_size.py [--package lgs_gpu] [--limit 450] [--at <git revision>]``
(``--at`` measures the package as it was at that revision, from ``git archive``).
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ("triton_path/kernels.py",)  # the bound leaves the kernels out
# The front from a call to its path: lgs / lgs_map and their argument checks' call, the routing table, the
# operators a traced call goes through (and their names before the tree by layers, for --at). lgs_stages
# (smoothing/stages.py) and the checks themselves (core/validate.py) are not counted.
FRONT = ("front.py", "dispatch.py", "ops.py", "tracing.py", "smoothing/front.py", "smoothing/routing.py",
         "smoothing/operators.py")  # fmt: skip


def formatted_lines(package: Path) -> dict[str, int]:
    """Lines of each module of ``package`` after removing ``# fmt: skip`` and formatting with ruff."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder, package.name)
        shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
        for module in copy.rglob("*.py"):
            text = re.sub(r"\s*# fmt: skip", "", module.read_text())
            module.write_text(text)
        shutil.copy(ROOT / "pyproject.toml", folder)
        subprocess.run(["ruff", "format", "--quiet", str(copy)], check=True, cwd=folder)
        return {str(module.relative_to(copy)): len(module.read_text().splitlines()) for module in copy.rglob("*.py")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="lgs_gpu")
    parser.add_argument("--limit", type=int, default=450)
    parser.add_argument("--at", help="a git revision to measure instead of the working tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        package = ROOT / args.package
        if args.at:
            archive = subprocess.run(["git", "archive", args.at, args.package], cwd=ROOT, capture_output=True,
                                     check=True).stdout  # fmt: skip
            tarfile.open(fileobj=io.BytesIO(archive)).extractall(folder, filter="data")
            package = Path(folder, args.package)
        lines = formatted_lines(package)
    print(f"{args.package}{' at ' + args.at if args.at else ''}: {sum(lines.values())} lines in {len(lines)} modules")
    large = {name: count for name, count in lines.items() if count > args.limit and not name.endswith(KERNELS)}
    for name, count in sorted(large.items(), key=lambda item: -item[1]):
        print(f"  over {args.limit}: {name} {count}")
    front = {name: lines[name] for name in FRONT if name in lines}
    print(f"  the front ({', '.join(front)}): {sum(front.values())}")


if __name__ == "__main__":
    main()
