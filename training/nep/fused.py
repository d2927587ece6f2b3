r"""``NEPEvaluator.evaluate`` as one fused kernel: one thread per centre atom, with GPUMD's per-atom passes
(descriptors, network, forces; NEP_CPU ``find_descriptor_small_box`` / ``find_force_*_small_box``).

Why: the array code of :mod:`training.nep.model` materialises per-pair tables (basis [p, K], harmonics
and their derivatives [p, n_lm, 3], ``dU/ds`` gathered to the pairs [p, n, n_lm]) and runs a few hundred
array operations per call; a thread that keeps its atom's descriptors in local memory needs none of
those tables, and its loops are GPUMD's own.

Data flow per thread (atom a of type t_a, its pairs p = offsets[a] .. offsets[a+1]-1 of the pair list
sorted by centre, pair type t_a T + t_j):

1. forward over the pairs: within the pair's radial cut-off the Chebyshev basis f_k(r) and
   ``q_n += g_n(r) = sum_k c^{t_a t_j}_{nk} f_k(r)``; within the angular cut-off the angular radial
   functions and the harmonics Y_lm(u): ``s_{nlm} += g_n(r) Y_lm(u)``;
2. the angular descriptors ``q_{nl} = sum_m C_lm s_{nlm}^2`` and the 4-body / 5-body invariants
   (``C4B``, ``C5B`` of :mod:`.model`), in the descriptor order of the array code;
3. the network with the weight set of t_a (NEP4) or the shared one (NEP3): U_a and dU/dq;
4. the pull-back ``dU/ds_{nlm}`` (:meth:`NEPEvaluator.angular_pullback`'s formulas);
5. second pass over the pairs: ``dE/dd_p = (sum_n dU/dq_n g_n'(r)) u`` (radial) ``+ (sum_{nlm} dU/ds_{nlm}
   g_n'(r) Y_lm) u + (dU/du - (dU/du . u) u) / r`` with ``dU/du = sum_{nlm} dU/ds_{nlm} g_n(r) dY_lm/du``.

Sizes compiled in, parameters passed as arrays: the table sizes (types, n_max, basis sizes, l_max and
the 4-/5-body flags, neurons, descriptor length, NEP3 or NEP4) fix the local arrays of a thread, so they
are ``#define`` constants and each model shape compiles its own kernel once (cached by its source).  The
parameters (cut-offs, c coefficients, weights, biases, scaler, the harmonics' integer tables) are kernel
arguments read at each call, so a fit that changes them in place needs no recompile, and the source of
one shape serves every model of that shape (the compile cache is keyed by source).

ZBL (``nep*_zbl``): the second pass adds each pair's ``phi(r) / 2`` and its gradient (module docstring
of :mod:`.model`); universal, typewise and flexible ZBL differ only in their parameters, so one table of
``ZBL_COLS`` values per type pair (:func:`zbl_table`: switch radii, ``K Z_i Z_j``, ``1/a``, the four
screening pairs) serves all three and the kernel has one ZBL branch (compiled in only for ZBL models).

The same source compiles as plain C++ (``NEP_HOST`` defined: an OpenMP loop over the atoms instead of a
grid): :mod:`training.nep.host_kernel` builds it as the default CPU path; :func:`gpu_launcher` builds it
with CuPy's ``RawModule`` for the CuPy path of ``md_gpu.forcefields.nep``.  ``tests/test_nep_host_kernel.py``
checks the kernel's arithmetic against the array code on any machine with a C++ compiler.

Run-time self-check (:func:`verify`): the first launch of each compiled kernel writes into outputs
filled with NaN and is checked against the array code on the atoms of
:func:`common.atom_kernels.sample_atoms`, and so is a launch on a probe with every species and species
pair (:func:`common.atom_kernels.species_probe`), so that a compiler or device problem stops the run with
:class:`KernelMismatch` instead of giving wrong forces.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
from ase.data import atomic_numbers

from common import atom_kernels
from common.atom_kernels import device_copies, evaluate_checked, kept_tables

from .model import C4B, C5B, K_COULOMB, ZBL_INV_A, ZBL_UNIVERSAL
from .nep_file import COVALENT_RADIUS

THREADS_PER_BLOCK = 128
KernelMismatch = atom_kernels.KernelMismatch  # what :func:`verify` raises
ZBL_COLS = 13  # per type pair: r1, r2, K Z_i Z_j, 1 / a, largest angular cut-off, (c, b) x 4

KERNEL_BODY = r"""
#ifdef NEP_HOST
#define DEVICE static inline
#else
#define DEVICE __device__ __forceinline__
#endif
#define NEP_PI 3.14159265358979323846
#define KMAX (KR > KA ? KR : KA)
#define NMAX (NR > NA ? NR : NA)

