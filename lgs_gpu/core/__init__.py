"""The base layer: the parameters and their checks, window geometry, image I/O, files, caches.

Every other layer may import from here; nothing here imports from above.
"""
