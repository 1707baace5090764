"""This package's defenses through the ART adapter against ART's own preprocessors, on one batch.

Every contender gets the same ``[N, 3, S, S]`` float32 batch in [0, 1] (the bundled photographs,
repeated with horizontal flips up to ``--images``) through ART's numpy entry point
(``preprocessor(x) -> (x_defended, y)``), as an ART estimator with a numpy preprocessor calls it.
Ours: :class:`lgs_gpu.integrations.art.ARTPreprocessor` (``gradient="bpda"`` so any defense is
accepted; the forward pass is the same either way). ART's: ``JpegCompression`` (Pillow, one image
at a time), ``SpatialSmoothing`` (``scipy.ndimage.median_filter``) and ``TotalVarMin``.

``TotalVarMin`` is a different algorithm from our ``tvm`` (split-Bregman TV denoising, as
scikit-image's ``denoise_tv_bregman``): it keeps a random 30% of the pixels and fills the image
by L-BFGS-B over a TV objective, one channel of one image at a time. It is very slow, so it runs
on ``--tv-images`` images with ART's default ``max_iter`` (10, or ``--tv-max-iter``); the table
compares time per image and labels that row.

Times are medians of ``--repeats`` runs after one warm-up (p20-p80 in the JSON), ours and ART's
taking turns call by call. The "max |diff|"
column compares outputs where both compute the same thing (ART's JPEG truncates floats to 8 bits
where ours rounds, so one code apart is expected there).

Run: ``python benchmarks/art_speed.py [--images 16] [--size 224] [--repeats 5] [--device cpu]
[--tv-images 2] [--tv-max-iter 10] [--threads N] [-o results.json]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from lgs_gpu.data import bundled
from lgs_gpu.integrations.art import ARTPreprocessor


def timed(functions: dict, repeats: int, sync=lambda: None) -> tuple[dict, dict]:
    """Seconds of ``repeats`` calls of each function after one warm-up call each, and the last results.

    The contenders take turns call by call, so a burst of load from elsewhere on the machine hits
    both rather than one.
    """
    results = {name: function() for name, function in functions.items()}
    seconds: dict = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            sync()
            start = time.perf_counter()
            results[name] = function()
            sync()
            seconds[name].append(time.perf_counter() - start)
    return seconds, results


def summary(seconds: list[float], images: int) -> dict:
    ordered = sorted(seconds)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"median_s": statistics.median(seconds), "p20_s": pick(0.2), "p80_s": pick(0.8), "images": images,
            "ms_per_image": 1000 * statistics.median(seconds) / images}  # fmt: skip


def batch_of(count: int, size: int) -> np.ndarray:
    photos = bundled(size).images.float() / 255
    pool = torch.cat([photos, photos.flip(-1)])
    return pool[torch.arange(count) % len(pool)].contiguous().numpy()


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="batch size for every row but ART's TotalVarMin")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="where our defenses run (ART's numpy ones run on the CPU)")
    parser.add_argument("--tv-images", type=int, default=2, help="images for ART's TotalVarMin (slow)")
    parser.add_argument("--tv-max-iter", type=int, default=10, help="ART TotalVarMin's max_iter (its default: 10)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("-o", "--output", type=Path, help="write the rows and metadata as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import art
    from art.defences.preprocessor import JpegCompression, SpatialSmoothing, TotalVarMin

    device = torch.device(args.device)
    device_type = "gpu" if device.type == "cuda" else "cpu"
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    x = batch_of(args.images, args.size)
    x_tv = np.ascontiguousarray(x[: args.tv_images].transpose(0, 2, 3, 1))  # TotalVarMin reads [N, H, W, C]

    def ours(spec: str):
        preprocessor = ARTPreprocessor(spec, gradient="bpda", device_type=device_type)
        return lambda: preprocessor(x)[0]

    rows = []

    def row(name: str, ours_spec: str | None, theirs_name: str | None, theirs=None, theirs_images=None,
            compare: bool = True, note: str = "") -> None:  # fmt: skip
        entry = {"defense": name, "ours": ours_spec, "art": theirs_name, "note": note}
        functions = {}
        if ours_spec is not None:
            functions["ours"] = ours(ours_spec)
        if theirs is not None:
            functions["art"] = theirs
        seconds, outputs = timed(functions, args.repeats, sync)
        if "ours" in seconds:
            entry["ours_timing"] = summary(seconds["ours"], args.images)
        if "art" in seconds:
            entry["art_timing"] = summary(seconds["art"], theirs_images if theirs_images is not None else args.images)
        if "ours" in outputs and "art" in outputs:
            entry["speedup"] = entry["art_timing"]["ms_per_image"] / entry["ours_timing"]["ms_per_image"]
            if compare:
                entry["max_abs_diff"] = float(np.abs(np.asarray(outputs["ours"]) - np.asarray(outputs["art"])).max())
        rows.append(entry)
        print(f"  {name}: done", flush=True)

    print(f"{args.images} images of {args.size} px, float32 in [0, 1]; ours on {device}, {args.threads} threads")
    row("LGS (λ 2.3)", "lgs", None, note="ART has no counterpart")
    row("JPEG q30", "jpeg:30", "JpegCompression(quality=30)",
        lambda: JpegCompression(clip_values=(0, 1), quality=30, channels_first=True)(x)[0])  # fmt: skip
    row("JPEG q75", "jpeg:75", "JpegCompression(quality=75)",
        lambda: JpegCompression(clip_values=(0, 1), quality=75, channels_first=True)(x)[0])  # fmt: skip
    row("median 3x3", "median:3", "SpatialSmoothing(window_size=3)",
        lambda: SpatialSmoothing(window_size=3, channels_first=True, clip_values=(0, 1))(x)[0])  # fmt: skip
    row("median 5x5", "median:5", "SpatialSmoothing(window_size=5)",
        lambda: SpatialSmoothing(window_size=5, channels_first=True, clip_values=(0, 1))(x)[0])  # fmt: skip

    def art_tv():
        np.random.seed(0)
        return TotalVarMin(max_iter=args.tv_max_iter, clip_values=(0, 1))(x_tv)[0]

    row("TV (different algorithms!)", "tvm:10", f"TotalVarMin(max_iter={args.tv_max_iter})", art_tv, args.tv_images,
        compare=False, note=f"ours: split-Bregman TV, weight 10, <= 100 sweeps, {args.images} images; ART: "
        f"random-mask L-BFGS-B TV minimisation (prob 0.3, λ 0.5), {args.tv_images} images")  # fmt: skip

    meta = {
        "date": datetime.date.today().isoformat(), "commit": commit(), "machine": platform.machine(),
        "processor": platform.processor() or "unknown", "threads": args.threads, "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__, "art": art.__version__, "numpy": np.__version__,
        "images": args.images, "size": args.size, "repeats": args.repeats,
    }  # fmt: skip
    print(f"\n{meta['date']}, commit {meta['commit']}, {meta['machine']}, {args.threads} threads, ours on {device}, "
          f"torch {meta['torch']}, ART {meta['art']}\n")  # fmt: skip
    print("| defense | ours (spec) | ours ms/image | ART | ART ms/image | ART / ours | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for entry in rows:
        ours_ms = f"{entry['ours_timing']['ms_per_image']:.2f}" if "ours_timing" in entry else "—"
        theirs_ms = f"{entry['art_timing']['ms_per_image']:.2f}" if "art_timing" in entry else "—"
        if "art_timing" in entry and entry["art_timing"]["images"] != args.images:
            theirs_ms += f" ({entry['art_timing']['images']} images)"
        speedup = f"{entry['speedup']:.1f}x" if "speedup" in entry else "—"
        difference = f"{entry['max_abs_diff']:.3g}" if "max_abs_diff" in entry else "—"
        print(f"| {entry['defense']} | `{entry['ours']}` | {ours_ms} | {entry['art'] or '—'} | {theirs_ms} | {speedup} "
              f"| {difference} |")  # fmt: skip
    print()
    for entry in rows:
        if entry["note"]:
            print(f"- {entry['defense']}: {entry['note']}")
    if args.output is not None:
        args.output.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
