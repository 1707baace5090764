"""Measuring tools that ``lgs-gpu bench`` needs at run time (otherwise they would live in benchmarks/).

* :mod:`.roofline`: the traffic model (bytes each LGS path moves, derived from its structure)
  and the predicted time at a GPU's memory bandwidth, joined with the kernels' AOT report.
* :mod:`.peak_memory`: peak bytes a call allocates (CPU, CUDA, NumPy).
* :mod:`.cpu_references`: the CPU-library calls each defense is checked and timed against
  (Pillow, SciPy, scikit-image, a NumPy LGS).
"""
