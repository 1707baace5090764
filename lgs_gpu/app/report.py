"""Reports: the evaluation's tables as JSON / CSV / Markdown, and figures like the paper's
Figure 2 (the stages of LGS) and Figure 4 (images under each defense with top-1 labels)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Container, Iterable, Iterator, Sequence
from pathlib import Path

import torch

from ..core.extras import optional_import
from ..core.files import atomic_write_bytes


def _show(axis, image: torch.Tensor) -> None:
    """Draw ``[C, H, W]`` (uint8 or float in [0, 1]) or ``[H, W]`` (in gray) on a matplotlib axis, without ticks."""
    image = image.detach().cpu()
    if image.dtype == torch.uint8:
        image = image.float() / 255
    image = image.float().clamp(0, 1)
    picture = image.permute(1, 2, 0).numpy() if image.dim() == 3 else image.numpy()
    axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1)
    axis.set(xticks=[], yticks=[])


def figure_lgs_stages(rows: list[dict], path: str | Path, dpi: int = 110) -> Path:
    """Write a grid with one row per image: the input, ``g``, ``ĝ`` after windowing, the defended image.

    Args:
        rows: dicts with ``name`` (str), ``image`` and ``defended`` (``[C, H, W]``), ``normalised``
            and ``suppressed`` (``[H, W]`` in [0, 1]), and an optional ``note`` under the name.
        path: the PNG to write (atomically).
    """
    titles = ("input (with patch)", "g: normalised gradient", "ĝ: kept windows", "LGS output")
    figure, axes = pyplot().subplots(len(rows), 4, figsize=(12, 3.1 * len(rows)), squeeze=False)
    for axes_row, row in zip(axes, rows, strict=True):
        panels = (row["image"], row["normalised"], row["suppressed"], row["defended"])
        for column, (axis, panel) in enumerate(zip(axes_row, panels, strict=True)):
            _show(axis, panel)
            if axes_row is axes[0]:
                axis.set_title(titles[column])
        axes_row[0].set_ylabel(row["name"] + ("\n" + row["note"] if row.get("note") else ""), fontsize=9)
    return save_figure(figure, path, dpi)


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display), or :class:`MissingExtra`."""
    optional_import("matplotlib", "figures").use("Agg")
    return optional_import("matplotlib.pyplot", "figures")


def save_figure(figure, path: str | Path, dpi: int) -> Path:
    """Render a matplotlib figure to PNG and write it atomically; closes the figure."""
    plt = pyplot()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def figure_defended_examples(columns: list[dict], rows: list[str], path: str | Path, dpi: int = 100) -> Path:
    """Figure 4 analogue: one column per image, one row per defense, each panel titled with top-1.

    Args:
        columns: dicts with ``name`` and ``panels``: ``{defense spec: (image [C, H, W], label text,
            confidence)}`` for every spec in ``rows``.
        rows: defense specs, top to bottom.
    """
    figure, axes = pyplot().subplots(
        len(rows), len(columns), figsize=(2.6 * len(columns), 2.5 * len(rows)), squeeze=False
    )
    for column, entry in enumerate(columns):
        for row, spec in enumerate(rows):
            image, label, confidence = entry["panels"][spec]
            axis = axes[row][column]
            _show(axis, image)
            axis.set_title(f"{label[:22]} ({confidence:.0%})", fontsize=8)
            if column == 0:
                axis.set_ylabel(spec, fontsize=9)
        axes[0][column].set_title(f"{entry['name']}\n" + axes[0][column].get_title(), fontsize=8)
    return save_figure(figure, path, dpi)


def markdown_table(rows: list[dict], percent: Container[str] | None = None) -> str:
    """A list of same-keyed dicts as a Markdown table: floats as percentages, or only those of the columns
    ``percent`` and the others with three significant digits."""
    if not rows:
        return "_(not run)_\n"

    def cell(key: str, value) -> str:
        if value is None:
            return "–"
        if not isinstance(value, float):
            return str(value)
        return f"{value:.1%}" if percent is None or key in percent else f"{value:.3g}"

    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(key, row.get(key)) for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


TABLE_TITLES = {
    "table1": "Table 1: top-1 accuracy, clean and under LaVAN (non-adaptive), with the attack's target rate",
    "table2": "Table 2: top-1 accuracy under the universal adversarial patch (EoT), with its target rate",
    "table3": "Table 3: LaVAN success rate (target is top-1 after the defense), non-adaptive vs BPDA",
    "adaptive": "Adaptive attacks on LGS: accuracy and attack success by what the attacker differentiates",
    "certified": "PatchCleanser: clean and certified accuracy, accuracy under each attack (masks-*: adaptive, EoT over "
    "its masks), and certificates an in-threat-model attack broke (must be 0)",
}


def results_markdown(results: dict) -> str:
    """The evaluation's tables as one Markdown document."""
    config = results["config"]
    lines = [
        "# lgs_gpu evaluation",
        "",
        f"Model `{results['model']['name']}` ({results['model']['input_size']} px, weights {results['model']['weights']}); "
        f"{results['images']['count']} images ({'bundled photographs' if config['data'] is None else config['data']}); "
        f"labels: {results['label_source']}. LaVAN: {config['lavan_iterations']} steps; patch: {config['patch_steps']} "
        f"steps; seed {config['seed']}.",
        "",
    ]
    if results["images"]["skipped"]:
        lines += [f"Skipped {len(results['images']['skipped'])} unreadable file(s).", ""]
    for key, title in TABLE_TITLES.items():
        lines += [f"## {title}", "", markdown_table(results["tables"][key])]
    return "\n".join(lines)


def write_outputs(folder: Path, stem: str, result: dict, header: Sequence[str], rows: Iterable, markdown: str) -> None:
    """``<stem>.json`` (everything), ``<stem>.csv`` (``header``, then ``rows``) and ``<stem>.md``, each atomically:
    what evaluate, certify and calibrate write."""
    atomic_write_bytes(folder / f"{stem}.json", json.dumps(result, indent=1).encode())
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(folder / f"{stem}.csv", buffer.getvalue().encode())
    atomic_write_bytes(folder / f"{stem}.md", markdown.encode())


def write_results(results: dict, folder: Path) -> None:
    """The evaluation's ``results.json``, ``results.csv`` (long format: table, defense, column, value) and ``.md``."""

    def rows() -> Iterator[list]:
        for table, table_rows in results["tables"].items():
            for row in table_rows:
                label = row.get("defense", "") + (f" / {row['attacker']}" if "attacker" in row else "")
                for column, value in row.items():
                    if column not in ("defense", "attacker"):
                        yield [table, label, column, "" if value is None else value]

    write_outputs(
        folder, "results", results, ["table", "defense", "column", "value"], rows(), results_markdown(results)
    )
