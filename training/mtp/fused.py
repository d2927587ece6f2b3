r"""``MTP.evaluate`` as one fused CUDA kernel: one thread per centre atom, MLIP's own loop structure.

Why: the array code of :mod:`training.mtp.model` materialises per-pair tables (radial functions,
angular monomials [atoms, neighbours, monomials]) and launches a few hundred small kernels per call;
on an H100 it ran 1.0e6 atom-steps/s at 1e5 atoms (level 16) and ran out of memory at 1e6 atoms.
A thread that keeps its atom's moments in local memory needs none of those tables.

Data flow per thread (atom a of type t_a, its pairs p = offsets[a] .. offsets[a+1]-1, sorted by centre):

1. forward over the pairs: Chebyshev radial basis Q_x(r) -> radial functions f_mu(r) with the
   coefficients of the pair's species pair; all monomials A_l = u_x^a u_y^b u_z^c up to the largest
   degree (:class:`training.mtp.basis.MonomialTable` order, built degree by degree over contiguous
   blocks); moments kept dense as rows M[mu][l] += f_mu(r) A_l; the basic moment b = (mu_b, l_b) is
   M[mu_b][l_b] (``basic`` rows (mu, l), :class:`KernelTables`);
2. products ``M_k += mult M_i M_j`` in the order of ``alpha_index_times`` (MLIP's sequential semantics:
   every target is complete before the table uses it, so reverse order is a valid reverse pass);
3. site energy E_a = species_coeffs[t_a] + sum_k moment_coeffs[k] M[mapping[k]];
4. reverse pass: G = dE_a/dM, seeded with the moment coefficients, through the products in reverse;
   the basic moments' G laid out densely like M;
5. second pass over the pairs: with gf_l = sum_mu G[mu][l] f_mu and gdf_l = sum_mu G[mu][l] f'_mu,
   dE_a/dd_p = sum_l (gdf_l - gf_l deg_l / r) A_l u + (gf_l / r) dA_l/du (the monomials' derivatives by
   the product rule).

The dense rows make the inner loops run over contiguous arrays (the host compiler vectorises them);
the table sizes (moments, basic moments, products, radial sizes, monomials and their degree) are
compiled in as constants, so each potential compiles its own kernel once per process (cached by its
tables).

The same source compiles as plain C++ (``MTP_HOST`` defined: an OpenMP loop over the atoms instead of a
grid): :mod:`training.mtp.host_kernel` builds it as the default CPU path (and, with ``MTP_ROWS`` also
defined, as the source of the extrapolation grade's rows: in step 5 each atom adds
(Σ_l G[μ][l] A_l) Q_x(r) to dE/dθ[pair type][μ][x] of its row, whose basis values are the moments
of step 2; ``tests/test_grade_rows_compiled.py``), and ``tests/test_mtp_fused.py``
and ``tests/test_mtp_host_kernel.py`` check the kernel's arithmetic against the array code on any
machine; on a GPU ``tests/test_mtp_model.py::test_cupy_matches_numpy`` checks the CUDA build itself.

Run-time self-check (:func:`verify`): the first launch of each compiled kernel writes into outputs
filled with NaN and is checked against the array code, and so is a launch on a small probe that holds
every species and species pair of the potential (:func:`common.atom_kernels.species_probe`, distances
:func:`probe_radii`), so that a species pair a run meets later was checked too and later launches read
nothing to the host; so that a compiler or device problem stops the run with
:class:`KernelMismatch` instead of giving wrong forces.  Checked: every output entry is finite (an atom
or pair that no thread wrote stays NaN), and the site energies and pair gradients of sampled atoms
(:func:`common.atom_kernels.sample_atoms`) equal the array code's: every atom of a small launch; else the
first thread and one more lane of *every* thread block (the lane moves from block to block, so 128
blocks cover all lanes), the last atom, and for every species and species pair present an atom that has
it.  The pair sorting, launch, sampling and comparison are :mod:`common.atom_kernels`, shared with the
fused NEP kernel; this module holds the kernel source, its tables and the array-code reference.
"""
from __future__ import annotations

import functools

import numpy as np

from common import atom_kernels
from common.atom_kernels import device_copies, evaluate_checked, kept_tables

from .basis import MonomialTable

THREADS_PER_BLOCK = 128
KernelMismatch = atom_kernels.KernelMismatch  # what :func:`verify` raises

