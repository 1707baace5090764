"""How an attacker sees a defense: not at all, through its exact gradient, or through BPDA.

* ``"none"``: the non-adaptive attacker (the paper's setting): patches are made against the bare
  model and then defended.
* ``"exact"``: differentiate through the defense itself; for LGS that is the exact torch path
  (the pass/fail of windows is piecewise constant, the suppression ``x·(1 − clip(λĝ))`` is not).
  Later work (Chiang et al., ICLR 2020) reports LGS falls to such attacks.
* ``"bpda"``: the defense's exact forward output with an identity backward pass
  (:class:`~lgs_gpu.attacks.BPDA`); works for every defense.
"""

from __future__ import annotations

from torch import nn

from ..smoothing import LocalGradientsSmoothing
from .bpda import BPDA

ATTACKER_VIEWS = ("none", "exact", "bpda")


def attacker_view(defense: nn.Module | None, view: str) -> nn.Module | None:
    """The module an attack should put in its loop for ``defense`` seen as ``view``.

    Example:
        >>> from lgs_gpu.defenses import get
        >>> attacker_view(get("jpeg:30"), "bpda").spec
        'bpda(jpeg:30)'
    """
    if view not in ATTACKER_VIEWS:
        raise ValueError(f"attacker view must be one of {', '.join(ATTACKER_VIEWS)}. Got {view!r}")
    if defense is None or view == "none" or getattr(defense, "name", "") == "none":
        return None
    if view == "bpda":
        return BPDA(defense)
    if not getattr(defense, "differentiable", True):
        spec = getattr(defense, "spec", type(defense).__name__)
        raise ValueError(f"{spec!r} is not differentiable: an exact-gradient attack cannot run; use view 'bpda'")
    if isinstance(defense, LocalGradientsSmoothing):
        # the Triton kernels have no backward pass: the adaptive attacker uses the exact torch path
        return LocalGradientsSmoothing(
            defense.smoothing_factor, defense.threshold, defense.window_size, defense.overlap, backend="torch"
        )
    return defense
