"""Local Gradients Smoothing: the front (:mod:`.front`), the routing table that picks a backend
(:mod:`.routing`), the PyTorch operators (:mod:`.operators`) and the backends themselves.

Import :mod:`lgs_gpu.smoothing.operators` before ``torch.export.load`` of a program that holds LGS.
"""
