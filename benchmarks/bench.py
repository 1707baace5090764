"""What each defense costs, against the CPU libraries and the copy roof.

Every contender runs on the same ``[B, 3, S, S]`` float32 batch; contenders are interleaved in
each round (these machines are noisy) and medians reported, as seconds per 1,000 images,
images/s and a multiple of ``out.copy_(x)`` (one read + one write of the batch: the least a
one-pass image transform can cost here). Per-image CPU-library contenders (Pillow, SciPy,
scikit-image, the NumPy LGS) run on ``per_image_sample`` images of the batch and are scaled per
image. Also measured: the first call of each contender (``torch.compile`` compiles there), the
peak memory each LGS path allocates as a multiple of the input batch, and on CUDA the bandwidth
each path reaches (``triton.testing.do_bench``; bytes from ``benchmarks/roofline.py``'s traffic
model) as a fraction of the device's peak. Writes ``bench.json`` (machine, versions, date, rows),
``bench.csv``, ``bench.md`` and ``bench.png`` (log-scale bars like the paper's Figure 3).

Usage: ``python benchmarks/bench.py [-o lgs-bench] [--batch 32] [--size 299] [--repeats 5]
[--per-image-sample 4] [--no-reference] [--sweep-batches 1,8,32] [--sweep-sizes 224,299] [--device cuda]``
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cpu_references as references
import numpy as np
import roofline
import torch
from peak_memory import peak_numpy_bytes, peak_torch_bytes

from lgs_gpu import defenses, lgs
from lgs_gpu.app import allocator
from lgs_gpu.app.report import save_figure, write_outputs
from lgs_gpu.core.extras import optional_import
from lgs_gpu.smoothing.routing import PATHS

# (spec of our batched defense, the CPU library call it is checked against on one HWC image)
BASELINES = {
    "jpeg:30": ("Pillow JPEG", lambda image: references.pillow_jpeg(image, 30)),
    "tvm:10": ("scikit-image TV-Bregman", lambda image: references.skimage_tv_bregman(image, 10)),
    "median:3": ("SciPy median", lambda image: references.scipy_median(image, 3)),
    "gaussian:5": ("SciPy Gaussian", lambda image: references.scipy_gaussian(image, 5)),
    "bilateral:5": ("scikit-image bilateral", lambda image: references.skimage_bilateral(image, 5)),
    "bitdepth:3": ("NumPy bit depth", lambda image: references.numpy_bit_depth(image, 3)),
}


@dataclass
class Row:
    name: str
    group: str  # "roof", "lgs", "baseline ours", "baseline library"
    images_timed: int
    median_seconds: float  # per call on images_timed images
    seconds_per_1000: float
    images_per_second: float
    times_copy: float  # per image, as a multiple of the copy roof's per-image time
    first_call_seconds: float  # the warm-up call: compilation (torch.compile, Triton) happens here


@dataclass
class Contender:
    name: str
    group: str
    images: int
    run: Callable[[], object]


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def contenders(x: torch.Tensor, per_image_sample: int, reference_sample: int, include_reference: bool) -> list[Contender]:
    batch = x.shape[0]
    out = torch.empty_like(x)
    sample = min(per_image_sample, batch)
    as_numpy = [image.permute(1, 2, 0).double().cpu().numpy() for image in x[:sample]]
    as_uint8 = [(image * 255).round().astype(np.uint8) for image in as_numpy]
    found = [
        Contender("copy_ (roof)", "roof", batch, lambda: out.copy_(x)),
        Contender("clone", "roof", batch, lambda: x.clone()),
        *(Contender(name, "lgs", batch, lambda path=path: path(x)) for name, path in _lgs_paths(x).items()),
        Contender("lgs numpy/scipy per image", "lgs", sample, lambda: [references.numpy_lgs(i) for i in as_numpy]),
    ]
    if include_reference:
        few = x[: min(reference_sample, batch)]
        found.append(Contender("lgs reference", "lgs", few.shape[0], lambda: lgs(few, backend="reference")))
    for spec, (library, call) in BASELINES.items():
        defense = defenses.get(spec)
        found.append(Contender(f"{spec} ours", "baseline ours", batch, lambda d=defense: d(x)))
        inputs = as_uint8 if spec.startswith("jpeg") else as_numpy
        found.append(Contender(f"{spec} {library}", "baseline library", sample, lambda c=call, i=inputs: [c(v) for v in i]))
    return found


def measure(
    found: list[Contender], device: torch.device, repeats: int, first_calls: dict[str, float] | None = None
) -> dict[str, list[float]]:
    """Interleaved rounds: every contender once per round, after one timed warm-up call each."""
    for contender in found:
        _synchronise(device)
        start = time.perf_counter()
        contender.run()
        _synchronise(device)
        if first_calls is not None:
            first_calls[contender.name] = time.perf_counter() - start
    times: dict[str, list[float]] = {contender.name: [] for contender in found}
    for _ in range(repeats):
        for contender in found:
            _synchronise(device)
            start = time.perf_counter()
            contender.run()
            _synchronise(device)
            times[contender.name].append(time.perf_counter() - start)
    return times


def machine() -> dict:
    import PIL

    scipy = optional_import("scipy", "bench's CPU references")
    skimage = optional_import("skimage", "bench's CPU references")

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                     "scikit-image": skimage.__version__, "pillow": PIL.__version__, "python": platform.python_version()},
    }  # fmt: skip


def photograph_batch(batch: int, size: int) -> torch.Tensor:
    """``[batch, 3, size, size]`` float32 in [0, 1]: the bundled photographs, repeated.

    Real images, not noise: iterative defenses (TV) stop when an image converges, so their cost
    depends on content.
    """
    from lgs_gpu.data import bundled

    photographs = bundled(size).images.float() / 255
    repeats = -(-batch // photographs.shape[0])
    return photographs.repeat(repeats, 1, 1, 1)[:batch].contiguous()


def run_bench(
    batch: int = 32, size: int = 299, repeats: int = 5, device: str = "cpu", per_image_sample: int = 4,
    reference_sample: int = 2, include_reference: bool = True,
) -> dict:  # fmt: skip
    """Time every contender on one ``[batch, 3, size, size]`` float32 batch; returns the report dict."""
    if batch < 1 or size < 1 or repeats < 1:
        raise ValueError(f"batch, size and repeats must be >= 1. Got {batch}, {size}, {repeats}")
    device = torch.device(device)
    x = photograph_batch(batch, size).to(device)
    found = contenders(x, per_image_sample, reference_sample, include_reference)
    first_calls: dict[str, float] = {}
    times = measure(found, device, repeats, first_calls)
    roof = statistics.median(times["copy_ (roof)"]) / batch
    rows = []
    for contender in found:
        median = statistics.median(times[contender.name])
        per_image = median / contender.images
        rows.append(Row(contender.name, contender.group, contender.images, median, per_image * 1000, 1 / per_image,
                        per_image / roof, first_calls[contender.name]))  # fmt: skip
    bandwidth = roofline.peak_bandwidth(device) or roofline.H100_BANDWIDTH
    report = {
        "machine": machine(),
        "settings": {"batch": batch, "size": size, "repeats": repeats, "device": str(device), "dtype": "float32",
                     "per_image_sample": min(per_image_sample, batch), "input": "bundled photographs, repeated"},  # fmt: skip
        "rows": [asdict(row) for row in rows],
        "memory": memory(x, reference_sample if include_reference else 0),
        "traffic_model": {
            "bandwidth_bytes_per_second": bandwidth,
            "bandwidth_source": "this device's peak" if device.type == "cuda" else "H100 SXM (no GPU here)",
            "rows": roofline.predicted_table(batch, size, gpu_only=device.type == "cuda", bandwidth=bandwidth),
        },
    }  # fmt: skip
    if device.type == "cuda":
        report["bandwidth"] = gpu_bandwidth(x)
    return report


def _lgs_paths(x: torch.Tensor) -> dict[str, Callable[[torch.Tensor], object]]:
    """The LGS paths that run on ``x``'s device, by contender name."""
    # Where each path runs natively (Triton's interpreter on CPU tensors is for tests, not timing).
    native = [name for name in ("torch", "compiled", "triton") if x.device.type in PATHS[name].devices or not PATHS[name].devices]
    return {f"lgs {name}": lambda images, name=name: lgs(images, backend=name) for name in native
            if PATHS[name].runs_on(x.device)}  # fmt: skip