// f_k(r) = (T_k(x) + 1) / 2 f_c(r) and df_k/dr, k < K, x = 2 (r / rc - 1)^2 - 1 (model.py _chebyshev_basis)
DEVICE void nep_basis(double r, double rc, int K, double* f, double* fp) {
    const double fc = 0.5 + 0.5 * cos(NEP_PI * r / rc);
    const double fcp = -0.5 * NEP_PI / rc * sin(NEP_PI * r / rc);
    const double y = r / rc - 1.0;
    const double x = 2.0 * y * y - 1.0;
    const double dxdr_half = 2.0 * y / rc;
    double t0 = 1.0, t1 = x, u0 = 1.0, u1 = 2.0 * x;  // T_k and U_k (dT_k/dx = k U_(k-1))
    f[0] = fc; fp[0] = fcp;
    for (int k = 1; k < K; ++k) {
        if (k >= 2) {
            const double t2 = 2.0 * x * t1 - t0, u2 = 2.0 * x * u1 - u0;
            t0 = t1; t1 = t2; u0 = u1; u1 = u2;
        }
        const double half = 0.5 * (t1 + 1.0);
        f[k] = half * fc;
        fp[k] = k * u0 * dxdr_half * fc + half * fcp;
    }
}

// g_n(r), g_n'(r) = sum_k c[n][k] f_k, n < N, of coefficient block c [N][K]
DEVICE void nep_radial(const double* c, int N, int K, const double* f, const double* fp, double* g, double* gp) {
    for (int n = 0; n < N; ++n) {
        double v = 0.0, dv = 0.0;
        for (int k = 0; k < K; ++k) { v += c[n * K + k] * f[k]; dv += c[n * K + k] * fp[k]; }
        g[n] = v; gp[n] = dv;
    }
}

// Y_lm(u) [NLM] and, when dy is not null, dY_lm/du [NLM][3] (model.py NEPEvaluator._harmonics)
DEVICE void nep_harmonics(double ux, double uy, double uz, const double* hz, const int* hm, const int* hpart,
                          double* yv, double* dy) {
    double zp[LH + 1], dzp[LH + 1], re[LH + 1], im[LH + 1];
    zp[0] = 1.0; dzp[0] = 0.0; re[0] = 1.0; im[0] = 0.0;
    for (int k = 1; k <= LH; ++k) {
        zp[k] = zp[k - 1] * uz;
        dzp[k] = zp[k - 1] * k;
        re[k] = re[k - 1] * ux - im[k - 1] * uy;
        im[k] = re[k - 1] * uy + im[k - 1] * ux;
    }
    for (int lm = 0; lm < NLM; ++lm) {
        double zf = 0.0, dzf = 0.0;
        for (int k = 0; k <= LH; ++k) { zf += hz[lm * (LH + 1) + k] * zp[k]; dzf += hz[lm * (LH + 1) + k] * dzp[k]; }
        const int m = hm[lm], m1 = m > 0 ? m - 1 : 0;
        const double cm = hpart[lm] ? im[m] : re[m];
        yv[lm] = zf * cm;
        if (dy) {
            const double dcx = m * (hpart[lm] ? im[m1] : re[m1]);
            const double dcy = m * (hpart[lm] ? re[m1] : -im[m1]);
            dy[3 * lm] = zf * dcx; dy[3 * lm + 1] = zf * dcy; dy[3 * lm + 2] = dzf * cm;
        }
    }
}

