"""Fused CUDA kernels (CuPy ``RawKernel``) for the steps where array code is slow on a GPU.

Only imported when the backend is CuPy. Each kernel has a NumPy twin in the
array code, and ``tests/test_md_kernels.py`` compares the two (skipped without a GPU).

* ``scatter_forces_virials``: one thread per pair adds ``+dE_dd`` to ``F_i``,
  ``-dE_dd`` to ``F_j`` and ``-d (x) dE_dd`` to the virial of ``j`` (Fan's per-atom
  virial, see ``forcefields.base``) with ``atomicAdd`` (float64 atomics need compute capability >= 6.0).
  The array version needs 12 bincounts, each a pass over all pairs.
"""
from __future__ import annotations

import functools

_SCATTER_SRC = r"""
extern "C" __global__
void scatter(const long long* pi, const long long* pj, const double* d, const double* g,
             const long long n_pairs, const int per_atom,
             double* forces, double* virials, double* virial_total) {
    long long p = blockDim.x * (long long)blockIdx.x + threadIdx.x;
    if (p >= n_pairs) return;
    long long i = pi[p], j = pj[p];
    for (int a = 0; a < 3; ++a) {
        atomicAdd(&forces[3 * i + a], g[3 * p + a]);
        atomicAdd(&forces[3 * j + a], -g[3 * p + a]);
    }
    for (int a = 0; a < 3; ++a) {
        for (int b = 0; b < 3; ++b) {
            double w = -d[3 * p + a] * g[3 * p + b];
            if (per_atom) atomicAdd(&virials[9 * j + 3 * a + b], w);
            atomicAdd(&virial_total[3 * a + b], w);
        }
    }
}
"""


@functools.lru_cache(maxsize=None)
def _scatter_kernel():
    import cupy

    return cupy.RawKernel(_SCATTER_SRC, "scatter")


def scatter_forces_virials(i, j, d, dE_dd, n_atoms: int, *, per_atom: bool = True):
    """CuPy twin of :func:`md_gpu.forcefields.base.forces_and_virial` (same shapes and signs)."""
    import cupy

    n_pairs = int(i.shape[0])
    forces = cupy.zeros((n_atoms, 3))
    virials = cupy.zeros((n_atoms, 3, 3)) if per_atom else cupy.zeros((1, 3, 3))
    virial = cupy.zeros((3, 3))
    if n_pairs:
        threads = 256
        blocks = (n_pairs + threads - 1) // threads
        _scatter_kernel()((blocks,), (threads,),
                          (cupy.ascontiguousarray(i, dtype=cupy.int64),
                           cupy.ascontiguousarray(j, dtype=cupy.int64),
                           cupy.ascontiguousarray(d, dtype=cupy.float64),
                           cupy.ascontiguousarray(dE_dd, dtype=cupy.float64),
                           cupy.int64(n_pairs), cupy.int32(1 if per_atom else 0),
                           forces, virials, virial))
    return forces, virial, (virials if per_atom else None)
