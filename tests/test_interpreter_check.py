"""The interpreter probe says whether interpreted Triton can run the LGS kernels, and auto never picks it."""

import pytest
import torch

from lgs_gpu import backend_info, lgs

pytest.importorskip("triton")


def test_the_probe_agrees_with_a_real_launch():
    from lgs_gpu.smoothing.backends.triton_path import interpreting
    from lgs_gpu.smoothing.backends.triton_path.interpreter_check import interpreter_unusable_reason
    from lgs_gpu.smoothing.backends.triton_path.kernels import stages

    if not interpreting():
        pytest.skip("the probe is for TRITON_INTERPRET=1")
    reason = interpreter_unusable_reason()
    x = torch.rand(1, 3, 20, 20)
    if reason is None:
        assert stages(x, 2.3, 0.1, 15, 5, ("output",))["output"].shape == x.shape
        assert backend_info("cpu")["triton"].startswith("interpreted on CPU")
    else:
        with pytest.raises(Exception, match="0-dimensional"):  # what the probe predicted
            stages(x, 2.3, 0.1, 15, 5, ("output",))
        if backend_info("cpu")["triton"] != reason:  # not an assert: its message would quote the reason
            pytest.fail("backend_info does not give the probe's reason for the Triton path")
        try:
            lgs(x, backend="triton")
        except ValueError as error:
            if reason not in str(error):
                pytest.fail("the refusal of backend='triton' does not give the probe's reason")
        else:
            pytest.fail("backend='triton' ran on a broken interpreter")
    assert backend_info("cpu")["auto"] != "triton"