KERNEL_BODY = r"""
#ifdef MTP_HOST
#define DEVICE static inline
#else
#define DEVICE __device__ __forceinline__
#endif
// MTP_ROWS (host builds for the grade, training.mtp.host_kernel.grade_rows): each atom also writes its row
// of the extrapolation grade, rows[a] = [dE_a/dtheta [n_pair_types NR NX] | basis values B [NK]]
#ifdef MTP_ROWS
#define MTP_ROW_PARAMS , const long long* n_pair_types, double* rows
#define MTP_ROW_ARGS , n_pair_types, rows
#define MTP_ROW_BASIS q  // the radial basis of the pass that forms dE/dd, kept for the row
#else
#define MTP_ROW_PARAMS
#define MTP_ROW_ARGS
#define MTP_ROW_BASIS nullptr
#endif

// MLIP's RBChebyshev radial basis times the radial coefficients of species pair `pt`: f[NR], df[NR]; and
// the basis itself, q[NX] = SCALING (MAX_DIST - r)^2 T_x(ksi), where q is not null
DEVICE void mtp_radial(double r, int pt, const double* radial_coeffs, double* f, double* df, double* q) {
    const double gap = MAX_DIST - r;
    const double s = SCALING * gap * gap, ds = -2.0 * SCALING * gap;
    const double ksi = (2.0 * r - (MIN_DIST + MAX_DIST)) / (MAX_DIST - MIN_DIST);
    const double dksi = 2.0 / (MAX_DIST - MIN_DIST);
    double t[NX], dt[NX];
    t[0] = 1.0; dt[0] = 0.0;
    if (NX > 1) { t[1] = ksi; dt[1] = dksi; }
    for (int x = 2; x < NX; ++x) {
        t[x] = 2.0 * ksi * t[x - 1] - t[x - 2];
        dt[x] = 2.0 * (dksi * t[x - 1] + ksi * dt[x - 1]) - dt[x - 2];
    }
    if (q)
        for (int x = 0; x < NX; ++x) q[x] = t[x] * s;
    const double* c = radial_coeffs + (long long)pt * NR * NX;
    for (int mu = 0; mu < NR; ++mu) {
        double v = 0.0, dv = 0.0;
        for (int x = 0; x < NX; ++x) {
            v += c[mu * NX + x] * t[x];
            dv += c[mu * NX + x] * dt[x];
        }
        f[mu] = v * s;
        df[mu] = dv * s + v * ds;
    }
}

// All monomials A_l = ux^a uy^b uz^c with a + b + c <= DEG in MonomialTable order, degree by degree: the
// block of degree k is ux * (block k-1), uy * (its last k entries: no x), uz * (its last entry: z^(k-1)),
// so every step runs over a contiguous block.
DEVICE void mtp_monomials(double ux, double uy, double uz, double* A) {
    A[0] = 1.0;
    int prev = 0;  // start of the block of degree k - 1, whose size is k (k + 1) / 2
    for (int k = 1; k <= DEG; ++k) {
        const int size = k * (k + 1) / 2, cur = prev + size;
        for (int q = 0; q < size; ++q) A[cur + q] = ux * A[prev + q];
        for (int q = 0; q < k; ++q) A[cur + size + q] = uy * A[prev + size - k + q];
        A[cur + size + k] = uz * A[prev + size - 1];
        prev = cur;
    }
}

// the monomials and their partial derivatives D_c[l] = dA_l/du_c (= e_c A_(l - e_c)) by the product rule
DEVICE void mtp_monomial_derivatives(double ux, double uy, double uz, double* A, double* DX, double* DY,
                                     double* DZ) {
    A[0] = 1.0; DX[0] = DY[0] = DZ[0] = 0.0;
    int prev = 0;
    for (int k = 1; k <= DEG; ++k) {
        const int size = k * (k + 1) / 2, cur = prev + size;
        for (int q = 0; q < size; ++q) {
            const int l = cur + q, p = prev + q;
            A[l] = ux * A[p]; DX[l] = A[p] + ux * DX[p]; DY[l] = ux * DY[p]; DZ[l] = ux * DZ[p];
        }
        for (int q = 0; q < k; ++q) {  // no x in these
            const int l = cur + size + q, p = prev + size - k + q;
            A[l] = uy * A[p]; DX[l] = 0.0; DY[l] = A[p] + uy * DY[p]; DZ[l] = uy * DZ[p];
        }
        const int l = cur + size + k, p = prev + size - 1;  // z^k
        A[l] = uz * A[p]; DX[l] = 0.0; DY[l] = 0.0; DZ[l] = A[p] + uz * DZ[p];
        prev = cur;
    }
}

// One centre atom.  Moments of radial function mu and monomial l are kept dense, row mu of [NR][NL]
// (basic moment b = (mu_b, l_b) is entry mu_b NL + l_b), so the loops over them run over contiguous rows.
DEVICE void mtp_atom(long long a, const long long* offsets, const long long* types, const long long* pair_types,
                     const double* d, const int* basic, const int* times, const double* mult,
                     const double* seed, const double* species_coeffs, const double* moment_coeffs,
                     const int* mapping, const double* radial_coeffs, double* energies, double* de_dd
                     MTP_ROW_PARAMS) {
    double m[NM], g[NM], dense[NR * NL];
    double f[NR], df[NR], A[NL], DX[NL], DY[NL], DZ[NL], gf[NL], gdf[NL], deg[NL];
    for (int k = 0; k < NR * NL; ++k) dense[k] = 0.0;
    const long long first = offsets[a], last = offsets[a + 1];
    for (long long p = first; p < last; ++p) {
        const double dx = d[3 * p], dy = d[3 * p + 1], dz = d[3 * p + 2];
        const double r = sqrt(dx * dx + dy * dy + dz * dz);
        if (r >= MAX_DIST) continue;
        mtp_radial(r, (int)pair_types[p], radial_coeffs, f, df, nullptr);
        const double inv_r = r > 0.0 ? 1.0 / r : 1.0;
        mtp_monomials(dx * inv_r, dy * inv_r, dz * inv_r, A);
        for (int mu = 0; mu < NR; ++mu) {  // M[mu][l] += f_mu(r) A_l(u)
            double* row = dense + mu * NL;
            const double fm = f[mu];
            for (int l = 0; l < NL; ++l) row[l] += fm * A[l];
        }
    }
    for (int k = 0; k < NM; ++k) m[k] = 0.0;
    for (int b = 0; b < NB; ++b) m[b] = dense[basic[2 * b] * NL + basic[2 * b + 1]];
    for (int t = 0; t < NT; ++t) {
        const int* q = times + 3 * t;
        m[q[2]] += mult[t] * m[q[0]] * m[q[1]];
    }
    double e = species_coeffs[types[a]];
    for (int k = 0; k < NK; ++k) e += moment_coeffs[k] * m[mapping[k]];
    energies[a] = e;
#ifdef MTP_ROWS
    double q[NX];
    const long long radial_size = n_pair_types[0] * NR * NX;
    double* row = rows + a * (radial_size + NK);
    for (long long k = 0; k < radial_size; ++k) row[k] = 0.0;
    for (int k = 0; k < NK; ++k) row[radial_size + k] = m[mapping[k]];
#endif
    for (int k = 0; k < NM; ++k) g[k] = seed[k];
    for (int t = NT - 1; t >= 0; --t) {
        const int* q = times + 3 * t;
        const double w = mult[t] * g[q[2]];
        g[q[0]] += w * m[q[1]];
        g[q[1]] += w * m[q[0]];
    }
    // G = dE/dM of the basic moments, dense like M
    for (int k = 0; k < NR * NL; ++k) dense[k] = 0.0;
    for (int b = 0; b < NB; ++b) dense[basic[2 * b] * NL + basic[2 * b + 1]] += g[b];
    for (int k = 0, l = 0; k <= DEG; ++k)  // the block of degree k holds (k + 1) (k + 2) / 2 monomials
        for (int q = 0; q < (k + 1) * (k + 2) / 2; ++q) deg[l++] = (double)k;
    for (long long p = first; p < last; ++p) {
        const double dx = d[3 * p], dy = d[3 * p + 1], dz = d[3 * p + 2];
        const double r = sqrt(dx * dx + dy * dy + dz * dz);
        double gx = 0.0, gy = 0.0, gz = 0.0;
        if (r < MAX_DIST) {
            mtp_radial(r, (int)pair_types[p], radial_coeffs, f, df, MTP_ROW_BASIS);
            const double inv_r = r > 0.0 ? 1.0 / r : 1.0;
            const double ux = dx * inv_r, uy = dy * inv_r, uz = dz * inv_r;
            mtp_monomial_derivatives(ux, uy, uz, A, DX, DY, DZ);
            // gf_l = sum_mu G[mu][l] f_mu, gdf_l = sum_mu G[mu][l] f'_mu
            for (int l = 0; l < NL; ++l) gf[l] = gdf[l] = 0.0;
            for (int mu = 0; mu < NR; ++mu) {
                const double* row = dense + mu * NL;
                const double fm = f[mu], dfm = df[mu];
                for (int l = 0; l < NL; ++l) { gf[l] += row[l] * fm; gdf[l] += row[l] * dfm; }
            }
            // d(f A)/dd = (f' A - f deg A / r) u + (f / r) dA/du
            double along = 0.0;
            for (int l = 0; l < NL; ++l) {
                const double w = gf[l] * inv_r;
                along += (gdf[l] - w * deg[l]) * A[l];
                gx += w * DX[l];
                gy += w * DY[l];
                gz += w * DZ[l];
            }
            gx += along * ux; gy += along * uy; gz += along * uz;
#ifdef MTP_ROWS
            // dE/dtheta[pt][mu][x] += (sum_l G[mu][l] A_l) q_x
            double* out = row + pair_types[p] * NR * NX;
            for (int mu = 0; mu < NR; ++mu) {
                const double* grow = dense + mu * NL;
                double h = 0.0;
                for (int l = 0; l < NL; ++l) h += grow[l] * A[l];
                for (int x = 0; x < NX; ++x) out[mu * NX + x] += h * q[x];
            }
#endif
        }
        de_dd[3 * p] = gx; de_dd[3 * p + 1] = gy; de_dd[3 * p + 2] = gz;
    }
}

#ifdef MTP_HOST
extern "C" void mtp_evaluate(long long n_atoms, const long long* offsets, const long long* types,
                             const long long* pair_types, const double* d, const int* basic, const int* times,
                             const double* mult, const double* seed, const double* species_coeffs,
                             const double* moment_coeffs, const int* mapping, const double* radial_coeffs,
                             double* energies, double* de_dd MTP_ROW_PARAMS) {
    #pragma omp parallel for schedule(dynamic, 16)
    for (long long a = 0; a < n_atoms; ++a)
        mtp_atom(a, offsets, types, pair_types, d, basic, times, mult, seed, species_coeffs, moment_coeffs,
                 mapping, radial_coeffs, energies, de_dd MTP_ROW_ARGS);
}
#else
extern "C" __global__ void mtp_evaluate(long long n_atoms, const long long* offsets, const long long* types,
                                        const long long* pair_types, const double* d, const int* basic,
                                        const int* times, const double* mult, const double* seed,
                                        const double* species_coeffs, const double* moment_coeffs,
                                        const int* mapping, const double* radial_coeffs, double* energies,
                                        double* de_dd) {
    const long long a = blockDim.x * (long long)blockIdx.x + threadIdx.x;
    if (a >= n_atoms) return;
    mtp_atom(a, offsets, types, pair_types, d, basic, times, mult, seed, species_coeffs, moment_coeffs,
             mapping, radial_coeffs, energies, de_dd);
}
#endif
"""


