"""The array module (NumPy or CuPy) that owns an array.

Code written against an ``xp`` namespace asks :func:`array_module` which one to use, so the same
source runs on the host and on the device.
"""
from __future__ import annotations

import numpy as np


def array_module(array):
    """``cupy`` when ``array`` is a CuPy array, else ``numpy`` (also for Python scalars and lists)."""
    if type(array).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np
