"""Adapters that let other libraries use this package's defenses; each needs its optional extra.

* :class:`ARTPreprocessor` (:mod:`lgs_gpu.integrations.art`): any defense spec or module as an
  Adversarial Robustness Toolbox ``PreprocessorPyTorch``; ``pip install lgs-gpu[art]``.

Nothing is imported until asked for, so ``import lgs_gpu.integrations`` works without the extras;
``from lgs_gpu.integrations import ARTPreprocessor`` without ART raises an ``ImportError`` that
names the extra to install.
"""

from __future__ import annotations

__all__ = ["ARTPreprocessor"]


def __getattr__(name: str):
    if name == "ARTPreprocessor":
        from .art import ARTPreprocessor

        return ARTPreprocessor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
