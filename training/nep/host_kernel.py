"""``NEPEvaluator.evaluate`` on the CPU as the fused kernel of :mod:`training.nep.fused`, compiled for the host.

One kernel source, two targets: the CUDA kernel and this host build are the same ``KERNEL_BODY``;
``NEP_HOST`` swaps the grid of one thread per atom for an OpenMP loop over the atoms (threads follow
``OMP_NUM_THREADS``).  The library is built on first use into the per-user cache of
:mod:`common.native` (one per model shape: the table sizes are compiled in) and loaded with ``ctypes``.

:func:`evaluate` is the default CPU path of ``md_gpu.forcefields.nep.NEPForceField`` (MD and the
``NEPCalculator``); it falls back to the array code of :meth:`NEPEvaluator.evaluate` (the reference the
tests compare against) when ``MULTISCALE_CPU_KERNELS=numpy`` or no library can be built (one warning,
:mod:`common.native`).  The first result of each model shape is checked against the array code, with a
probe of every species pair (``fused.verify``), so a miscompiled kernel stops with ``fused.KernelMismatch``.  The fit
(``training.nep_fit``) keeps the array code: its complex-step derivatives need complex arithmetic.
"""
from __future__ import annotations

import numpy as np

from common import atom_kernels

from . import fused

HOST_PREAMBLE = ("#define NEP_HOST 1\n#include <cmath>\n"
                 "using std::sqrt; using std::cos; using std::sin; using std::tanh; using std::exp;\n")


def host_source(kernel_source: str) -> str:
    """The C++ text of a kernel source of :class:`fused.KernelTables` (``NEP_HOST`` defined)."""
    return HOST_PREAMBLE + kernel_source


def host_launcher(kernel_source: str):
    """``launch(n_atoms, args)`` for ``fused.evaluate``: the host build of ``kernel_source``, or None
    when it cannot be loaded (the same object for the same library, so ``fused`` checks it once)."""
    return atom_kernels.host_launcher(host_source(kernel_source), "nep_evaluate")


def available(evaluator) -> bool:
    """Whether the compiled kernel of the evaluator's model shape loads (:func:`evaluate` uses it)."""
    return host_launcher(fused.tables(evaluator).source) is not None


def evaluate(evaluator, types, i, j, d):
    """Site energies [n] (eV) and dE/dd [p, 3] (eV/Å) on the CPU: ``NEPEvaluator.evaluate``'s contract
    (FULL pair list i, j [p], d [p, 3] Å = r_j + shift - r_i, types [n] indices into the species), by the
    compiled kernel when it loads, else by the array code."""
    return fused.evaluate(evaluator, types, i, j, d, xp=np, launcher=host_launcher)
