"""Calibrate LGS to a model: sweep λ, γ and the window size for a clean-accuracy budget (``lgs-gpu calibrate``).

For every setting of a grid (overlap = ``round(window / 3)``), the clean accuracy and the accuracy
on LaVAN images crafted *once* against the bare model (non-adaptive: the attacker does not know
LGS) are measured; with no ground truth, accuracy is agreement with the bare model's clean
prediction. The adversarial images come from :func:`.evaluate.adversarial_batch`, cached in the
output folder exactly as ``lgs-gpu evaluate`` caches them, so an evaluation in the same folder
reuses them. Each window size is one :func:`lgs_gpu.smoothing.lgs_sweep` per batch: one gradient for
every (λ, γ) pair.

The recommendation is the setting with the best robust accuracy whose clean cost (the bare
model's clean accuracy minus the setting's, in points) stays within the budget; ties go to the
better clean accuracy, then to the paper's defaults. Its accuracy under the exact-gradient and
BPDA attacks (LaVAN through the setting itself) is reported beside it: calibration against a
non-adaptive attacker is not robustness. Every rate comes with n and a 95% Wilson interval.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .. import defenses
from ..core.parameters import DEFAULT_SMOOTHING_FACTOR, DEFAULT_THRESHOLD, DEFAULT_WINDOW_SIZE
from ..core.transform import spec_number
from ..core.validate import is_integer
from ..smoothing import lgs_sweep
from . import evaluate, runs
from .configs import CalibrationConfig
from .report import pyplot, save_figure, write_outputs


def overlap_for(window_size: int) -> int:
    """The overlap calibrated windows use: a third of the window (5 for the paper's 15)."""
    return round(window_size / 3)


def setting_spec(smoothing_factor: float, threshold: float, window_size: int) -> str:
    """A defense spec usable everywhere (``lgs-gpu evaluate --defenses``, :func:`lgs_gpu.defenses.get`).

    Example:
        >>> setting_spec(2.3, 0.1, 15)
        'lgs:2.3,threshold=0.1,window=15,overlap=5'
        >>> setting_spec(1e6, 1.23456789, 9)
        'lgs:1e06,threshold=1.23456789,window=9,overlap=3'
    """
    return (
        f"lgs:{spec_number(float(smoothing_factor))},threshold={spec_number(float(threshold))},window={window_size},"
        f"overlap={overlap_for(window_size)}"
    )


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a rate (sensible at a handful of images, unlike ±1.96·SE).

    Example:
        >>> [round(bound, 3) for bound in wilson_interval(8, 8)]
        [0.676, 1.0]
    """
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, trials]. Got {successes} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    rate = successes / trials
    centre = (rate + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def pareto_front(settings: list[dict]) -> list[str]:
    """Specs of the settings no other setting beats on both clean and robust accuracy.

    Example:
        >>> pareto_front([{"spec": "a", "clean_accuracy": 1.0, "robust_accuracy": 0.2},
        ...               {"spec": "b", "clean_accuracy": 0.5, "robust_accuracy": 0.6},
        ...               {"spec": "c", "clean_accuracy": 0.5, "robust_accuracy": 0.4}])
        ['a', 'b']
    """

    def dominates(a: dict, b: dict) -> bool:
        no_worse = a["clean_accuracy"] >= b["clean_accuracy"] and a["robust_accuracy"] >= b["robust_accuracy"]
        better = a["clean_accuracy"] > b["clean_accuracy"] or a["robust_accuracy"] > b["robust_accuracy"]
        return no_worse and better

    front = [s for s in settings if not any(dominates(other, s) for other in settings)]
    return [s["spec"] for s in sorted(front, key=lambda s: (-s["clean_accuracy"], -s["robust_accuracy"]))]


def recommend(settings: list[dict], bare_clean_accuracy: float, budget: float) -> str | None:
    """The best robust accuracy within the clean budget; ties: better clean, then the paper's defaults.

    ``None`` when no setting costs at most ``budget`` of clean accuracy.
    """
    # A hair of slack: 1 - 7/8 and 0.125 differ in their last bits.
    fits = [s for s in settings if bare_clean_accuracy - s["clean_accuracy"] <= budget + 1e-9]
    if not fits:
        return None

    def from_paper(s: dict) -> tuple[int, float]:  # parameters changed, then relative distance
        pairs = (
            (s["smoothing_factor"], DEFAULT_SMOOTHING_FACTOR),
            (s["threshold"], DEFAULT_THRESHOLD),
            (s["window_size"], DEFAULT_WINDOW_SIZE),
        )
        return sum(value != paper for value, paper in pairs), sum(abs(value - paper) / paper for value, paper in pairs)

    best = min(fits, key=lambda s: (-s["robust_accuracy"], -s["clean_accuracy"], *from_paper(s)))
    return best["spec"]


def validate(config: CalibrationConfig) -> None:
    """Check the grid, budget and attack settings before any work (``ValueError`` naming what is wrong)."""
    if not 0 <= config.budget <= 1:
        raise ValueError(f"budget must be in [0, 1] (a fraction of accuracy: 0.05 = 5 points). Got {config.budget}")
    for name in ("smoothing_factors", "thresholds", "window_sizes"):
        if not getattr(config, name):
            raise ValueError(f"{name} needs at least one value")
    if any(not math.isfinite(value) or value < 0 for value in config.smoothing_factors):
        raise ValueError(f"smoothing factors (λ) must be finite and >= 0. Got {config.smoothing_factors}")
    if any(math.isnan(value) for value in config.thresholds):
        raise ValueError("thresholds (γ) must not be NaN")
    if any(not is_integer(size) or size < 2 for size in config.window_sizes):
        raise ValueError(f"window sizes must be integers >= 2. Got {config.window_sizes}")
    for name in ("smoothing_factors", "thresholds", "window_sizes"):
        values = getattr(config, name)
        if len(set(values)) != len(values):  # each setting is scored once: a repeat would count twice
            raise ValueError(f"{name} repeats a value: {values}")
    evaluate.validate(_evaluation(config))


def _evaluation(config: CalibrationConfig) -> evaluate.EvaluationConfig:
    """The evaluation whose LaVAN unit (and cache, and conditions) calibration shares."""
    shared = ("output_dir", "eot_samples", "seed", "batch_size", "device", "threads")
    return evaluate.EvaluationConfig(
        **config.inputs(),
        **{name: getattr(config, name) for name in shared},
        defenses=["none"],
        attacks=["lavan"],
        lavan_fractions=[config.patch_fraction],
        lavan_iterations=config.iterations,
        bpda_fraction=config.patch_fraction,
    )


def _rate(correct: int, total: int) -> dict:
    low, high = wilson_interval(correct, total)
    return {"accuracy": correct / total if total else float("nan"), "n": total, "ci95": [round(low, 4), round(high, 4)]}


def calibrate(config: CalibrationConfig, progress: bool = True) -> dict:
    """Run (or resume: the attacks are cached) a calibration; returns what ``calibration.json`` holds.

    Example:
        >>> from lgs_gpu.app.configs import QUICK_CALIBRATION
        >>> result = calibrate(CalibrationConfig(output_dir="out", **QUICK_CALIBRATION))  # doctest: +SKIP
        >>> result["recommended"]  # doctest: +SKIP
        'lgs:1,threshold=0.2,window=15,overlap=5'
    """
    validate(config)
    evaluation = _evaluation(config)
    attack = evaluate.lavan_unit(config.patch_fraction, tuple(evaluation.defenses))  # as evaluate names and caches it
    with runs.session(config, evaluate.conditions(evaluation), shard=False) as run:
        model = run.model
        bare_counts, counts, timing = [0, 0], {}, {"defense_seconds": 0.0, "model_seconds": 0.0}
        batches = []  # what each batch held, as a record would
        work = run.work(
            config.batch_size, [attack], lambda unit: unit.key, f"LaVAN {attack.key} (cached) and sweep", progress
        )
        for batch, labels, identity, _ in work:
            batches.append({"images": batch.names, "skipped": batch.skipped, "notes": batch.notes})
            if not batch.names:
                continue
            labels = labels.to(config.device)
            clean = batch.images.to(config.device)
            adversarial = evaluate.adversarial_batch(evaluation, attack, model, batch, labels, identity)[0]
            for position, part in enumerate((clean, adversarial)):
                bare_counts[position] += int((model.predict(part, config.batch_size)[0] == labels).sum())
            _sweep_batch(config, model, clean, adversarial, labels, counts, timing)
        images = run.seen(batches)
        total = images["count"]
        bare = {"clean": _rate(bare_counts[0], total), "robust": _rate(bare_counts[1], total)}
        settings = _settings(counts, total, bare["clean"]["accuracy"])
        timing = {key: round(value, 3) for key, value in timing.items()} | {"settings": len(settings)}
        recommended = recommend(settings, bare["clean"]["accuracy"], config.budget)
        adaptive = _adaptive(evaluation, run, recommended, progress) if recommended and config.adaptive else None
        result = {
            "config": asdict(config),
            "conditions": run.conditions,
            "model": {"name": model.name, "input_size": model.input_size, "weights": model.weights},
            "images": images,
            "label_source": runs.label_source(run.images),
            "attack": {"unit": attack.key, "iterations": config.iterations, "view": "bare model (non-adaptive)"},
            "bare": bare,
            "settings": settings,
            "pareto": pareto_front(settings),
            "recommended": recommended,
            "budget_points": 100 * config.budget,
            "adaptive": adaptive,
            "timing": timing,
        }
        write_calibration(result, Path(config.output_dir))
        return result


def _sweep_batch(config, model, clean, adversarial, labels, counts: dict, timing: dict) -> None:
    """Add one batch's clean and robust hits of every grid setting to ``counts``: one :func:`lgs_sweep` per window size."""
    both = torch.cat([clean, adversarial])  # one gradient for the clean and attacked images
    truth = labels.repeat(2)
    for window_size in config.window_sizes:
        started = time.perf_counter()
        for smoothing_factor, threshold, defended in lgs_sweep(
            both, config.smoothing_factors, config.thresholds, window_size, overlap_for(window_size)
        ):
            defended_at = time.perf_counter()
            timing["defense_seconds"] += defended_at - started
            hits = model.predict(defended, config.batch_size)[0] == truth
            count = counts.setdefault((smoothing_factor, threshold, window_size), [0, 0])
            count[0] += int(hits[: len(clean)].sum())
            count[1] += int(hits[len(clean) :].sum())
            started = time.perf_counter()
            timing["model_seconds"] += started - defended_at


# What describes a grid setting, in the order of its entries and of calibration.csv's first columns.
_SETTING = ("spec", "smoothing_factor", "threshold", "window_size", "overlap", "n")


def _settings(counts: dict, total: int, bare_clean_accuracy: float) -> list[dict]:
    """Every grid setting's clean and robust accuracy from its hits over ``total`` images, in grid order."""
    settings = []
    for (smoothing_factor, threshold, window_size), hits in counts.items():
        spec = setting_spec(smoothing_factor, threshold, window_size)
        described = (spec, smoothing_factor, threshold, window_size, overlap_for(window_size), total)
        setting = dict(zip(_SETTING, described, strict=True))
        for name, correct in zip(("clean", "robust"), hits, strict=True):
            rate = _rate(correct, total)
            setting[f"{name}_accuracy"], setting[f"{name}_ci95"] = rate["accuracy"], rate["ci95"]
        setting["clean_cost_points"] = round(100 * (bare_clean_accuracy - setting["clean_accuracy"]), 4)
        settings.append(setting)
    return settings


def _adaptive(evaluation, run: runs.Session, spec: str, progress: bool) -> dict:
    """The recommended setting under LaVAN through its exact gradient and through BPDA (cached like evaluate's)."""
    defense, fraction = defenses.get(spec), evaluation.bpda_fraction
    # The patch size is in the key: evaluate's own adaptive units (at its --bpda-fraction) are not these.
    units = [
        evaluate.lavan_unit(fraction, (spec,), view, spec, key=f"{view}-{100 * fraction:g}%-{spec}")
        for view in ("exact", "bpda")
    ]
    correct, total = dict.fromkeys(("exact", "bpda"), 0), 0
    work = run.work(
        evaluation.batch_size, units, lambda unit: unit.key, f"exact and BPDA LaVAN through {spec}", progress
    )
    for batch, labels, identity, unit in work:
        if not batch.names:
            continue
        labels = labels.to(evaluation.device)
        total += len(batch.names) if unit is units[0] else 0
        adversarial, _ = evaluate.adversarial_batch(evaluation, unit, run.model, batch, labels, identity)
        with torch.no_grad():
            predicted = run.model.predict(defense(adversarial), evaluation.batch_size)[0]
        correct[unit.view] += int((predicted == labels).sum())
    return {view: _rate(hits, total) for view, hits in correct.items()}


def _interval(row: dict, prefix: str = "") -> str:
    """``row``'s ``<prefix>accuracy`` with its ``<prefix>ci95`` interval, in percent."""
    rate, (low, high) = row[f"{prefix}accuracy"], row[f"{prefix}ci95"]
    return f"{100 * rate:.1f}% [{100 * low:.0f}–{100 * high:.0f}]"


def markdown(result: dict) -> str:
    """``calibration.md``: the recommendation, the Pareto front and every setting."""
    bare, n = result["bare"], result["images"]["count"]
    lines = [
        f"# LGS calibration: {result['model']['name']} on {n} images ({result['label_source']})",
        "",
        f"Robust accuracy: LaVAN {result['attack']['unit']} ({result['attack']['iterations']} steps) crafted against "
        f"the bare model (non-adaptive). Rates with their 95% Wilson interval, n = {n}.",
        "",
        f"Bare model: clean {_interval(bare['clean'])}, robust {_interval(bare['robust'])}. "
        f"Budget: {result['budget_points']:g} points of clean accuracy.",
        "",
    ]
    recommended, by_spec = result["recommended"], {s["spec"]: s for s in result["settings"]}
    if recommended is None:
        lines.append("**No setting of the grid stays within the budget.**")
    else:
        chosen = by_spec[recommended]
        lines.append(
            f"**Recommended: `{recommended}`**: clean {_interval(chosen, 'clean_')}, "
            f"robust (non-adaptive) {_interval(chosen, 'robust_')}."
        )
        if result["adaptive"]:
            lines += ["", "The same setting against attackers who know it (LaVAN through it):", ""]
            lines += [
                f"- {name}: accuracy {_interval(result['adaptive'][view])}"
                for name, view in (("exact gradient", "exact"), ("BPDA", "bpda"))
            ]
    lines += [
        "",
        "## Pareto front (clean vs robust)",
        "",
        "| setting | clean | robust | clean cost (points) |",
        "|---|---|---|---|",
    ]
    for spec in result["pareto"]:
        s = by_spec[spec]
        lines.append(
            f"| `{spec}` | {_interval(s, 'clean_')} | {_interval(s, 'robust_')} | {s['clean_cost_points']:g} |"
        )
    timing = result["timing"]
    lines += [
        "",
        f"{timing['settings']} settings scored: {timing['defense_seconds']:.1f} s in LGS sweeps, "
        f"{timing['model_seconds']:.1f} s in model forwards. Every setting: calibration.csv.",
        "",
    ]
    return "\n".join(lines)


def write_calibration(result: dict, folder: Path) -> None:
    """``calibration.json`` / ``.csv`` / ``.md`` and ``calibration.png``, each written atomically."""
    columns = [*_SETTING, "clean_accuracy", "robust_accuracy", "clean_cost_points"]
    rows = ([setting.get(column) for column in columns] for setting in result["settings"])
    write_outputs(folder, "calibration", result, columns, rows, markdown(result))
    _plot(result, folder / "calibration.png")


def _plot(result: dict, path: Path) -> None:
    figure, axes = pyplot().subplots(figsize=(6, 4.5))
    by_spec, bare, recommended = {s["spec"]: s for s in result["settings"]}, result["bare"], result["recommended"]

    def points(settings) -> tuple[list[float], list[float]]:  # clean accuracy across, robust up
        return [s["clean_accuracy"] for s in settings], [s["robust_accuracy"] for s in settings]

    axes.scatter(*points(result["settings"]), s=14, alpha=0.4, label="grid settings")
    axes.plot(*points([by_spec[spec] for spec in result["pareto"]]), "o-", color="C1", label="Pareto front")
    axes.scatter([bare["clean"]["accuracy"]], [bare["robust"]["accuracy"]], marker="x", color="k", label="bare model")
    if recommended:
        axes.scatter(*points([by_spec[recommended]]), marker="*", s=180, color="C3", label=f"recommended {recommended}")
    budget_line = bare["clean"]["accuracy"] - result["budget_points"] / 100
    axes.axvline(budget_line, color="grey", linestyle="--", linewidth=1, label="clean budget")
    axes.set_xlabel(f"clean accuracy (n = {result['images']['count']})")
    axes.set_ylabel("accuracy under LaVAN (non-adaptive)")
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.legend(fontsize=7, loc="lower left")
    save_figure(figure, path, dpi=110)


def read_recommended(path: str | Path) -> str:
    """The recommended spec of a ``calibration.json`` (``ValueError`` if it has none)."""
    try:
        recommended = json.loads(Path(path).read_text())["recommended"]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{path} is not a readable calibration.json with a 'recommended' field: {error}") from error
    if not recommended:
        raise ValueError(f"{path} recommends nothing: no setting of its grid stayed within its budget")
    return recommended
