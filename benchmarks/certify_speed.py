"""PatchCleanser, batched, against the loop structure of its public reference code, on one workload.

The reference code (inspire-group/PatchCleanser, ``utils/defense.py`` and ``pc_certification.py``)
runs round 1 one mask per forward over the image batch, round 2 one image with one mask pair per
forward (stopping a mask at its first mismatch), and certifies every pair batched over the images
with no early exit. :func:`reference_loops` follows that structure with the same model, masks and
mask colour; this package's :class:`lgs_gpu.certify.PatchCleanser` batches (image, mask) pairs,
runs round 2 only where needed and stops certifying an image at its first mismatch.

Both contenders run the same model object on the same machine in one process, after a warm-up
that builds oneDNN's kernels for every batch size either uses. Workload (default): the 8 bundled photographs, EfficientNet-Lite0, 224 px, a 2% patch, 6 masks per
axis, float32. Prints, per phase, seconds, model calls and images through the model for both, the
speed-up, whether labels and certificates agree, and how many one-mask decisions sit within a small
logit margin (where batched and unbatched float arithmetic could disagree).

Run: ``python benchmarks/certify_speed.py [--patch 0.02] [--masks 6] [--device cuda] [--channels-last]
[--bfloat16] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from lgs_gpu.certify import PatchCleanser
from lgs_gpu.data import bundled
from lgs_gpu.models import load_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def reference_loops(model, images: torch.Tensor, masks: torch.Tensor, value: torch.Tensor, channels_last: bool) -> dict:
    """Labels, certificates and per-phase counts with the reference code's loop structure."""
    device, count = images.device, masks.shape[0]
    phases, calls = {}, {"n": 0, "images": 0}

    def forward(batch):
        calls["n"] += 1
        calls["images"] += batch.shape[0]
        return model(batch).argmax(dim=1)

    def timed(name, work):
        _sync(device)
        before, start = dict(calls), time.perf_counter()
        result = work()
        _sync(device)
        phases[name] = {"seconds": time.perf_counter() - start, "model_calls": calls["n"] - before["n"],
                        "images": calls["images"] - before["images"]}  # fmt: skip
        return result

    def masked(batch, covered):
        out = torch.where(covered, value, batch)
        return out.contiguous(memory_format=torch.channels_last) if channels_last else out

    one = timed("round 1", lambda: torch.stack([forward(masked(images, m)) for m in masks], dim=1))  # [B, K]

    def round_two():
        labels = []
        for index in range(images.shape[0]):
            row = one[index].tolist()
            if len(set(row)) == 1:
                labels.append(row[0])
                continue
            counts = {label: row.count(label) for label in set(row)}
            best = max(counts.values())
            majority = max(label for label, c in counts.items() if c == best)
            decided = majority
            for k in range(count):
                if row[k] == majority:
                    continue
                if all(int(forward(masked(images[index : index + 1], masks[k] | masks[j]))[0]) == row[k]
                       for j in range(count)):  # fmt: skip
                    decided = row[k]
                    break
            labels.append(decided)
        return torch.tensor(labels, device=device)

    labels = timed("round 2", round_two)

    def certification():
        certified = torch.ones(images.shape[0], dtype=torch.bool, device=device)
        for k in range(count):
            for j in range(k, count):
                certified &= forward(masked(images, masks[k] | masks[j])) == labels
        return certified

    certified = timed("certification", certification)
    return {"labels": labels, "certified": certified, "one_mask": one, "phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=float, default=0.02, help="patch share of the image area (default 0.02)")
    parser.add_argument("--masks", type=int, default=6)
    parser.add_argument("--batch-size", type=int, help="masked images per model call (ours; default by device)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--channels-last", action="store_true", help="channels-last model and inputs (both contenders)")
    parser.add_argument("--bfloat16", action="store_true", help="CUDA autocast (ours only: labels may then differ)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = load_model("efficientnet_lite0", device=device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    images = (bundled(model.input_size).images.float() / 255).to(device)
    cleanser = PatchCleanser(model, patch_fraction=args.patch, masks_per_axis=args.masks, batch_size=args.batch_size,
                             channels_last=args.channels_last, precision="bfloat16" if args.bfloat16 else "float32")  # fmt: skip
    masks = cleanser.masks_for(images.shape[2], images.shape[3], device)
    value = cleanser.mask_value.to(device).view(1, -1, 1, 1)
    geometry = cleanser.geometry_for(images.shape[2], images.shape[3])

    with torch.inference_mode():  # warm-up: oneDNN builds its kernels once per batch shape
        for size in range(1, max(len(images), cleanser.batch_size or 8) + 1):
            warm = images[:1].expand(size, -1, -1, -1)
            model(warm.contiguous(memory_format=torch.channels_last) if args.channels_last else warm.contiguous())
    start = time.perf_counter()
    ours = cleanser.predict_and_certify(images)
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reference = reference_loops(model, images, masks[:, None], value, args.channels_last)
    reference_seconds = time.perf_counter() - start

    with torch.inference_mode():
        logits = torch.stack([model(torch.where(m[None], value, images)) for m in masks], dim=1)  # [B, K, classes]
    top2 = logits.topk(2, dim=2).values
    close = int(((top2[..., 0] - top2[..., 1]) < 1e-3).sum())

    print(f"{len(images)} bundled photographs, efficientnet_lite0, {images.shape[-1]} px, patch {args.patch:.0%} "
          f"({geometry.patch_size[0]} px), {geometry.count} masks of {geometry.mask_size[0]} px, "
          f"{args.device}, {args.threads} threads{', channels_last' if args.channels_last else ''}"
          f"{', bfloat16' if args.bfloat16 else ', float32'}\n")  # fmt: skip
    print("| phase | reference loops: s | calls | images | batched: s | calls | images | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for phase in ("round 1", "round 2", "certification"):
        r, o = reference["phases"][phase], ours.phases[phase]
        speedup = r["seconds"] / o["seconds"] if o["seconds"] > 0 else float("inf")
        print(f"| {phase} | {r['seconds']:.2f} | {r['model_calls']} | {r['images']} | {o['seconds']:.2f} | "
              f"{o['model_calls']} | {o['images']} | {speedup:.1f}x |")  # fmt: skip
    total_calls = sum(p["model_calls"] for p in reference["phases"].values())
    total_images = sum(p["images"] for p in reference["phases"].values())
    print(f"| total | {reference_seconds:.2f} | {total_calls} | {total_images} | {ours_seconds:.2f} | "
          f"{ours.model_calls} | {ours.images_through_model} | {reference_seconds / ours_seconds:.1f}x |")
    agree_labels = bool(torch.equal(ours.labels, reference["labels"]))
    agree_certificates = bool(torch.equal(ours.certified, reference["certified"]))
    print(f"\nlabels agree: {agree_labels}; certificates agree: {agree_certificates}; certified: "
          f"{int(ours.certified.sum())} of {len(images)}; cases I/II/III: "
          f"{[int((ours.cases == c).sum()) for c in (1, 2, 3)]}; one-mask decisions within 1e-3 of the runner-up "
          f"logit: {close} of {logits.shape[0] * logits.shape[1]}")


if __name__ == "__main__":
    main()
