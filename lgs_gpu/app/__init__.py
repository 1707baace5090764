"""The application: the work behind each ``lgs-gpu`` command, built on the public fronts below it.

* :mod:`.cli`: argument parsing only (the ``lgs-gpu`` entry point).
* :mod:`.defend`: defend image files; :mod:`.demo`: LGS on bundled photographs.
* :mod:`.evaluate`: attacks x defenses -> the paper's tables (also importable as
  :mod:`lgs_gpu.evaluate`); :mod:`.report`: tables and figures.
* :mod:`.bench`: timings against the CPU libraries and the copy roof.

Nothing below this package imports it, and nothing imports :mod:`.cli`.
"""
