"""``lgs_gpu.evaluate``: the public import path of the evaluation, which lives in :mod:`lgs_gpu.app.evaluate`."""

from .app.evaluate import ATTACKS, EvaluationConfig, Unit, evaluate, plan, tables, validate

__all__ = ["ATTACKS", "EvaluationConfig", "Unit", "evaluate", "plan", "tables", "validate"]
