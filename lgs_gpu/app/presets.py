"""Names and presets the commands offer, in a module that imports nothing heavy.

``lgs-gpu --help`` and argument errors read these without importing torch. The ``--quick``
presets are keyed by the fields of :class:`.evaluate.EvaluationConfig` and
:class:`.calibrate.CalibrationConfig`; each applies only where its flag was not given.
"""

from __future__ import annotations

from ..core.parameters import DEFAULT_SMOOTHING_FACTOR

# The attack settings an evaluation can run (see evaluate.plan()); --attacks takes these names.
ATTACKS = ("lavan", "patch", "bpda", "adaptive")
DEFAULT_LGS_SPEC = f"lgs:{DEFAULT_SMOOTHING_FACTOR:g}"

# The README's small run: 4 photographs, LaVAN 2% and 4% at 100 steps, no patch, a short defense list.
QUICK_EVALUATION = {
    "limit": 4,
    "lavan_iterations": 100,
    "defenses": ["none", "lgs:2.3", "lgs:1.5", "median:3", "gaussian:5", "jpeg:30", "tvm:10", "bitdepth:3"],
    "attacks": ["lavan", "bpda", "adaptive"],
    "lavan_fractions": [0.02, 0.04],
    "bpda_defenses": ["jpeg:30", "median:3"],
}
# A 3 x 3 grid at 15-pixel windows, LaVAN at 100 steps.
QUICK_CALIBRATION = {
    "smoothing_factors": [1.0, 2.3, 4.0],
    "thresholds": [0.1, 0.2, 0.3],
    "window_sizes": [15],
    "iterations": 100,
}
