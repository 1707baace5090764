"""PatchCleanser double masking, batched: certified recovery of the label against one patch.

Xiang, Mahloujifar & Mittal, "PatchCleanser: Certifiably Robust Defense against Adversarial
Patches for Any Image Classifier", USENIX Security 2022. With the mask set of :mod:`.masks`:

* Round 1: the label under each single mask. All agree: that label (case I).
* Otherwise the majority is the most frequent label (ties: the larger class index). For each
  mask, in index order, whose label differs from the majority: if the label under that mask
  combined with every mask of the set (itself included) equals its own, return it (case II).
  If none does: the majority (case III).
* Certificate for a label: every two-mask prediction (every unordered pair, a mask with itself
  included) equals it. Then no patch within the threat model anywhere in the image can change
  the prediction: the patch lies inside some mask, so that mask's one- and two-mask predictions
  are the clean image's, and the algorithm can only return the certified label.

Masks go on the image first; a defense (e.g. LGS) may then run on each masked image before the
model (``defense=``). The other order would void the certificate: LGS normalises each image by
its global gradient maximum, so a patch could change pixels outside the mask that covers it.

Batching: round 1 sends the (image, mask) pairs through the model in chunks of at most
``batch_size``; round 2 runs only for the images that need it, one disagreeing mask per image at
a time as (image, mask, mask) triples, each image leaving at its first decision; certification
checks pairs in chunks, each image leaving at its first mismatch. A two-mask prediction is
computed at most once per image and shared by round 2 and the certificate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..core.validate import as_image_batch, is_integer, to_unit_float
from .masks import MaskGeometry, mask_geometry, mask_set

CASES = {1: "I (all masks agree)", 2: "II (a disagreeing mask survives every second mask)", 3: "III (majority)"}


@dataclass
class CertifiedPrediction:
    """What :meth:`PatchCleanser.predict_and_certify` found for a batch of ``B`` images."""

    labels: torch.Tensor  # [B] int64: the double-masking prediction
    certified: torch.Tensor  # [B] bool: no patch in the threat model can change `labels`
    cases: torch.Tensor  # [B] int64: 1, 2 or 3 (see CASES)
    forward_passes: torch.Tensor  # [B] int64: masked images of this image the model classified
    model_calls: int  # calls of the model for the whole batch
    images_through_model: int  # inputs the model classified for the whole batch (forward_passes.sum())
    # Per phase ("round 1", "round 2", "certification"): seconds, model calls, images through the model.
    phases: dict[str, dict[str, float]] = field(default_factory=dict)


def default_mask_value(model: nn.Module) -> torch.Tensor | None:
    """The [0, 1]-space colour a model's own normalisation maps to 0 (its ``mean``), if it has one.

    PatchCleanser masks with 0 after normalisation; for an :class:`lgs_gpu.models.Classifier`
    (``(x - mean) / std`` inside) that is ``mean``.
    """
    mean = getattr(model, "mean", None)
    if isinstance(mean, torch.Tensor) and mean.numel() in (1, 3):
        return mean.detach().reshape(-1)
    return None


class PatchCleanser(nn.Module):
    """PatchCleanser double masking around any classifier: an ``nn.Module`` giving labels.

    Args:
        model: ``[B, C, H, W]`` images in [0, 1] -> ``[B, classes]`` logits, in eval mode, whose
            output for an image does not depend on the rest of its batch.
        patch_size: the threat model's patch side (an int or ``(height, width)``); or
        patch_fraction: its share of the image area (``ceil(sqrt(f) * n)`` per axis). Neither: 2%.
        masks_per_axis: ``k`` (the paper's 6: 36 masks, at most 666 two-mask predictions).
        mask_value: the colour of covered pixels in the [0, 1] space the model receives: a float
            or one per channel. Default: the value the model's own normalisation maps to 0
            (:func:`default_mask_value`); other models must be given one.
        batch_size: most masked images per model call; by default 8 on CPU (larger batches leave the
            caches; docs/certify.md) and 128 on CUDA.
        defense: an optional image defense run on every masked image before the model (mask ->
            defense -> model, the only order that keeps the certificate).
        channels_last: hand the model channels-last batches (faster convolutions on many GPUs).
        precision: ``"float32"`` (default: the certificate's labels are the float32 model's) or
            ``"bfloat16"`` (CUDA autocast; faster, and the labels are the bfloat16 model's).

    Calling it on ``[B, C, H, W]`` or ``[C, H, W]`` images (uint8 or float in [0, 1], any
    device) returns the ``LongTensor[B]`` labels.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).eval()
        >>> cleanser = PatchCleanser(model, patch_size=4, masks_per_axis=3, mask_value=0.5)
        >>> result = cleanser.predict_and_certify(torch.rand(2, 3, 32, 32))
        >>> result.labels.shape, result.certified.dtype, len(cleanser.masks_for(32, 32))
        (torch.Size([2]), torch.bool, 9)
    """

    def __init__(
        self,
        model: nn.Module,
        patch_size: int | tuple[int, int] | None = None,
        masks_per_axis: int = 6,
        mask_value: float | Sequence[float] | torch.Tensor | None = None,
        *,
        patch_fraction: float | None = None,
        batch_size: int | None = None,
        defense: Callable[[torch.Tensor], torch.Tensor] | None = None,
        channels_last: bool = False,
        precision: str = "float32",
    ) -> None:
        super().__init__()
        if not callable(model):
            raise TypeError(f"model must be a callable classifier (an nn.Module). Got {type(model).__name__}")
        if patch_size is not None and patch_fraction is not None:
            raise ValueError("give patch_size or patch_fraction, not both")
        if not is_integer(masks_per_axis) or masks_per_axis < 1:
            raise ValueError(f"masks_per_axis must be an int >= 1. Got {masks_per_axis!r}")
        if batch_size is not None and (not is_integer(batch_size) or batch_size < 1):
            raise ValueError(f"batch_size must be an int >= 1 (or None: by device). Got {batch_size!r}")
        if mask_value is None:
            mask_value = default_mask_value(model)
            if mask_value is None:
                raise ValueError(
                    "mask_value is needed for this model: the [0, 1] colour that its normalisation maps to 0 "
                    "(e.g. the ImageNet mean (0.485, 0.456, 0.406) for torchvision models), a float or one per channel"
                )
        if precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16'. Got {precision!r}")
        value = torch.as_tensor(mask_value, dtype=torch.float32).detach().reshape(-1)
        if value.numel() < 1 or not torch.isfinite(value).all() or (value < 0).any() or (value > 1).any():
            raise ValueError(f"mask_value must be in [0, 1] (a float or one per channel). Got {mask_value!r}")
        self.model = model
        self.defense = defense
        self.patch_size = patch_size
        self.patch_fraction = patch_fraction
        self.masks_per_axis = masks_per_axis
        self.batch_size = batch_size
        self.channels_last = channels_last
        self.precision = precision
        self.register_buffer("mask_value", value, persistent=False)
        self._masks: dict[tuple, torch.Tensor] = {}

    def geometry_for(self, height: int, width: int) -> MaskGeometry:
        """The mask geometry for ``height x width`` images (mask size, stride, offsets)."""
        return mask_geometry((height, width), self.patch_size, self.masks_per_axis, patch_fraction=self.patch_fraction)

    def masks_for(self, height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
        """``[K, H, W]`` bool masks for ``height x width`` images (built once per size and device)."""
        key = (height, width, str(torch.device(device if device is not None else "cpu")))
        if key not in self._masks:
            self._masks[key] = mask_set(
                (height, width), self.patch_size, self.masks_per_axis, patch_fraction=self.patch_fraction, device=device
            )
        return self._masks[key]

    def extra_repr(self) -> str:
        fraction = self.patch_fraction if self.patch_fraction is not None else 0.02
        threat = f"patch_size={self.patch_size}" if self.patch_size is not None else f"patch_fraction={fraction}"
        return f"{threat}, masks_per_axis={self.masks_per_axis}, batch_size={self.batch_size}"

    def _masked(self, images: torch.Tensor, covered: torch.Tensor) -> torch.Tensor:
        """``images`` with the ``[B, H, W]`` ``covered`` pixels set to ``mask_value``, then the defense."""
        value = self.mask_value.to(images.device, images.dtype).view(1, -1, 1, 1)
        masked = torch.where(covered[:, None], value, images)
        return masked if self.defense is None else self.defense(masked)

    def _start(self, images: torch.Tensor) -> _Run:
        if getattr(self.model, "training", False):
            raise ValueError(
                "the model is in training mode: call model.eval() first (batch statistics would make batched and "
                "single predictions differ, and the certificate assumes they do not)"
            )
        batch, _ = as_image_batch(images, "images")
        if self.precision == "bfloat16" and not batch.is_cuda:
            raise ValueError(f"precision='bfloat16' runs on CUDA tensors; got images on {batch.device}")
        unit = to_unit_float(batch)
        channels, values = unit.shape[1], self.mask_value.numel()
        if values not in (1, channels):
            raise ValueError(f"mask_value has {values} values for {channels}-channel images: give 1 or {channels}")
        return _Run(self, unit, self.masks_for(unit.shape[2], unit.shape[3], unit.device))

    @torch.inference_mode()
    def predict_and_certify(self, images: torch.Tensor) -> CertifiedPrediction:
        """Labels, certificates (for those labels), cases and forward passes per image, at once.

        Args:
            images: ``[B, C, H, W]`` or ``[C, H, W]``, uint8 or float in [0, 1], any device.
        """
        run = self._start(images)  # round 1: every (image, mask) pair
        labels, cases = run.phase("round 2", run.double_masking)
        certified = run.phase("certification", lambda: run.certified(labels))
        return CertifiedPrediction(labels, certified, cases, run.passes, run.calls, int(run.passes.sum()), run.phases)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``LongTensor[B]`` double-masking labels (``[]`` for a single ``[C, H, W]`` image)."""
        labels, _ = self._start(images).double_masking()
        return labels[0] if images.dim() == 3 else labels

    @torch.inference_mode()
    def certify(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``BoolTensor[B]``: whether every two-mask prediction of each image equals its given label.

        With ground-truth labels this is "certified and correct" (certified accuracy is its mean).
        """
        run = self._start(images)
        labels = torch.as_tensor(labels, device=run.unit.device).reshape(-1).long()
        if labels.numel() != run.unit.shape[0]:
            raise ValueError(f"labels must have one entry per image ({run.unit.shape[0]}). Got {labels.numel()}")
        return run.certified(labels)


class _Run:
    """One batch through the algorithm: the masked-image classifier and every label it has computed."""

    def __init__(self, cleanser: PatchCleanser, unit: torch.Tensor, masks: torch.Tensor) -> None:
        self.cleanser, self.unit, self.masks = cleanser, unit, masks
        self.batch_size = cleanser.batch_size or (128 if unit.is_cuda else 8)
        batch, count, device = unit.shape[0], masks.shape[0], unit.device
        self.calls = 0
        self.passes = torch.zeros(batch, dtype=torch.long, device=device)
        # Two-mask labels, filled symmetrically as they are computed (-1: not yet); the diagonal
        # holds the one-mask labels, computed first for every image.
        self.pairs = torch.full((batch, count, count), -1, dtype=torch.long, device=device)
        self.phases: dict[str, dict[str, float]] = {}
        image = torch.arange(batch, device=device).repeat_interleave(count)
        mask = torch.arange(count, device=device).repeat(batch)
        labels, margins = self.phase("round 1", lambda: self._fill(image, mask, mask))
        self.one_mask = labels.view(batch, count)
        self.one_margin = margins.view(batch, count)  # top-1 minus runner-up logit

    def phase(self, name: str, work):
        """Run ``work()`` and record its seconds, model calls and images through the model under ``name``."""
        if self.unit.is_cuda:
            torch.cuda.synchronize(self.unit.device)
        calls, images, start = self.calls, int(self.passes.sum()), time.perf_counter()
        result = work()
        if self.unit.is_cuda:
            torch.cuda.synchronize(self.unit.device)
        self.phases[name] = {
            "seconds": time.perf_counter() - start,
            "model_calls": self.calls - calls,
            "images": int(self.passes.sum()) - images,
        }
        return result

    def _classify(
        self, image: torch.Tensor, first: torch.Tensor, second: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels of ``unit[image]`` under masks ``first | second`` and their logit margins over the
        runner-up, at most ``batch_size`` per model call."""
        cleanser, labels, margins = self.cleanser, [], []
        for start in range(0, image.numel(), self.batch_size):
            part = slice(start, start + self.batch_size)
            masked = cleanser._masked(self.unit[image[part]], self.masks[first[part]] | self.masks[second[part]])
            if cleanser.channels_last:
                masked = masked.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cleanser.precision == "bfloat16"):
                logits = cleanser.model(masked).float()
            if logits.dim() != 2:
                raise ValueError(f"the model must return [B, classes] logits. Got shape {tuple(logits.shape)}")
            finite = torch.isfinite(logits).all(dim=1)
            if not bool(finite.all()):  # argmax of NaN is 0 everywhere: every mask would agree, and certify
                broken = sorted(set(image[part][~finite].tolist()))
                raise ValueError(
                    f"the model returned non-finite logits (NaN or inf) for image(s) {broken} of this batch under "
                    "PatchCleanser's masks; no label or certificate can rest on them: check the model, its weights "
                    "and its inputs"
                )
            top2 = logits.topk(min(2, logits.shape[1]), dim=1)
            labels.append(top2.indices[:, 0])
            margins.append(top2.values[:, 0] - top2.values[:, -1])  # 0 for a one-class model: any constant orders alike
            self.calls += 1
        if not labels:
            return torch.empty(0, dtype=torch.long, device=self.unit.device), torch.empty(0, device=self.unit.device)
        return torch.cat(labels), torch.cat(margins)

    def _fill(
        self, image: torch.Tensor, first: torch.Tensor, second: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute and record the labels of (image, first, second) triples; returns them and their margins."""
        computed, margins = self._classify(image, first, second)
        self.pairs[image, first, second] = computed
        self.pairs[image, second, first] = computed
        self.passes.index_add_(0, image, torch.ones_like(image))
        return computed, margins

    def _lookup(self, image: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Labels of (broadcast) index tensors of triples, computing each unknown one once."""
        image, first, second = torch.broadcast_tensors(image, first, second)
        known = self.pairs[image, first, second]
        todo = known < 0
        if todo.any():
            # The same pair may be asked for twice (either order, or a clamped index): compute it once.
            low, high = torch.stack([first[todo], second[todo]]).sort(dim=0).values
            self._fill(*torch.unique(torch.stack([image[todo], low, high], dim=1), dim=0).unbind(1))
            known = self.pairs[image, first, second]
        return known

    def double_masking(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(labels, cases)``: round 1 done at construction, round 2 for the images that need it.

        A mask's second masks are checked a few at a time (as many as fit in a model call shared by
        the undecided images), and the mask is dropped at its first mismatch.
        """
        one_mask, count, device = self.one_mask, self.masks.shape[0], self.one_mask.device
        unanimous = (one_mask == one_mask[:, :1]).all(dim=1)
        majority = _majority(one_mask)
        labels = torch.where(unanimous, one_mask[:, 0], majority)
        cases = torch.where(unanimous, 1, 3)
        untried = (one_mask != majority[:, None]) & ~unanimous[:, None]  # disagreeing masks not yet tried
        current = torch.full_like(labels, -1)  # the disagreeing mask each image is checking (-1: none)
        position = torch.zeros_like(labels)  # how many of its second masks have matched so far
        while True:
            # Images without a current mask take their next untried disagreeing mask, in index order.
            idle = (current < 0) & untried.any(dim=1)
            if idle.any():
                chosen = untried[idle].float().argmax(dim=1)
                current[idle] = chosen
                untried[idle.nonzero().squeeze(1), chosen] = False
                position[idle] = 0
            who = (current >= 0).nonzero().squeeze(1)
            if who.numel() == 0:
                return labels, cases
            width = max(1, self.batch_size // who.numel())
            second = position[who, None] + torch.arange(width, device=device)  # [n, w]
            found = self._lookup(who[:, None], current[who, None], second.clamp(max=count - 1))
            own = one_mask[who, current[who]]
            mismatch = ((found != own[:, None]) & (second < count)).any(dim=1)
            finished = ~mismatch & (second[:, -1] >= count - 1)  # every second mask matched
            survived = who[finished]
            labels[survived] = own[finished]
            cases[survived] = 2
            untried[survived] = False
            current[survived] = -1
            current[who[mismatch]] = -1  # this mask fails: try the image's next one (or keep the majority)
            position[who] += width

    def certified(self, labels: torch.Tensor) -> torch.Tensor:
        """Whether every two-mask prediction of each image equals ``labels``; images stop at a mismatch.

        Each image checks its pairs most fragile first (the smallest sum of the two masks' round-1
        logit margins), so an image that is not certified usually leaves early; the order changes
        no answer, every pair is checked before an image is declared certified.
        """
        count = self.masks.shape[0]
        certified = (self.one_mask == labels[:, None]).all(dim=1)  # the diagonal pairs
        first, second = torch.triu_indices(count, count, offset=1, device=self.unit.device)  # k < j
        if first.numel() == 0:
            return certified
        order = (self.one_margin[:, first] + self.one_margin[:, second]).argsort(dim=1, stable=True)  # [B, pairs]
        position = torch.zeros_like(labels)
        while True:
            who = (certified & (position < first.numel())).nonzero().squeeze(1)
            if who.numel() == 0:
                return certified
            width = max(1, self.batch_size // who.numel())
            step = position[who, None] + torch.arange(width, device=labels.device)
            pair = order[who[:, None], step.clamp(max=first.numel() - 1)]  # [n, w]
            known = self._lookup(who[:, None], first[pair], second[pair])
            certified[who] = (known == labels[who, None]).all(dim=1)
            position[who] += width


def _majority(labels: torch.Tensor) -> torch.Tensor:
    """The most frequent label of each row of ``[B, K]``; ties go to the larger class index."""
    counts = (labels[:, :, None] == labels[:, None, :]).sum(dim=2)  # [B, K]: how often each entry's label occurs
    best = counts.amax(dim=1, keepdim=True)
    return torch.where(counts == best, labels, -1).amax(dim=1)