def memory(x: torch.Tensor, reference_sample: int) -> list[dict]:
    """Peak memory each LGS path allocates during one call (its output included), as a multiple of the input.

    The input is the float32 batch (for the per-image NumPy LGS: one float32 image, whose
    float64 HWC copy it is handed is counted as input too, so its figure is comparable).
    """
    rows = []
    paths = _lgs_paths(x)  # a fresh dict: the reference joins it here
    if reference_sample:
        paths["lgs reference"] = lambda images: lgs(images[:reference_sample], backend="reference")
    for name, path in paths.items():
        images = x[:reference_sample] if name == "lgs reference" else x
        path(images)  # compiled / autotuned before measuring
        peak = peak_torch_bytes(lambda path=path, images=images: path(images), x.device)
        rows.append({"path": name, "peak_bytes": peak, "times_input": peak / images.nbytes})
    image = x[0].permute(1, 2, 0).double().cpu().numpy()
    peak = peak_numpy_bytes(lambda: references.numpy_lgs(image)) + image.nbytes
    rows.append({"path": "lgs numpy/scipy per image", "peak_bytes": peak, "times_input": peak / x[0].nbytes})
    return rows


def gpu_bandwidth(x: torch.Tensor) -> list[dict]:
    """CUDA only: ``triton.testing.do_bench`` of the copy and each LGS path; GB/s and fraction of peak.

    Bytes per path come from :func:`benchmarks/roofline.py.traffic` (what the path must move), so the
    figure says how close the path runs to the bandwidth limit, not how many bytes the hardware
    counted.
    """
    from triton.testing import do_bench

    batch, channels, height, width = x.shape
    models = {model.path: model for model in roofline.traffic(height, width)}
    peak = roofline.peak_bandwidth(x.device)
    out = torch.empty_like(x)
    paths = {"copy_ (roof)": lambda images: out.copy_(images), **_lgs_paths(x)}
    rows = []
    for name, path in paths.items():
        milliseconds = do_bench(lambda path=path: path(x), warmup=25, rep=200, return_mode="median")
        moved = models[name].bytes(batch, channels, height, width, x.element_size())
        rate = moved / (milliseconds / 1e3)
        rows.append({"path": name, "median_ms": milliseconds, "gigabytes_per_second": rate / 1e9,
                     "fraction_of_peak": rate / peak if peak else None, "bytes_model": moved})  # fmt: skip
    return rows


