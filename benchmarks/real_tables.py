"""Markdown tables with counts and 95% Wilson intervals from finished runs (what the docs quote for real images).

Reads each folder's ``results.json`` (``lgs-gpu evaluate``) or ``certify.json`` (``lgs-gpu
certify``) and prints, for evaluate, every unit's accuracy per defense as ``rate (correct/n)
[low–high]`` with the attack's target rate; for certify, clean and certified accuracy per patch
size. Counts come from the per-image records, so every rate can be checked by hand.

Usage: ``python benchmarks/real_tables.py RUN_FOLDER [RUN_FOLDER ...]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lgs_gpu.app.calibrate import wilson_interval


def cell(correct: int, total: int) -> str:
    low, high = wilson_interval(correct, total)
    return f"{100 * correct / max(total, 1):.1f}% ({correct}/{total}) [{100 * low:.0f}–{100 * high:.0f}]"


def evaluate_tables(results: dict) -> str:
    records = results["records"]
    units = [unit["key"] for unit in results["units"]]
    lines = [f"{results['images']['count']} images, labels: {results['label_source']}", ""]
    for unit in units:
        mine = [record for record in records if record["unit"] == unit]
        scored = list(mine[0]["predictions"]) if mine else []
        specs = [spec for spec in results["config"]["defenses"] if spec in scored] + [
            spec for spec in scored if spec not in results["config"]["defenses"]]  # the run's order, then the rest
        targeted = any(record["targets"] is not None for record in mine)
        lines += [f"**{unit}**", "", "| defense | accuracy | target reached |" if targeted else "| defense | accuracy |",
                  "|---|---|---|" if targeted else "|---|---|"]  # fmt: skip
        for spec in specs:
            pairs = [(p, label, None if record["targets"] is None else record["targets"][i])
                     for record in mine for i, (p, label) in enumerate(zip(record["predictions"][spec], record["labels"],
                                                                              strict=True))]  # fmt: skip
            correct = sum(p == label for p, label, _ in pairs)
            row = f"| `{spec}` | {cell(correct, len(pairs))} |"
            if targeted:
                row += f" {cell(sum(p == target for p, _, target in pairs), len(pairs))} |"
            lines.append(row)
        lines.append("")
    return "\n".join(lines)


def certify_tables(results: dict) -> str:
    lines = [f"{results['images']} images, labels: {results['label_source']}", "",
             "| patch | model clean | PatchCleanser clean | certified |", "|---|---|---|---|"]  # fmt: skip
    for key, records in results["records"].items():
        total = sum(len(record["labels"]) for record in records)
        bare = sum(p == label for r in records for p, label in zip(r["bare_predictions"], r["labels"], strict=True))
        clean = sum(p == label for r in records for p, label in zip(r["predictions"], r["labels"], strict=True))
        certified = sum(ok and p == label for r in records
                        for ok, p, label in zip(r["certified"], r["predictions"], r["labels"], strict=True))  # fmt: skip
        lines.append(f"| {key} | {cell(bare, total)} | {cell(clean, total)} | {cell(certified, total)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    for folder in parser.parse_args().folders:
        print(f"## {folder}\n")
        if (folder / "results.json").exists():
            print(evaluate_tables(json.loads((folder / "results.json").read_text())))
        elif (folder / "certify.json").exists():
            print(certify_tables(json.loads((folder / "certify.json").read_text())))
        else:
            raise SystemExit(f"{folder} holds no results.json or certify.json")
        print()


if __name__ == "__main__":
    main()
