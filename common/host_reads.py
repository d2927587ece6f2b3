"""Counted device-to-host reads: the one hook through which hot loops read device arrays.

:func:`to_host` copies NumPy or CuPy arrays to the host in ONE transfer and counts the call in
:data:`SYNCS` on every backend, so a test on the CPU counts the synchronising reads that a GPU run of the
same code makes (the MD step, ``tests/test_md_syncs.py``; the shared kernel launcher,
:mod:`common.atom_kernels`). :func:`host_scalar` reads one number through it.
"""
from __future__ import annotations

import numpy as np


class SyncCounter:
    """Number of device-to-host reads (calls of :func:`to_host`) since the last :meth:`reset`."""

    def __init__(self):
        self.count = 0

    def reset(self) -> int:
        """Set the count to 0; return what it was."""
        count, self.count = self.count, 0
        return count


SYNCS = SyncCounter()


def to_host(*arrays):
    """Host (NumPy) copies of device arrays, read in ONE transfer; one count in :data:`SYNCS`.

    arrays: NumPy or CuPy arrays or Python numbers. Returns one NumPy array for one argument, else a
    tuple in the same order and shapes. On CuPy the arrays are flattened into one float64 buffer on the
    device and copied once (integers up to 2^53 and floats are exact), so several small reductions
    cost a single synchronisation; on NumPy they are returned as they are, and only counted.
    """
    SYNCS.count += 1
    if not any(type(a).__module__.startswith("cupy") for a in arrays):
        out = tuple(np.asarray(a) for a in arrays)
    else:
        import cupy

        parts = [cupy.asarray(a) for a in arrays]
        flat = cupy.concatenate([p.astype(cupy.float64).ravel() for p in parts]).get()
        out, start = [], 0
        for p in parts:
            out.append(flat[start:start + p.size].reshape(p.shape).astype(p.dtype.type, copy=False))
            start += p.size
        out = tuple(out)
    return out[0] if len(out) == 1 else out


def host_scalar(value) -> float:
    """A 0-d device array (or number) as a Python float, through :func:`to_host` (counted)."""
    return float(to_host(value))
