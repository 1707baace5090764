"""The interpreter probe says whether interpreted Triton can run the LGS kernels, and auto never picks it."""

import pytest
import torch

from lgs_gpu import backend_info, lgs

pytest.importorskip("triton")


def test_the_probe_agrees_with_a_real_launch():
    from lgs_gpu.paths.triton_path import interpreting
    from lgs_gpu.paths.triton_path.interpreter_check import interpreter_unusable_reason
    from lgs_gpu.paths.triton_path.kernels import stages

    if not interpreting():
        pytest.skip("the probe is for TRITON_INTERPRET=1")
    reason = interpreter_unusable_reason()
    x = torch.rand(1, 3, 20, 20)
    if reason is None:
        assert stages(x, 2.3, 0.1, 15, 5, ("output",))["output"].shape == x.shape
        assert backend_info("cpu")["triton"].startswith("interpreted on CPU")
    else:
        assert "triton-lang/triton#9171" in reason
        with pytest.raises(Exception, match="0-dimensional"):  # what the probe predicted
            stages(x, 2.3, 0.1, 15, 5, ("output",))
        assert backend_info("cpu")["triton"] == reason
        with pytest.raises(ValueError, match="triton-lang/triton#9171"):
            lgs(x, backend="triton")
    assert backend_info("cpu")["auto"] != "triton"
