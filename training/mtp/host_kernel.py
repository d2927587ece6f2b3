"""``MTP.evaluate`` on the CPU as the fused kernel of :mod:`training.mtp.fused`, compiled for the host.

One kernel source, two targets: the CUDA kernel and this host build are the same ``KERNEL_BODY``;
``MTP_HOST`` swaps the grid of one thread per atom for an OpenMP loop over the atoms (threads follow
``OMP_NUM_THREADS``).  The library is built on first use into the per-user cache of
:mod:`common.native` (one per potential basis: the table sizes are compiled in) and loaded with
``ctypes``.

:func:`evaluate` is the default CPU path of the calculator, ``calc-efs``, MD and grading; it falls back
to the array code of :meth:`MTP.evaluate` (the reference the tests compare against) when
``MULTISCALE_CPU_KERNELS=numpy`` or no library can be built (one warning, :mod:`common.native`).  As on
the GPU, the first result of each potential and species layout is checked against the array code
(``fused.verify``), so a miscompiled kernel stops with ``fused.KernelMismatch``.

:func:`forces_and_virial` is the compiled twin of :func:`training.mtp.neighbors.forces_and_virial`
(same contract): one serial pass over the pairs instead of twelve ``bincount`` calls.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from common.native import load_library, pointer

from . import fused
from .neighbors import forces_and_virial as array_forces_and_virial

HOST_PREAMBLE = "#define MTP_HOST 1\n#include <cmath>\nusing std::sqrt;\n"

SCATTER_SOURCE = r"""
// forces [n,3], virial [9], per-atom virials [n,9] (or null) from pair gradients g [p,3] of pairs d [p,3]:
// F_i += g, F_j -= g, W -= d (x) g, W_j -= d (x) g  (training.mtp.neighbors.forces_and_virial)
extern "C" void pair_scatter(long long n_pairs, const long long* i, const long long* j, const double* d,
                             const double* g, double* forces, double* virial, double* per_atom) {
    double w[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (long long p = 0; p < n_pairs; ++p) {
        const double* dp = d + 3 * p;
        const double* gp = g + 3 * p;
        double* fi = forces + 3 * i[p];
        double* fj = forces + 3 * j[p];
        for (int c = 0; c < 3; ++c) { fi[c] += gp[c]; fj[c] -= gp[c]; }
        double* wj = per_atom ? per_atom + 9 * j[p] : nullptr;
        for (int a = 0; a < 3; ++a)
            for (int b = 0; b < 3; ++b) {
                const double v = -dp[a] * gp[b];
                w[3 * a + b] += v;
                if (wj) wj[3 * a + b] += v;
            }
    }
    for (int k = 0; k < 9; ++k) virial[k] = w[k];
}
"""


def host_source(kernel_source: str) -> str:
    """The C++ text of a kernel source of :class:`fused.KernelTables` (``MTP_HOST`` defined)."""
    return HOST_PREAMBLE + kernel_source


@functools.lru_cache(maxsize=16)
def host_launcher(kernel_source: str):
    """``launch(n_atoms, args)`` for ``fused.evaluate``: the host build of ``kernel_source``, or None
    when it cannot be loaded."""
    library = load_library(host_source(kernel_source))
    if library is None:
        return None
    function = library.mtp_evaluate
    function.restype = None

    def launch(n_atoms, args):
        function(ctypes.c_longlong(n_atoms), *(pointer(a) for a in args))

    return launch


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


@functools.lru_cache(maxsize=1)
def _scatter():
    library = load_library(SCATTER_SOURCE)
    if library is None:
        return None
    function = library.pair_scatter
    function.restype = None
    return function


def forces_and_virial(i, j, d, de_dd, n_atoms: int, *, per_atom: bool = True):
    """Forces [n, 3] (eV/Å), virial [3, 3] (eV) and per-atom virials [n, 3, 3] (eV) or None: the
    contract of :func:`training.mtp.neighbors.forces_and_virial` on NumPy arrays, compiled when it
    loads (else that function)."""
    function = _scatter()
    if function is None:
        return array_forces_and_virial(i, j, d, de_dd, n_atoms, np, per_atom=per_atom)
    i, j = (np.ascontiguousarray(a, dtype=np.int64) for a in (i, j))
    d, de_dd = (np.ascontiguousarray(a, dtype=np.float64) for a in (d, de_dd))
    forces, virial = np.zeros((n_atoms, 3)), np.zeros((3, 3))
    virials = np.zeros((n_atoms, 3, 3)) if per_atom else None
    function(ctypes.c_longlong(len(i)), pointer(i), pointer(j), pointer(d), pointer(de_dd), pointer(forces),
             pointer(virial), pointer(virials) if per_atom else None)
    return forces, virial, virials
