"""The shared low layer: small helpers that every package of the product may import.

``common`` imports nothing of ``multiscale``, ``training``, ``md_gpu`` or ``fem`` (the import
contracts in ``pyproject.toml`` enforce it), so the engines can share one implementation of each
of these without depending on each other:

- :mod:`common.atomic`: atomic file writes (temporary file, flush + fsync, rename; the temporary
  file is removed on failure) and folder swaps.
- :mod:`common.arrays`: the array module (NumPy or CuPy) that owns an array.
- :mod:`common.voigt`: Voigt order of symmetric 3x3 tensors and stress from a virial.
"""
