"""pytest-benchmark suite: every `python benchmarks/bench.py` contender, one benchmark each.

    python -m pytest benchmarks/test_speed.py --benchmark-only [--benchmark-json out.json]

Sizes come from LGS_BENCH_BATCH / LGS_BENCH_SIZE (default 8 x 299 px). Not part of the test
suite (``testpaths = tests``); `python benchmarks/bench.py` is the interleaved, report-writing runner.
"""

import os

import pytest
import torch
from bench import contenders, photograph_batch

BATCH = int(os.environ.get("LGS_BENCH_BATCH", "8"))
SIZE = int(os.environ.get("LGS_BENCH_SIZE", "299"))
CONTENDERS = contenders(photograph_batch(BATCH, SIZE), per_image_sample=2, reference_sample=1, include_reference=True)


@pytest.mark.parametrize("contender", CONTENDERS, ids=[c.name for c in CONTENDERS])
def test_speed(benchmark, contender):
    benchmark.extra_info.update(group=contender.group, images=contender.images, torch_threads=torch.get_num_threads())
    benchmark(contender.run)