def sweep(batches: list[int], sizes: list[int], repeats: int, device: str) -> list[dict]:
    """Every LGS path of the device against the copy roof over batch sizes and image sizes."""
    results = []
    for size in sizes:
        for batch in batches:
            x = photograph_batch(batch, size).to(device)
            out = torch.empty_like(x)
            found = [Contender("copy_ (roof)", "roof", batch, lambda out=out, x=x: out.copy_(x))]
            found += [Contender(name, "lgs", batch, lambda path=path, x=x: path(x)) for name, path in _lgs_paths(x).items()]
            times = measure(found, x.device, repeats)
            roof = statistics.median(times["copy_ (roof)"])
            for contender in found[1:]:
                median = statistics.median(times[contender.name])
                results.append({"path": contender.name, "batch": batch, "size": size, "median_seconds": median,
                                "images_per_second": batch / median, "times_copy": median / roof})  # fmt: skip
    return results


def markdown(report: dict) -> str:
    settings, info = report["settings"], report["machine"]
    lines = [
        f"# lgs_gpu benchmark ({info['date']})",
        "",
        f"{settings['batch']}x3x{settings['size']}x{settings['size']} float32 on {settings['device']} "
        f"({info['processor']}, {info['cpu_count']} CPUs, {info['torch_threads']} torch threads, torch "
        f"{info['versions']['torch']}); medians of {settings['repeats']} interleaved rounds; per-image library "
        f"contenders timed on {settings['per_image_sample']} images.",
        "",
        "| contender | group | s per 1,000 images | images/s | x copy | first call (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(f"| {row['name']} | {row['group']} | {row['seconds_per_1000']:.3g} | {row['images_per_second']:.4g} "
                     f"| {row['times_copy']:.3g} | {row['first_call_seconds']:.3g} |")  # fmt: skip
    if report.get("memory"):
        lines += ["", "## Peak memory of one call (output included)", "", "| path | peak MB | x input |", "|---|---|---|"]
        for row in report["memory"]:
            lines.append(f"| {row['path']} | {row['peak_bytes'] / 1e6:.1f} | {row['times_input']:.2f} |")
    if report.get("bandwidth"):
        lines += ["", "## Bandwidth (triton.testing.do_bench, bytes from the traffic model)", "",
                  "| path | median ms | GB/s | fraction of peak |", "|---|---|---|---|"]  # fmt: skip
        for row in report["bandwidth"]:
            fraction = "n/a" if row["fraction_of_peak"] is None else f"{row['fraction_of_peak']:.1%}"
            lines.append(f"| {row['path']} | {row['median_ms']:.4g} | {row['gigabytes_per_second']:.4g} | {fraction} |")
    if report.get("traffic_model"):
        model = report["traffic_model"]
        lines += ["", "## Traffic model (benchmarks/roofline.py): full-size bytes per pixel and, predicted, their time at "
                  f"{model['bandwidth_bytes_per_second'] / 1e12:.2f} TB/s ({model['bandwidth_source']})", "",
                  "| path | bytes / pixel | x copy | predicted µs |", "|---|---|---|---|"]  # fmt: skip
        for row in model["rows"]:
            lines.append(f"| {row['path']} | {row['bytes_per_pixel']:.1f} | {row['times_copy']:.2f} | "
                         f"{row['predicted_microseconds']:.1f} |")  # fmt: skip
    if report.get("sweep"):
        lines += ["", "## Sweep", "", "| path | batch | size | ms | images/s | x copy |", "|---|---|---|---|---|---|"]
        for row in report["sweep"]:
            lines.append(f"| {row['path']} | {row['batch']} | {row['size']} | {row['median_seconds'] * 1e3:.3g} | "
                         f"{row['images_per_second']:.4g} | {row['times_copy']:.3g} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def figure(report: dict, path: Path) -> None:
    """Log-scale horizontal bars of seconds per 1,000 images (the paper's Figure 3 analogue)."""
    from lgs_gpu.app.report import pyplot

    plt = pyplot()

    rows = report["rows"]
    colours = {"roof": "grey", "lgs": "tab:green", "baseline ours": "tab:blue", "baseline library": "tab:orange"}
    figure, axis = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.2))
    axis.barh([row["name"] for row in rows], [row["seconds_per_1000"] for row in rows],
              color=[colours[row["group"]] for row in rows])  # fmt: skip
    axis.set_xscale("log")
    axis.invert_yaxis()
    axis.set_xlabel(f"seconds per 1,000 images of {report['settings']['size']}x{report['settings']['size']}x3 (log)")
    axis.set_title(f"{report['settings']['device']}: {report['machine']['processor']}", fontsize=9)
    save_figure(figure, path, dpi=110)