class KernelTables:
    """The potential's tables in the kernel's layouts, and the source with its sizes compiled in.

    The basis tables fix the source; the coefficients are read from the ``MTP`` at each call
    (``arrays``), so coefficients changed in place (fitting) need no new kernel.
    """

    def __init__(self, mtp):
        basic = np.asarray(mtp.alpha_index_basic, dtype=np.int64).reshape(-1, 4)
        times = np.asarray(mtp.alpha_index_times, dtype=np.int64).reshape(-1, 4)
        table = MonomialTable.of_basic(basic)
        self.basic = np.ascontiguousarray(np.stack([basic[:, 0], table.indices(basic[:, 1:])], axis=1),
                                          dtype=np.int32)  # [Nb, 2]: radial function, monomial
        self.times = np.ascontiguousarray(times[:, [0, 1, 3]].astype(np.int32))
        self.mult = np.ascontiguousarray(times[:, 2].astype(float))
        self.mapping = np.ascontiguousarray(np.asarray(mtp.alpha_moment_mapping, dtype=np.int32))
        defines = {"NM": int(mtp.alpha_moments_count), "NB": len(basic), "NT": len(times), "NK": len(self.mapping),
                   "NX": int(mtp.radial_basis_size), "NR": int(mtp.radial_funcs_count), "NL": len(table),
                   "DEG": table.degree,
                   "MIN_DIST": repr(float(mtp.min_dist)), "MAX_DIST": repr(float(mtp.max_dist)),
                   "SCALING": repr(float(mtp.scaling))}
        self.source = "".join(f"#define {k} {v}\n" for k, v in defines.items()) + KERNEL_BODY
        self._device: dict = {}
        self.verified: set = set()  # launchers whose first result (and the species probe) was checked

    def arrays(self, mtp, xp) -> list:
        """The kernel's table arguments on ``xp``: basic, times, mult, seed, species, moment and radial
        coefficients, mapping (device copies are kept while the coefficients stay the same)."""
        seed = np.zeros(int(mtp.alpha_moments_count))
        np.add.at(seed, self.mapping, mtp.moment_coeffs)
        host = [self.basic, self.times, self.mult, seed, np.ascontiguousarray(mtp.species_coeffs, dtype=float),
                np.ascontiguousarray(mtp.moment_coeffs, dtype=float), self.mapping,
                np.ascontiguousarray(mtp.radial_coeffs, dtype=float).reshape(-1)]
        return host if xp is np else device_copies(self._device, host, xp)