// One centre atom: site energy and the gradients of all its pairs.
DEVICE void nep_atom(long long a, const long long* offsets, const long long* types, const long long* pair_types,
                     const double* d, const double* rc_r, const double* rc_a, const double* c_r, const double* c_a,
                     const double* w0, const double* b0, const double* w1, const double* b1, const double* scaler,
                     const double* hz, const int* hm, const int* hpart, const double* hw, const int* hl,
                     const double* zbl, double* energies, double* de_dd) {
    double q[DIM], fpq[DIM], s[NA * NLM], dus[NA * NLM], hid[N1];
    double f[KMAX], fp[KMAX], g[NMAX], gp[NMAX], yv[NLM], dy[3 * NLM];
    const int ta = (int)types[a];
    const long long first = offsets[a], last = offsets[a + 1];
    for (int k = 0; k < DIM; ++k) q[k] = 0.0;
    for (int k = 0; k < NA * NLM; ++k) s[k] = 0.0;
    // 1. forward over the pairs
    for (long long p = first; p < last; ++p) {
        const double dx = d[3 * p], dy_ = d[3 * p + 1], dz = d[3 * p + 2];
        const double r = sqrt(dx * dx + dy_ * dy_ + dz * dz);
        const int pt = (int)pair_types[p], tj = pt % NTYPES;
        const double rcr = 0.5 * (rc_r[ta] + rc_r[tj]), rca = 0.5 * (rc_a[ta] + rc_a[tj]);
        if (r < rcr) {
            nep_basis(r, rcr, KR, f, fp);
            nep_radial(c_r + (long long)pt * NR * KR, NR, KR, f, fp, g, gp);
            for (int n = 0; n < NR; ++n) q[n] += g[n];
        }
        if (NUML > 0 && r < rca) {
            nep_basis(r, rca, KA, f, fp);
            nep_radial(c_a + (long long)pt * NA * KA, NA, KA, f, fp, g, gp);
            nep_harmonics(dx / r, dy_ / r, dz / r, hz, hm, hpart, yv, 0);
            for (int n = 0; n < NA; ++n)
                for (int lm = 0; lm < NLM; ++lm) s[n * NLM + lm] += g[n] * yv[lm];
        }
    }
    // 2. angular descriptors: q_nl (l = 1..L3), then the 4-body and 5-body blocks
    for (int lm = 0; lm < NLM; ++lm) {
        if (hl[lm] > L3) continue;
        for (int n = 0; n < NA; ++n) q[NR + (hl[lm] - 1) * NA + n] += hw[lm] * s[n * NLM + lm] * s[n * NLM + lm];
    }
    if (Q222)
        for (int n = 0; n < NA; ++n) {
            const double* sn = s + n * NLM;
            const double s3 = sn[3], s4 = sn[4], s5 = sn[5], s6 = sn[6], s7 = sn[7];
            q[NR + L3 * NA + n] = C4B0 * s3 * s3 * s3 + C4B1 * s3 * (s4 * s4 + s5 * s5) + C4B2 * s3 * (s6 * s6 + s7 * s7)
                                  + C4B3 * s6 * (s5 * s5 - s4 * s4) + C4B4 * s4 * s5 * s7;
        }
    if (Q1111)
        for (int n = 0; n < NA; ++n) {
            const double* sn = s + n * NLM;
            const double s0 = sn[0] * sn[0], s12 = sn[1] * sn[1] + sn[2] * sn[2];
            q[NR + (L3 + Q222) * NA + n] = C5B0 * s0 * s0 + C5B1 * s0 * s12 + C5B2 * s12 * s12;
        }
    // 3. network: U = sum_h w1_h tanh(sum_d w0_hd q_d scaler_d - b0_h) - b1
    const int set = NSETS == 1 ? 0 : ta;
    const double* W0 = w0 + (long long)set * N1 * DIM;
    const double* B0 = b0 + set * N1;
    const double* W1 = w1 + set * N1;
    double e = 0.0;
    for (int k = 0; k < DIM; ++k) fpq[k] = 0.0;
    for (int h = 0; h < N1; ++h) {
        double z = 0.0;
        for (int k = 0; k < DIM; ++k) z += W0[h * DIM + k] * (q[k] * scaler[k]);
        hid[h] = tanh(z - B0[h]);
        e += W1[h] * hid[h];
    }
    for (int h = 0; h < N1; ++h) {
        const double w = (1.0 - hid[h] * hid[h]) * W1[h];
        for (int k = 0; k < DIM; ++k) fpq[k] += w * W0[h * DIM + k];
    }
    for (int k = 0; k < DIM; ++k) fpq[k] *= scaler[k];
    // 4. dU/ds
    for (int n = 0; n < NA; ++n)
        for (int lm = 0; lm < NLM; ++lm)
            dus[n * NLM + lm] = hl[lm] <= L3 ? 2.0 * hw[lm] * s[n * NLM + lm] * fpq[NR + (hl[lm] - 1) * NA + n] : 0.0;
    if (Q222)
        for (int n = 0; n < NA; ++n) {
            const double* sn = s + n * NLM;
            double* dn = dus + n * NLM;
            const double fq = fpq[NR + L3 * NA + n];
            const double s3 = sn[3], s4 = sn[4], s5 = sn[5], s6 = sn[6], s7 = sn[7];
            dn[3] += fq * (3 * C4B0 * s3 * s3 + C4B1 * (s4 * s4 + s5 * s5) + C4B2 * (s6 * s6 + s7 * s7));
            dn[4] += fq * (2 * C4B1 * s3 * s4 - 2 * C4B3 * s6 * s4 + C4B4 * s5 * s7);
            dn[5] += fq * (2 * C4B1 * s3 * s5 + 2 * C4B3 * s6 * s5 + C4B4 * s4 * s7);
            dn[6] += fq * (2 * C4B2 * s3 * s6 + C4B3 * (s5 * s5 - s4 * s4));
            dn[7] += fq * (2 * C4B2 * s3 * s7 + C4B4 * s4 * s5);
        }
    if (Q1111)
        for (int n = 0; n < NA; ++n) {
            const double* sn = s + n * NLM;
            double* dn = dus + n * NLM;
            const double fq = fpq[NR + (L3 + Q222) * NA + n];
            const double s0 = sn[0], s1 = sn[1], s2 = sn[2], s12 = s1 * s1 + s2 * s2;
            dn[0] += fq * (4 * C5B0 * s0 * s0 * s0 + 2 * C5B1 * s0 * s12);
            const double common = 2 * C5B1 * s0 * s0 + 4 * C5B2 * s12;
            dn[1] += fq * common * s1;
            dn[2] += fq * common * s2;
        }
    // 5. back to the pairs (and the ZBL pair term)
    double ezbl = 0.0;
    for (long long p = first; p < last; ++p) {
        const double dx = d[3 * p], dy_ = d[3 * p + 1], dz = d[3 * p + 2];
        const double r = sqrt(dx * dx + dy_ * dy_ + dz * dz);
        const int pt = (int)pair_types[p], tj = pt % NTYPES;
        const double rcr = 0.5 * (rc_r[ta] + rc_r[tj]), rca = 0.5 * (rc_a[ta] + rc_a[tj]);
        const double ux = dx / r, uy = dy_ / r, uz = dz / r;
        double along = 0.0, gx = 0.0, gy = 0.0, gz = 0.0;
        if (r < rcr) {
            nep_basis(r, rcr, KR, f, fp);
            nep_radial(c_r + (long long)pt * NR * KR, NR, KR, f, fp, g, gp);
            for (int n = 0; n < NR; ++n) along += fpq[n] * gp[n];
        }
        if (NUML > 0 && r < rca) {
            nep_basis(r, rca, KA, f, fp);
            nep_radial(c_a + (long long)pt * NA * KA, NA, KA, f, fp, g, gp);
            nep_harmonics(ux, uy, uz, hz, hm, hpart, yv, dy);
            double dudr = 0.0, dux = 0.0, duy = 0.0, duz = 0.0;
            for (int lm = 0; lm < NLM; ++lm) {
                double du_dy = 0.0, du_dg = 0.0;
                for (int n = 0; n < NA; ++n) { du_dy += dus[n * NLM + lm] * g[n]; du_dg += dus[n * NLM + lm] * gp[n]; }
                dudr += du_dg * yv[lm];
                dux += du_dy * dy[3 * lm]; duy += du_dy * dy[3 * lm + 1]; duz += du_dy * dy[3 * lm + 2];
            }
            const double radial = dux * ux + duy * uy + duz * uz;
            along += dudr;
            gx = (dux - radial * ux) / r; gy = (duy - radial * uy) / r; gz = (duz - radial * uz) / r;
        }
        if (ZBL) {  // phi(r) / 2 of the pair's ZBL row: r1, r2, K Z_i Z_j, 1 / a, r_max, (c, b) x 4
            const double* z = zbl + pt * ZBL_COLS;
            if (r < z[4]) {
                const double r1 = z[0], r2 = z[1], inv_a = z[3], x = r * inv_a;
                double phi = 0.0, dphi = 0.0;
                for (int k = 0; k < 4; ++k) {
                    const double term = z[5 + 2 * k] * exp(-z[6 + 2 * k] * x);
                    phi += term; dphi -= z[6 + 2 * k] * term;
                }
                const double fz = z[2] * phi / r, fzp = z[2] * dphi * inv_a / r - fz / r;
                const double width = r2 - r1;
                double arg = (r - r1) / width;
                arg = arg < 0.0 ? 0.0 : (arg > 1.0 ? 1.0 : arg);
                const double fc = r < r2 ? 0.5 + 0.5 * cos(NEP_PI * arg) : 0.0;
                const double fcp = (r >= r1 && r < r2) ? -0.5 * NEP_PI / width * sin(NEP_PI * arg) : 0.0;
                ezbl += 0.5 * (fz * fc);
                along += 0.5 * (fzp * fc + fz * fcp);
            }
        }
        de_dd[3 * p] = along * ux + gx; de_dd[3 * p + 1] = along * uy + gy; de_dd[3 * p + 2] = along * uz + gz;
    }
    energies[a] = (e - b1[0]) + ezbl;
}

