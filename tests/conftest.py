"""Shared fixtures. Triton kernels run interpreted on CPU tensors in this suite, except in the CUDA tier."""

import os

# Must be set before lgs_gpu.smoothing.backends.triton_path.kernels (which defines the kernels) is imported.
# The CUDA tier (LGS_GPU_CUDA_TIER=1) needs them compiled: the root conftest.py says the same.
if os.environ.get("LGS_GPU_CUDA_TIER") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib.util  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("LGS_GPU_CUDA_TIER") != "1" and importlib.util.find_spec("triton") is not None:
    # Define the kernels now, interpreted: a test that sets TRITON_INTERPRET=0 for a while (to see
    # the CUDA-only message) must not be the first to import them, or they would be compiled.
    import lgs_gpu.smoothing.backends.triton_path.kernels  # noqa: E402, F401

from lgs_gpu.data import bundled_photographs  # noqa: E402


@pytest.fixture(scope="session")
def photographs() -> dict[str, torch.Tensor]:
    """The bundled photographs at full resolution, ``[3, H, W]`` uint8."""
    return bundled_photographs()


@pytest.fixture(scope="session")
def photo_batch() -> torch.Tensor:
    """Four real photographs at 224 px with a planted random-noise patch in two of them, uint8."""
    batch = torch.stack(list(bundled_photographs(224).values()))
    generator = torch.Generator().manual_seed(0)
    batch[0, :, 10:50, 150:190] = torch.randint(0, 256, (3, 40, 40), generator=generator, dtype=torch.uint8)
    batch[2, :, 170:214, 20:64] = torch.randint(0, 256, (3, 44, 44), generator=generator, dtype=torch.uint8)
    return batch


@pytest.fixture(autouse=True)
def _interpreter_setting_is_left_alone():
    """A test (or a module it imports) that changes ``TRITON_INTERPRET`` breaks every later test that
    launches kernels on CPU tensors, far from the cause: fail the test that did it instead."""
    before = os.environ.get("TRITON_INTERPRET")
    yield
    after = os.environ.get("TRITON_INTERPRET")
    assert after == before, f"TRITON_INTERPRET changed during this test: {before!r} -> {after!r}"


def _interpreter_reason() -> str | None:
    """Why interpreted Triton cannot run the kernels here (a known upstream bug), or ``None``."""
    if os.environ.get("TRITON_INTERPRET") != "1" or importlib.util.find_spec("triton") is None:
        return None
    from lgs_gpu.smoothing.backends.triton_path.interpreter_check import interpreter_unusable_reason

    return interpreter_unusable_reason()


def _hit_the_broken_interpreter(error: BaseException) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = str(error)
        # The interpreter's own failure, or the refusal that names it (lgs(x, backend="triton") on CPU), not
        # an assertion message that merely quotes the reason.
        interpreter = "only 0-dimensional arrays can be converted to Python scalars" in text
        refusal = isinstance(error, ValueError) and "backend='triton' is not available" in text
        if interpreter or refusal:
            return True
        error = error.__cause__ or error.__context__
    return False


def _skip_where_the_interpreter_is_broken():
    """A test that fails only because this Triton's interpreter cannot run the kernels (the probe of
    lgs_gpu.smoothing.backends.triton_path.interpreter_check failed: triton 3.6 with NumPy >= 2.4) is skipped with
    that reason; any other failure, and every failure where the probe passes, stays a failure."""
    try:
        return (yield)
    except Exception as error:
        reason = _interpreter_reason()
        if reason is not None and _hit_the_broken_interpreter(error):
            pytest.skip(reason)
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _skip_where_the_interpreter_is_broken())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _skip_where_the_interpreter_is_broken())
