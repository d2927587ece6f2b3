"""The pairs of a Verlet list inside a cut-off, in compiled code (the CPU path of the MD step's exact check).

Contract: :func:`compiled_pairs_within` takes a list ``i, j [p]`` (int64), ``shifts [p, 3]`` (integer image
counts as float64), ``positions [n, 3]`` Å, ``cell [3, 3]`` Å (rows) and a cut-off (Å); it returns
``(i [q], j [q], d [q, 3])``: the listed pairs with ``|d|^2 < cutoff^2`` in list order, where
``d = r[j] - r[i] + shifts @ cell``. That is what :meth:`md_gpu.neighbors.NeighborList.pairs_within` forms
with array code (:meth:`~md_gpu.neighbors.NeighborList.pair_vectors`, a mask, a compaction), the reference
on every backend; here it is one pass over the pairs, with no temporary [p, 3] arrays. Each component is
``(r_j - r_i) + (s_0 c_0 + s_1 c_1 + s_2 c_2)``, as in the array code, so the two agree to round-off: the
same bits for image shifts up to 2 (exact products), else within an ulp or so where the matrix product of
the array code fuses multiply-adds (a pair at the cut-off itself may then fall either side, which the
force contract makes harmless). Returns None when compiled kernels are off or
cannot be built (:mod:`common.native`); the caller then runs the array code.
"""
from __future__ import annotations

import ctypes

import numpy as np

from common.native import load_function, pointer

SOURCE = r"""
extern "C" long long verlet_within(long long n_pairs, const long long* i, const long long* j,
                                   const double* shifts, const double* pos, const double* cell, double cutoff2,
                                   long long* out_i, long long* out_j, double* out_d) {
    long long q = 0;
    for (long long p = 0; p < n_pairs; ++p) {
        const double* s = shifts + 3 * p;
        const double* a = pos + 3 * i[p];
        const double* b = pos + 3 * j[p];
        double d[3];
        for (int c = 0; c < 3; ++c) {
            const double image = (s[0] * cell[c] + s[1] * cell[3 + c]) + s[2] * cell[6 + c];
            d[c] = (b[c] - a[c]) + image;
        }
        const double r2 = (d[0] * d[0] + d[1] * d[1]) + d[2] * d[2];
        if (r2 < cutoff2) {
            out_i[q] = i[p];
            out_j[q] = j[p];
            for (int c = 0; c < 3; ++c) out_d[3 * q + c] = d[c];
            ++q;
        }
    }
    return q;
}
"""


def available() -> bool:
    """Whether the compiled filter loads (compiled kernels on, a compiler present)."""
    return load_function(SOURCE, "verlet_within", ctypes.c_longlong) is not None


def compiled_pairs_within(i, j, shifts, positions, cell, cutoff: float):
    """``(i [q], j [q], d [q, 3])`` of the listed pairs closer than ``cutoff`` (module docstring), or None
    when the compiled filter is not available. NumPy arrays only."""
    function = load_function(SOURCE, "verlet_within", ctypes.c_longlong)
    if function is None:
        return None
    i, j = (np.ascontiguousarray(a, dtype=np.int64) for a in (i, j))
    shifts = np.ascontiguousarray(shifts, dtype=np.float64)
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    frame = np.ascontiguousarray(cell, dtype=np.float64).reshape(3, 3)
    if not (j.shape == i.shape and shifts.shape == (len(i), 3) and positions.ndim == 2 and positions.shape[1] == 3):
        raise ValueError(f"pair arrays must be i [p], j [p], shifts [p, 3] and positions [n, 3]; got {i.shape}, "
                         f"{j.shape}, {shifts.shape}, {positions.shape}")
    out_i, out_j, out_d = np.empty_like(i), np.empty_like(j), np.empty((len(i), 3))
    q = int(function(ctypes.c_longlong(len(i)), pointer(i), pointer(j), pointer(shifts), pointer(positions),
                     pointer(frame), ctypes.c_double(float(cutoff) * float(cutoff)), pointer(out_i), pointer(out_j),
                     pointer(out_d)))
    return out_i[:q], out_j[:q], out_d[:q]
