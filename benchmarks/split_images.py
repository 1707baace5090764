"""Split an image folder into two disjoint parts of symbolic links: one to choose a setting on, one to confirm it.

Each file goes by the SHA-256 of its name (not its position), so the split does not depend on
the order of the listing, and adding files to the source never moves one already split. The
first ``--choose`` files in that order form ``<output>/choose``, the rest ``<output>/confirm``.
Links keep each file's name, so the labels read from the layout (:data:`lgs_gpu.data.LABEL_LAYOUTS`)
are unchanged; the images themselves are never copied.

Usage: ``python benchmarks/split_images.py ../shared/data/imagenet-sample /tmp/imagenet-split [--choose 250]``
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path


def split(source: Path, output: Path, choose: int) -> tuple[list[Path], list[Path]]:
    """Link the files of ``source`` into ``output/choose`` and ``output/confirm``; returns both lists."""
    files = sorted((path for path in source.iterdir() if path.is_file() and not path.name.startswith(".")
                    and path.suffix.lower() != ".md"),
                   key=lambda path: hashlib.sha256(path.name.encode()).hexdigest())  # fmt: skip
    if not 0 < choose < len(files):
        raise SystemExit(f"--choose must be in 1..{len(files) - 1} for {len(files)} files. Got {choose}")
    parts = {"choose": files[:choose], "confirm": files[choose:]}
    for name, members in parts.items():
        folder = output / name
        folder.mkdir(parents=True, exist_ok=True)
        for path in members:
            link = folder / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
    return parts["choose"], parts["confirm"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--choose", type=int, default=250, help="files in the part to choose on (default 250)")
    args = parser.parse_args()
    chosen, confirm = split(args.source, args.output, args.choose)
    print(f"{len(chosen)} files in {args.output / 'choose'}, {len(confirm)} in {args.output / 'confirm'}")


if __name__ == "__main__":
    main()