#define NEP_ARGS const long long* offsets, const long long* types, const long long* pair_types, const double* d, \
    const double* rc_r, const double* rc_a, const double* c_r, const double* c_a, const double* w0, const double* b0, \
    const double* w1, const double* b1, const double* scaler, const double* hz, const int* hm, const int* hpart, \
    const double* hw, const int* hl, const double* zbl, double* energies, double* de_dd
#define NEP_CALL(a) nep_atom(a, offsets, types, pair_types, d, rc_r, rc_a, c_r, c_a, w0, b0, w1, b1, scaler, hz, hm, \
    hpart, hw, hl, zbl, energies, de_dd)

#ifdef NEP_HOST
extern "C" void nep_evaluate(long long n_atoms, NEP_ARGS) {
    #pragma omp parallel for schedule(dynamic, 16)
    for (long long a = 0; a < n_atoms; ++a) NEP_CALL(a);
}
#else
extern "C" __global__ void nep_evaluate(long long n_atoms, NEP_ARGS) {
    const long long a = blockDim.x * (long long)blockIdx.x + threadIdx.x;
    if (a < n_atoms) NEP_CALL(a);
}
#endif
"""


class KernelTables:
    """A model's shape compiled into the kernel source, and its parameters in the kernel's layouts.

    ``source``: the ``#define`` sizes + :data:`KERNEL_BODY`; ``arrays(model, xp)``: the parameter
    arguments, read from the model at each call (in-place changes need no new kernel).
    """

    def __init__(self, evaluator):
        m = evaluator.model
        z_tab, ms, parts, ells, weights = evaluator.harmonics
        self.harmonics = [np.ascontiguousarray(z_tab, dtype=float), np.ascontiguousarray(ms, dtype=np.int32),
                          np.ascontiguousarray(parts, dtype=np.int32), np.ascontiguousarray(weights, dtype=float),
                          np.ascontiguousarray(ells, dtype=np.int32)]
        defines = {"NTYPES": m.n_types, "NR": m.n_max[0] + 1, "KR": m.basis_size[0] + 1, "NA": m.n_max[1] + 1,
                   "KA": m.basis_size[1] + 1, "L3": m.l_max_3body, "LH": z_tab.shape[1] - 1, "NLM": len(ms),
                   "Q222": int(m.has_q_222), "Q1111": int(m.has_q_1111), "NUML": m.num_l, "DIM": m.dim,
                   "N1": m.num_neurons, "NSETS": 1 if m.version == 3 else m.n_types, "ZBL": int(m.zbl is not None),
                   "ZBL_COLS": ZBL_COLS}
        defines.update({f"C4B{k}": repr(float(c)) for k, c in enumerate(C4B)})
        defines.update({f"C5B{k}": repr(float(c)) for k, c in enumerate(C5B)})
        self.source = "".join(f"#define {k} {v}\n" for k, v in defines.items()) + KERNEL_BODY
        self._device: dict = {}
        self._zbl = None  # (the model's ZBL parameters, zbl_table of them)
        self.verified: set = set()  # launchers whose first result (and the species probe) was checked

    def _zbl_table(self, model) -> np.ndarray:
        key = (model.species, model.zbl, model.zbl_factor, None if model.zbl_flexible is None else
               np.asarray(model.zbl_flexible).tobytes(), np.asarray(model.rc_angular).tobytes())
        if self._zbl is None or self._zbl[0] != key:
            self._zbl = (key, zbl_table(model))
        return self._zbl[1]

    def arrays(self, model, xp) -> list:
        """The kernel's parameter arguments on ``xp`` (order of ``NEP_ARGS`` after ``d``); device copies
        are kept while the parameters stay the same."""
        t = model.n_types

        def pair_major(c):  # [n, k, T, T] -> [T*T][n][k]
            return np.ascontiguousarray(np.transpose(c, (2, 3, 0, 1)).reshape(t * t, -1), dtype=float).reshape(-1)

        host = [np.ascontiguousarray(model.rc_radial, dtype=float), np.ascontiguousarray(model.rc_angular, dtype=float),
                pair_major(model.c_radial), pair_major(model.c_angular),
                np.ascontiguousarray(model.w0, dtype=float).reshape(-1),
                np.ascontiguousarray(model.b0, dtype=float).reshape(-1),
                np.ascontiguousarray(model.w1, dtype=float).reshape(-1), np.array([float(model.b1)]),
                np.ascontiguousarray(model.q_scaler, dtype=float), *self.harmonics, self._zbl_table(model)]
        return host if xp is np else device_copies(self._device, host, xp)


def zbl_table(model) -> np.ndarray:
    """The ZBL parameters of every type pair ``t_i T + t_j`` as rows of ``ZBL_COLS`` (flattened):
    r1, r2 (Å; the switch), ``K_COULOMB Z_i Z_j`` (eV Å), ``1 / a`` (1/Å), the largest angular cut-off
    (Å), then four (c, b) screening pairs -- universal, typewise or flexible as :meth:`NEPEvaluator._zbl`
    reads them (one zero row when the model has no ZBL)."""
    if model.zbl is None:
        return np.zeros(ZBL_COLS)
    t = model.n_types
    z = np.array([atomic_numbers[e] for e in model.species], dtype=float)
    rows = np.zeros((t, t, ZBL_COLS))
    for a in range(t):
        for b in range(t):
            if model.zbl == (0.0, 0.0):  # flexible: r1, r2, (c, b) x 4 of the unordered pair
                t1, t2 = min(a, b), max(a, b)
                para = np.asarray(model.zbl_flexible)[t1 * t - (t1 * (t1 - 1)) // 2 + (t2 - t1)]
                r1, r2, screen = para[0], para[1], para[2:10]
            else:
                (r1, r2), screen = model.zbl, np.ravel(ZBL_UNIVERSAL)
                if model.zbl_factor is not None:
                    r1 = 0.0
                    r2 = min(model.zbl_factor * (COVALENT_RADIUS[int(z[a]) - 1] + COVALENT_RADIUS[int(z[b]) - 1]), r2)
            rows[a, b, :5] = (r1, r2, K_COULOMB * z[a] * z[b], (z[a] ** 0.23 + z[b] ** 0.23) * ZBL_INV_A,
                              float(np.max(model.rc_angular)))
            rows[a, b, 5:] = screen
    return rows.reshape(-1)


def tables(evaluator) -> KernelTables:
    """The :class:`KernelTables` of an evaluator's model (kept on the evaluator; rebuilt when the
    model's shape changes)."""
    m = evaluator.model
    key = (m.version, m.n_types, tuple(m.n_max), tuple(m.basis_size), tuple(m.l_max), m.num_neurons,
           m.zbl is not None)
    return kept_tables(evaluator, key, lambda: KernelTables(evaluator))