def tables(mtp) -> KernelTables:
    """The KernelTables of ``mtp`` (kept on it; rebuilt when its basis tables are replaced)."""
    key = (mtp.alpha_index_basic.tobytes(), mtp.alpha_index_times.tobytes(), mtp.alpha_moment_mapping.tobytes(),
           mtp.alpha_moments_count, mtp.radial_basis_size, mtp.radial_funcs_count, mtp.min_dist, mtp.max_dist,
           mtp.scaling)
    return kept_tables(mtp, key, lambda: KernelTables(mtp))


@functools.lru_cache(maxsize=16)
def _gpu_kernel(source: str):
    import cupy

    return cupy.RawModule(code=source, options=("-std=c++14",)).get_function("mtp_evaluate")


def gpu_launcher(source: str):
    """``launch(n_atoms, args)``: the compiled CUDA kernel on a grid of one thread per atom."""
    import cupy

    def launch(n_atoms, args):
        blocks = (n_atoms + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
        _gpu_kernel(source)((blocks,), (THREADS_PER_BLOCK,), (cupy.int64(n_atoms), *args))

    return launch


def evaluate(mtp, types, i, j, d, *, xp=None, launcher=gpu_launcher):
    """Site energies [n] (eV) and dE/dd [p, 3] (eV/Å): the contract of ``MTP.evaluate``, whose CuPy
    path this is. ``xp`` defaults to CuPy; ``launcher(source)`` returns ``launch(n_atoms, args)`` (the
    tests pass a C++ build of the same source with ``xp=numpy``).  The first launch of each launcher is
    checked against the array code (:func:`verify`), with the species probe."""
    if xp is None:
        import cupy as xp
    kt = tables(mtp)
    return evaluate_checked(launcher(kt.source), launcher, kt.verified, types, i, j, d, mtp.species_count,
                            kt.arrays(mtp, xp), xp, lambda *result: verify(mtp, *result, xp),
                            probe_radii=probe_radii(mtp))


def probe_radii(mtp) -> tuple[float, float]:
    """Pair distances (Å) of the self-check's species probe: inside the radial basis's range
    ``[min_dist, max_dist]``, away from its ends."""
    span = mtp.max_dist - mtp.min_dist
    return mtp.min_dist + 0.05 * span, mtp.max_dist - 0.05 * span


def verify(mtp, types, i, j, d, energies, de_dd, xp, *, sample=None) -> None:
    """Check a kernel result (energies [n], de_dd [p, 3], written into NaN-filled outputs) against the
    array code (``MTP._evaluate_arrays``): :func:`common.atom_kernels.verify` (every entry finite, the
    ``sample`` atoms -- default :func:`common.atom_kernels.sample_atoms` for blocks of
    ``THREADS_PER_BLOCK`` -- equal to its tolerance), :class:`KernelMismatch` otherwise.  Done once per
    kernel and process, and on the species probe (cost: a few small array evaluations)."""
    atom_kernels.verify("the fused MTP kernel (training/mtp/fused.py)", lambda *pairs: mtp._evaluate_arrays(*pairs, xp),
                        types, i, j, d, energies, de_dd, mtp.species_count, xp, threads_per_block=THREADS_PER_BLOCK,
                        sample=sample, advice=_ADVICE)


_ADVICE = "run on the CPU (MULTISCALE_BACKEND=numpy) and report the device and CuPy version"