def write_report(report: dict, folder: str | Path) -> None:
    folder = Path(folder)
    columns = list(report["rows"][0])
    rows = ([row.get(column) for column in columns] for row in report["rows"])
    write_outputs(folder, "bench", report, columns, rows, markdown(report))
    figure(report, folder / "bench.png")


def _integers(text: str, name: str) -> list[int]:
    try:
        return [int(value) for value in text.split(",") if value.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{name} must be comma-separated integers. Got {text!r}") from error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output-dir", default="lgs-bench", help="folder for bench.json / .csv / .md / .png")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--per-image-sample", type=int, default=4, help="images per-image CPU libraries are timed on")
    parser.add_argument("--no-reference", action="store_true", help="skip the (slow) literal reference")
    parser.add_argument("--sweep-batches", type=lambda text: _integers(text, "--sweep-batches"), default=[],
                        help="e.g. 1,8,32,64: also sweep LGS over batch sizes...")  # fmt: skip
    parser.add_argument("--sweep-sizes", type=lambda text: _integers(text, "--sweep-sizes"), default=[],
                        help="...and image sizes, e.g. 224,299,512,1024")  # fmt: skip
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--allocator", choices=allocator.CHOICES, help="as the package's commands take it")
    args = parser.parse_args(argv)
    allocator.configure(args.allocator)  # before torch allocates anything, as the commands do
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    report = run_bench(args.batch, args.size, args.repeats, device, args.per_image_sample,
                       include_reference=not args.no_reference)  # fmt: skip
    if args.sweep_batches or args.sweep_sizes:
        report["sweep"] = sweep(args.sweep_batches or [args.batch], args.sweep_sizes or [args.size], args.repeats, device)
    write_report(report, args.output_dir)
    print(markdown(report))
    print(f"wrote {args.output_dir}/bench.json, bench.csv, bench.md, bench.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