@functools.lru_cache(maxsize=16)
def gpu_launcher(source: str):
    """``launch(n_atoms, args)``: the CUDA build of ``source`` (CuPy ``RawModule``) on a grid of one thread
    per atom, or None (one warning) when NVRTC cannot compile it: the caller then runs the array code."""
    import cupy
    from cupy.cuda.compiler import CompileException

    try:
        kernel = cupy.RawModule(code=source, options=("-std=c++14",)).get_function("nep_evaluate")
    except CompileException as exc:
        warnings.warn(f"the CUDA build of the fused NEP kernel (training/nep/fused.py) failed ({str(exc)[:300]}); "
                      "running the NEP array code on the GPU instead", RuntimeWarning, stacklevel=2)
        return None

    def launch(n_atoms, args):
        blocks = (n_atoms + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
        kernel((blocks,), (THREADS_PER_BLOCK,), (cupy.int64(n_atoms), *args))

    return launch


def evaluate(evaluator, types, i, j, d, *, xp=None, launcher=gpu_launcher):
    """Site energies [n] (eV) and dE/dd [p, 3] (eV/Å): the contract of ``NEPEvaluator.evaluate`` (FULL
    pair list i, j [p], d [p, 3] Å = r_j + shift - r_i, types [n]).  ``xp`` defaults to CuPy;
    ``launcher(source)`` returns ``launch(n_atoms, args)`` (:func:`gpu_launcher`, or the host build of
    :mod:`.host_kernel` with ``xp=numpy``) or None: then the array code runs.  The first launch of each
    launcher is checked against the array code (:func:`verify`), with the species probe."""
    if xp is None:
        import cupy as xp
    model = evaluator.model
    kt = tables(evaluator)
    launch = launcher(kt.source)
    if launch is None:
        return evaluator.evaluate(xp.asarray(types), xp.asarray(i), xp.asarray(j), xp.asarray(d), xp=xp)
    return evaluate_checked(launch, launcher, kt.verified, types, i, j, d, model.n_types, kt.arrays(model, xp), xp,
                            lambda *result: verify(evaluator, *result, xp), probe_radii=probe_radii(model))


def probe_radii(model) -> tuple[float, float]:
    """Pair distances (Å) of the self-check's species probe: 0.3-0.95 of the smallest cut-off, so every pair
    has radial and angular terms (and ZBL, where the model has one, near its short end)."""
    rc = min(float(np.min(model.rc_radial)), float(np.min(model.rc_angular)))
    return 0.3 * rc, 0.95 * rc


def verify(evaluator, types, i, j, d, energies, de_dd, xp, *, sample=None) -> None:
    """Check a kernel result (energies [n], de_dd [p, 3], written into NaN-filled outputs) against the
    array code (``NEPEvaluator.evaluate``): :func:`common.atom_kernels.verify` (every entry finite, the
    ``sample`` atoms -- default :func:`common.atom_kernels.sample_atoms` for blocks of
    ``THREADS_PER_BLOCK`` -- equal to its tolerance), :class:`KernelMismatch` otherwise.  Done once per
    kernel and process, and on the species probe."""
    atom_kernels.verify("the fused NEP kernel (training/nep/fused.py)",
                        lambda *pairs: evaluator.evaluate(*pairs, xp=xp), types, i, j, d, energies, de_dd,
                        evaluator.model.n_types, xp, threads_per_block=THREADS_PER_BLOCK, sample=sample,
                        advice=_ADVICE)


_ADVICE = ("run the array code instead (MULTISCALE_CPU_KERNELS=numpy on the CPU, MULTISCALE_BACKEND=numpy "
           "for a GPU) and report the compiler or device and CuPy version")
