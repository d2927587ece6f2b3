"""``MTP.evaluate`` on the CPU as the fused kernel of :mod:`training.mtp.fused`, compiled for the host.

One kernel source, two targets: the CUDA kernel and this host build are the same ``KERNEL_BODY``;
``MTP_HOST`` swaps the grid of one thread per atom for an OpenMP loop over the atoms (threads follow
``OMP_NUM_THREADS``).  The library is built on first use into the per-user cache of
:mod:`common.native` (one per potential basis: the table sizes are compiled in) and loaded with
``ctypes`` (:func:`common.atom_kernels.host_launcher`, the same launcher as the NEP kernel's).

:func:`evaluate` is the default CPU path of the calculator, ``calc-efs``, MD and grading; it falls back
to the array code of :meth:`MTP.evaluate` (the reference the tests compare against) when
``MULTISCALE_CPU_KERNELS=numpy`` or no library can be built (one warning, :mod:`common.native`).  As on
the GPU, the first result of each potential and species layout is checked against the array code
(``fused.verify``), so a miscompiled kernel stops with ``fused.KernelMismatch``.
"""
from __future__ import annotations

import numpy as np

from common import atom_kernels

from . import fused

HOST_PREAMBLE = "#define MTP_HOST 1\n#include <cmath>\nusing std::sqrt;\n"


def host_launcher(kernel_source: str):
    """``launch(n_atoms, args)`` for ``fused.evaluate``: the host build (``HOST_PREAMBLE``: ``MTP_HOST``
    defined) of a kernel source of :class:`fused.KernelTables`, or None when it cannot be loaded
    (:func:`common.atom_kernels.host_launcher`: the same object for the same library)."""
    return atom_kernels.host_launcher(HOST_PREAMBLE + kernel_source, "mtp_evaluate")


def available(mtp) -> bool:
    """Whether the compiled kernel of ``mtp``'s basis loads (:func:`evaluate` uses it)."""
    return host_launcher(fused.tables(mtp).source) is not None


def evaluate(mtp, types, i, j, d):
    """Site energies [n] (eV) and dE/dd [p, 3] (eV/Å) on the CPU: ``MTP.evaluate``'s contract (full
    pair list i, j [p], d [p, 3] Å = r_j + shift - r_i, types [n]), by the compiled kernel when it
    loads, else by the array code."""
    _, types, i, j, d = mtp._inputs(types, i, j, d, np)
    if not available(mtp):
        return mtp._evaluate_arrays(types, i, j, d, np)
    return fused.evaluate(mtp, types, i, j, d, xp=np, launcher=host_launcher)
