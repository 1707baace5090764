"""The LGS paths, side by side: four implementations of one contract, chosen by :mod:`lgs_gpu.smoothing.routing`.

* :mod:`.reference`: the paper's equations, literally (Python loops); the oracle of the tests.
  It shares no code with the other paths.
* :mod:`.torch_path`: vectorised PyTorch, any device, differentiable (``backend="torch"``).
* :mod:`.compiled_path`: the torch path's stages compiled ahead of time (AOTInductor) for CPU
  tensors, inference only (``backend="compiled"``, auto's CPU default); its programs live in the
  per-machine cache of :mod:`lgs_gpu.core.package_cache`.
* :mod:`.triton_path`: fused Triton kernels beside their launchers, the availability gate and the
  ahead-of-time compile report (``backend="triton"``).

Each path takes ``[B, C, H, W]`` images already validated and converted by the front and offers
``stages``. Nothing but :mod:`lgs_gpu.smoothing.routing` imports them.
"""
