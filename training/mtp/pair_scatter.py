"""Forces and virials from pair gradients in compiled code: the contract of
:func:`training.mtp.neighbors.array_forces_and_virial` in one serial pass over the pairs (instead of
twelve ``bincount`` calls), built and cached by :mod:`common.native`.

For pair p = (i -> j) with d_p = r_j + shift - r_i and g_p = dE/dd_p:  F_i += g_p, F_j -= g_p,
W -= d_p (x) g_p, and the per-atom virial of the neighbour W_j -= d_p (x) g_p (Fan et al., Phys. Rev. B
92, 094301 (2015)).  Sums run in pair order, so the result equals the array code's to round-off.
"""
from __future__ import annotations

import ctypes

import numpy as np

from common.native import load_function, pointer

SOURCE = r"""
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


def compiled_forces_and_virial(i, j, d, de_dd, n_atoms: int, *, per_atom: bool = True):
    """(forces [n, 3] eV/Å, virial [3, 3] eV, per-atom virials [n, 3, 3] eV or None) from NumPy pair
    arrays i, j [p], d [p, 3] Å, de_dd [p, 3] eV/Å; None when compiled kernels are not available."""
    function = load_function(SOURCE, "pair_scatter")
    if function is None:
        return None
    i, j = (np.ascontiguousarray(a, dtype=np.int64) for a in (i, j))
    d, de_dd = (np.ascontiguousarray(a, dtype=np.float64) for a in (d, de_dd))
    if not (d.shape == de_dd.shape == (len(i), 3) and j.shape == i.shape):
        raise ValueError(f"pair arrays must be i [p], j [p], d [p, 3], de_dd [p, 3]; got {i.shape}, {j.shape}, "
                         f"{d.shape}, {de_dd.shape}")
    forces, virial = np.zeros((n_atoms, 3)), np.zeros((3, 3))
    virials = np.zeros((n_atoms, 3, 3)) if per_atom else None
    function(ctypes.c_longlong(len(i)), pointer(i), pointer(j), pointer(d), pointer(de_dd), pointer(forces),
             pointer(virial), pointer(virials) if per_atom else None)
    return forces, virial, virials
