r"""Full neighbour lists by cell lists in compiled code (C++, OpenMP), for any cell: bulk or sheet,
orthorhombic or triclinic, cells shorter than the cut-off included.

Contract: :func:`cell_list_pairs(positions, cell, pbc, r_list, *, images=True, vectors=True)` returns
``i [p]``, ``j [p]`` (int64, sorted by ``i``), ``images [p, 3]`` (int64; None without ``images``) and
``d [p, 3]`` (Å; None without ``vectors``) such that every ordered pair of atoms (and periodic image, an
atom's own images included) with ``|d| < r_list`` appears once, with ``d = w_j + images @ cell - w_i``
where ``w = positions - floor(frac) @ cell`` are the positions folded into the cell along the periodic
directions (``frac = positions @ cell^-1``; non-periodic directions are not folded), so ``d =
positions[j] + images @ cell - positions[i]`` to round-off.  It is ``None`` when compiled kernels are off
or cannot be built (:mod:`common.native`); callers then use their array code
(:func:`training.mtp.neighbors.neighbor_pairs`, :func:`md_gpu.neighbors.build_pairs`), which the tests
compare this list with.  A periodic direction with a cell of zero volume is a ``ValueError``.

Method.  Binning (that of ``md_gpu.neighbors``): bins in fractional coordinates of the cell (of the
Cartesian axes for a structure without a cell), so triclinic cells need nothing special.  Along a
direction k of perpendicular width ``w_k`` (the cell's, or the atoms' extent where it is not periodic)
there are ``n_k = max(1, floor(BINS_PER_RANGE w_k / r_list))`` bins (at most about 4 bins per atom in
all), and two points closer than ``r_list`` are at most ``m_k = ceil(r_list n_k / w_k)`` bins apart; when
``2 m_k + 1 > n_k`` (small cells) the offsets wrap around several times, each time with its own image, so
no pair is missed or listed twice.  A non-periodic direction is not wrapped.  A counting sort puts the
atoms and their folded positions into bin order, so the candidates of one stencil column (consecutive
z-bins with one image) are one contiguous run.

Pruning: with ``u_k = frac_k w_k`` (Å), a pair vector is ``d = du M`` with the rows ``M_k = a_k / w_k``,
so ``|d|^2 >= lambda |du|^2`` with ``lambda`` the smallest eigenvalue of ``M M^T`` (1 for orthorhombic
cells; in closed form, Smith, Commun. ACM 4, 168 (1961)).  Each centre atom skips the x-y columns and
the z-bins at the ends of a column whose gaps ``du`` to the atom already give ``lambda |du|^2 >= r_list^2``
(with a relative margin of 1e-9 against round-off), so the candidates approach the sphere.

Scan: one pass over the centre atoms in index order tests the candidates and writes the kept ones
directly into the caller's arrays, already sorted by ``i``.  Each candidate is stored and the write
position advances only when it is kept (no branch on the distance test); ``d`` is the tested vector.
Without ``images``, a host with AVX-512 tests eight candidates at a time and compresses the kept ones
into place, a host with AVX2 four (the lanes moved by a permutation table); ``common.native`` builds with
``-march=native``.  The arithmetic is the same, so the list is the same bit for bit as the scalar scan's
(:data:`SCANS`, checked by the tests).  Measured (one thread, 864-atom rattled fcc Cu, r_list 5 Å: 36 984
pairs; the compiled level-10 evaluation takes 5.4 ms; AMD EPYC with AVX-512): 0.30 ms per list through
:func:`training.mtp.neighbors.neighbor_pairs` with the AVX-512 scan, 0.35 ms with the AVX2 one, 0.51 ms
with the scalar one.

Capacity: the caller passes arrays of ``capacity`` pairs (its estimate: 1.25 times the pairs per atom of
the last list of the same ``r_list``); when they are too short the kernel stops writing, keeps counting
and returns a capacity that suffices, and :func:`cell_list_pairs` calls it again with that.  Threads:
above ``PARALLEL_MIN_ATOMS`` atoms each OpenMP thread takes a contiguous range of centre atoms and writes
into its share of the arrays; the shares are then moved together, so the list is the same, in the same
order, for any thread count.
"""
from __future__ import annotations

import ctypes

import numpy as np

from common.native import FLAGS, load_library, pointer

SOURCE = r"""
#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>
#if defined(__AVX512F__) && !defined(CELL_LIST_SCALAR)
#define CELL_LIST_AVX512 1
#elif defined(__AVX2__) && !defined(CELL_LIST_SCALAR)
#define CELL_LIST_AVX2 1
#endif
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

// bins per r_list along each direction (measured fastest on 864-atom fcc Cu: bins of r_list suit the vector
// scans, which pay little per candidate and much per run; the scalar scan prefers more, smaller bins).  By
// the host, not by CELL_LIST_SCALAR, so that the scalar build lists the pairs in the same order
#if defined(__AVX512F__) || defined(__AVX2__)
#define BINS_PER_RANGE 1.0
#else
#define BINS_PER_RANGE 1.5
#endif
#define MAX_BINS_PER_ATOM 4.0
#define PARALLEL_MIN_ATOMS 4096  // below this a list takes well under a millisecond: threads would cost more

namespace {
struct Grid {
    long long nb[3], reach[3];
    double frame[9];                    // rows: the binning frame (the cell, or the Cartesian axes)
    std::vector<long long> bin3;        // bin of each atom along each direction [n, 3]
    std::vector<long long> start;       // CSR: atoms of bin b are bin order start[b] .. start[b+1]-1
    std::vector<long long> atoms;       // atom index in bin order [n]
    std::vector<double> w;              // folded positions [n, 3]
    std::vector<double> xs, ys, zs;     // folded positions in bin order [n] each
    double h[3];                        // bin width along each direction (Å, perpendicular)
    std::vector<double> ub;             // each atom's distance from the lower face of its bin [n, 3] (Å)
    double reach2;                      // r_list^2 / lambda_min: prune bins whose gaps u satisfy |u|^2 >= reach2
    std::vector<long long> fold;        // floor(frac) along periodic directions [n, 3]
    std::vector<long long> folds;       // the same in bin order [n, 3]
    // x and y: per bin c and offset o = -reach..reach (row c * (2 reach + 1) + o + reach): the target bin
    // (-1 outside a non-periodic direction) and its image
    std::vector<long long> target[2], image[2];
    // z: per bin c, runs (first offset, last offset, first target bin, image) of consecutive bins with one image
    std::vector<long long> zrun_start, zruns;
};

double det3(const double* m) {
    return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6]);
}

// frame, its inverse and perpendicular widths; false for a periodic direction without a full-rank cell
bool make_frame(const double* cell, const int* pbc, double* frame, double* inv, double* width) {
    const double det = det3(cell), volume = std::fabs(det);
    if (volume < 1e-12) {
        if (pbc[0] || pbc[1] || pbc[2]) return false;
        for (int k = 0; k < 9; ++k) frame[k] = inv[k] = (k % 4 == 0) ? 1.0 : 0.0;
        width[0] = width[1] = width[2] = 1.0;
        return true;
    }
    for (int k = 0; k < 9; ++k) frame[k] = cell[k];
    for (int k = 0; k < 3; ++k) {
        const double* a = cell + 3 * ((k + 1) % 3);
        const double* b = cell + 3 * ((k + 2) % 3);
        const double c[3] = {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
        width[k] = volume / std::sqrt(c[0] * c[0] + c[1] * c[1] + c[2] * c[2]);
        for (int r = 0; r < 3; ++r) inv[3 * r + k] = c[r] / det;  // column k of cell^-1: (a_{k+1} x a_{k+2}) / det
    }
    return true;
}

// smallest eigenvalue of G_kl = (a_k . a_l) / (w_k w_l) (rows a_k of the frame, widths w_k), made a little
// smaller against round-off: with u = frac * w (Å along each direction), |d|^2 = du G du >= lambda |du|^2
// (eigenvalues of a symmetric 3x3 matrix in closed form; Smith, Commun. ACM 4, 168 (1961))
double smallest_metric_eigenvalue(const double* frame, const double* width) {
    double G[3][3];
    for (int k = 0; k < 3; ++k)
        for (int l = 0; l < 3; ++l)
            G[k][l] = (frame[3 * k] * frame[3 * l] + frame[3 * k + 1] * frame[3 * l + 1] +
                       frame[3 * k + 2] * frame[3 * l + 2]) / (width[k] * width[l]);
    const double off = G[0][1] * G[0][1] + G[0][2] * G[0][2] + G[1][2] * G[1][2];
    double lambda;
    if (off == 0.0) {
        lambda = std::fmin(G[0][0], std::fmin(G[1][1], G[2][2]));
    } else {
        const double q = (G[0][0] + G[1][1] + G[2][2]) / 3.0;
        const double p = std::sqrt(((G[0][0] - q) * (G[0][0] - q) + (G[1][1] - q) * (G[1][1] - q) +
                                    (G[2][2] - q) * (G[2][2] - q) + 2.0 * off) / 6.0);
        double B[9];
        for (int k = 0; k < 3; ++k)
            for (int l = 0; l < 3; ++l) B[3 * k + l] = (G[k][l] - (k == l ? q : 0.0)) / p;
        const double r = std::fmax(-1.0, std::fmin(1.0, det3(B) / 2.0));
        lambda = q + 2.0 * p * std::cos(std::acos(r) / 3.0 + 2.0943951023931957);  // + 2 pi / 3
    }
    return std::fmax(lambda * (1.0 - 1e-9) - 1e-12, 1e-300);
}

bool make_grid(Grid& g, long long n, const double* pos, const double* cell, const int* pbc, double r_list) {
    double inv[9], width[3];
    if (!make_frame(cell, pbc, g.frame, inv, width)) return false;
    std::vector<double> frac(3 * n);
    for (long long a = 0; a < n; ++a)
        for (int k = 0; k < 3; ++k)
            frac[3 * a + k] = pos[3 * a] * inv[k] + pos[3 * a + 1] * inv[3 + k] + pos[3 * a + 2] * inv[6 + k];
    // extent along k (Å, perpendicular): the cell's width, or the atoms' spread where not periodic
    double lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0}, extent[3];
    for (int k = 0; k < 3; ++k) {
        if (!pbc[k] && n) {
            lo[k] = hi[k] = frac[k];
            for (long long a = 1; a < n; ++a) {
                lo[k] = std::fmin(lo[k], frac[3 * a + k]); hi[k] = std::fmax(hi[k], frac[3 * a + k]);
            }
        }
        extent[k] = pbc[k] ? width[k] : (hi[k] - lo[k]) * width[k];
        g.nb[k] = std::max(1LL, (long long)std::floor(BINS_PER_RANGE * extent[k] / r_list));
    }
    // at most MAX_BINS_PER_ATOM bins per atom (a short r_list must not make a huge empty grid)
    const double bins = (double)g.nb[0] * g.nb[1] * g.nb[2], limit = MAX_BINS_PER_ATOM * (double)n + 64.0;
    if (bins > limit)
        for (int k = 0; k < 3; ++k)
            g.nb[k] = std::max(1LL, (long long)std::floor(g.nb[k] * std::cbrt(limit / bins)));
    g.bin3.assign(3 * n, 0); g.fold.assign(3 * n, 0); g.ub.assign(3 * n, 0.0);
    for (int k = 0; k < 3; ++k) {
        // two points closer than r_list are at most `reach` bins apart
        g.reach[k] = g.nb[k] == 1 && !pbc[k] ? 0 : (long long)std::ceil(r_list * g.nb[k] / extent[k] - 1e-12);
        if (!pbc[k]) g.reach[k] = std::min(g.reach[k], g.nb[k] - 1);
        const double scale = pbc[k] ? (double)g.nb[k] : g.nb[k] / std::fmax(hi[k] - lo[k], 1e-300);
        g.h[k] = extent[k] / g.nb[k];
        for (long long a = 0; a < n; ++a) {
            double f = frac[3 * a + k];
            if (pbc[k]) {
                const double fl = std::floor(f);
                g.fold[3 * a + k] = (long long)fl;
                f -= fl;
            } else {
                f -= lo[k];
            }
            long long b = (long long)(f * scale);
            b = b < 0 ? 0 : (b >= g.nb[k] ? g.nb[k] - 1 : b);
            g.bin3[3 * a + k] = b;
            g.ub[3 * a + k] = f * width[k] - b * g.h[k];
        }
    }
    g.reach2 = r_list * r_list * (1.0 + 1e-9) / smallest_metric_eigenvalue(g.frame, width);
    // target bins and images of each offset (x, y: a table; z: runs of consecutive bins)
    for (int k = 0; k < 3; ++k) {
        const long long width_o = 2 * g.reach[k] + 1;
        std::vector<long long> target(g.nb[k] * width_o, -1), image(g.nb[k] * width_o, 0);
        for (long long c = 0; c < g.nb[k]; ++c)
            for (long long o = -g.reach[k]; o <= g.reach[k]; ++o) {
                long long v = c + o, img = 0;
                if (pbc[k]) {
                    img = v >= 0 ? v / g.nb[k] : -((-v + g.nb[k] - 1) / g.nb[k]);
                    v -= img * g.nb[k];
                } else if (v < 0 || v >= g.nb[k]) {
                    continue;
                }
                target[c * width_o + o + g.reach[k]] = v;
                image[c * width_o + o + g.reach[k]] = img;
            }
        if (k < 2) {
            g.target[k].swap(target); g.image[k].swap(image);
            continue;
        }
        g.zrun_start.assign(g.nb[2] + 1, 0);
        g.zruns.clear();
        for (long long c = 0; c < g.nb[2]; ++c) {
            const long long* t = &target[c * width_o];
            const long long* im = &image[c * width_o];
            long long o = 0;
            while (o < width_o) {
                if (t[o] < 0) { ++o; continue; }
                long long end = o + 1;  // extend the run while bins stay consecutive with one image
                while (end < width_o && t[end] == t[end - 1] + 1 && im[end] == im[o]) ++end;
                const long long run[4] = {o - g.reach[k], end - 1 - g.reach[k], t[o], im[o]};
                g.zruns.insert(g.zruns.end(), run, run + 4);
                o = end;
            }
            g.zrun_start[c + 1] = (long long)g.zruns.size() / 4;
        }
    }
    g.w.resize(3 * n);
    for (long long a = 0; a < n; ++a)
        for (int c = 0; c < 3; ++c) {
            double v = pos[3 * a + c];
            for (int k = 0; k < 3; ++k) v -= (double)g.fold[3 * a + k] * g.frame[3 * k + c];
            g.w[3 * a + c] = v;
        }
    // counting sort of the atoms by bin
    const long long total = g.nb[0] * g.nb[1] * g.nb[2];
    g.start.assign(total + 1, 0);
    std::vector<long long> flat(n);
    for (long long a = 0; a < n; ++a) {
        flat[a] = (g.bin3[3 * a] * g.nb[1] + g.bin3[3 * a + 1]) * g.nb[2] + g.bin3[3 * a + 2];
        ++g.start[flat[a] + 1];
    }
    for (long long b = 0; b < total; ++b) g.start[b + 1] += g.start[b];
    g.atoms.resize(n); g.xs.resize(n); g.ys.resize(n); g.zs.resize(n); g.folds.resize(3 * n);
    std::vector<long long> fill(g.start.begin(), g.start.end() - 1);
    for (long long a = 0; a < n; ++a) {
        const long long s = fill[flat[a]]++;
        g.atoms[s] = a;
        g.xs[s] = g.w[3 * a]; g.ys[s] = g.w[3 * a + 1]; g.zs[s] = g.w[3 * a + 2];
        for (int k = 0; k < 3; ++k) g.folds[3 * s + k] = g.fold[3 * a + k];
    }
    return true;
}

struct Out {
    long long *i, *j, *image;  // image may be null
    double* d;                 // may be null
};

// squared gaps (Å^2) between an atom at distance ub from the lower face of its bin and the bins at offsets
// o = -reach .. reach (bins of width h): entry o + reach
inline void gaps(double ub, double h, long long reach, double* out) {
    for (long long o = -reach; o <= reach; ++o) {
        const double gap = o > 0 ? o * h - ub : (o < 0 ? ub + (-o - 1) * h : 0.0);
        out[o + reach] = gap * gap;
    }
}

// Candidates s = first .. last-1 (bin order) of one run for centre atom a (folded position wa) with the
// shift of the run's image: d = (x_s + shift) - wa.  Each is stored at slot q and kept by advancing q (no
// branch on the distance test).  CHECKED: stored only while q < end (else the caller has checked that the
// run fits).  image: the run's image plus the centre's fold; the pair's image subtracts the neighbour's fold.
struct Run {
    long long first, last, a;
    double wa[3], shift[3];
    long long image[3];
    bool zero;  // the run's image is 0: the centre itself is among the candidates
};

template <bool IMAGES, bool VECTORS, bool CHECKED>
inline long long scan(const Grid& g, const Run& run, double r2, long long q, long long end, const Out& out) {
    const double *__restrict xs = g.xs.data(), *__restrict ys = g.ys.data(), *__restrict zs = g.zs.data();
    const long long *__restrict atoms = g.atoms.data(), *__restrict folds = g.folds.data();
    long long *__restrict out_j = out.j, *__restrict out_image = out.image;
    double* __restrict out_d = out.d;
    const double ax = run.wa[0], ay = run.wa[1], az = run.wa[2];
    const double sx = run.shift[0], sy = run.shift[1], sz = run.shift[2];
    for (long long s = run.first; s < run.last; ++s) {
        const double dx = (xs[s] + sx) - ax, dy = (ys[s] + sy) - ay, dz = (zs[s] + sz) - az;
        const long long b = atoms[s];
        const bool keep = (dx * dx + dy * dy + dz * dz < r2) & !(run.zero & (b == run.a));
        if (!CHECKED || q < end) {
            out_j[q] = b;
            if (VECTORS) { out_d[3 * q] = dx; out_d[3 * q + 1] = dy; out_d[3 * q + 2] = dz; }
            if (IMAGES)
                for (int k = 0; k < 3; ++k) out_image[3 * q + k] = run.image[k] - folds[3 * s + k];
        }
        q += keep;
    }
    return q;
}

#ifdef CELL_LIST_AVX512
// scan<false, true, false> eight candidates at a time (the same arithmetic, so the same bits): the kept
// ones are compressed to the front of each vector and stored whole, so up to 8 pairs past q are written
// (the caller checks room for the run plus 8)
inline long long scan8(const Grid& g, const Run& run, double r2, long long q, const Out& out) {
    const __m512d sx = _mm512_set1_pd(run.shift[0]), sy = _mm512_set1_pd(run.shift[1]), sz = _mm512_set1_pd(run.shift[2]);
    const __m512d ax = _mm512_set1_pd(run.wa[0]), ay = _mm512_set1_pd(run.wa[1]), az = _mm512_set1_pd(run.wa[2]);
    const __m512d vr2 = _mm512_set1_pd(r2);
    const __m512i va = _mm512_set1_epi64(run.a);
    // compressed x, y, z (lanes 0..7) to three vectors x0 y0 z0 x1 y1 z1 x2 y2 | z2 x3 .. x5 | y5 z5 .. z7:
    // first x with y (index 8+ = y), then the result with z (index 8+ = z)
    const __m512i xy0 = _mm512_set_epi64(10, 2, 2, 9, 1, 1, 8, 0), z0 = _mm512_set_epi64(7, 6, 9, 4, 3, 8, 1, 0);
    const __m512i xy1 = _mm512_set_epi64(5, 0, 12, 4, 0, 11, 3, 0), z1 = _mm512_set_epi64(7, 12, 5, 4, 11, 2, 1, 10);
    const __m512i xy2 = _mm512_set_epi64(7, 15, 7, 7, 14, 6, 6, 13), z2 = _mm512_set_epi64(15, 6, 5, 14, 3, 2, 13, 0);
    const double *xs = g.xs.data(), *ys = g.ys.data(), *zs = g.zs.data();
    const long long* atoms = g.atoms.data();
    for (long long s = run.first; s < run.last; s += 8) {
        const long long left = run.last - s;
        const __mmask8 tail = left >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << left) - 1);
        const __m512d dx = _mm512_sub_pd(_mm512_add_pd(_mm512_maskz_loadu_pd(tail, xs + s), sx), ax);
        const __m512d dy = _mm512_sub_pd(_mm512_add_pd(_mm512_maskz_loadu_pd(tail, ys + s), sy), ay);
        const __m512d dz = _mm512_sub_pd(_mm512_add_pd(_mm512_maskz_loadu_pd(tail, zs + s), sz), az);
        const __m512d rr = _mm512_add_pd(_mm512_add_pd(_mm512_mul_pd(dx, dx), _mm512_mul_pd(dy, dy)), _mm512_mul_pd(dz, dz));
        __mmask8 keep = _mm512_mask_cmp_pd_mask(tail, rr, vr2, _CMP_LT_OQ);
        const __m512i b = _mm512_maskz_loadu_epi64(tail, atoms + s);
        if (run.zero) keep &= (__mmask8)~_mm512_cmpeq_epi64_mask(b, va);
        _mm512_storeu_si512((void*)(out.j + q), _mm512_maskz_compress_epi64(keep, b));
        const __m512d cx = _mm512_maskz_compress_pd(keep, dx), cy = _mm512_maskz_compress_pd(keep, dy),
                      cz = _mm512_maskz_compress_pd(keep, dz);
        double* d = out.d + 3 * q;
        _mm512_storeu_pd(d, _mm512_permutex2var_pd(_mm512_permutex2var_pd(cx, xy0, cy), z0, cz));
        _mm512_storeu_pd(d + 8, _mm512_permutex2var_pd(_mm512_permutex2var_pd(cx, xy1, cy), z1, cz));
        _mm512_storeu_pd(d + 16, _mm512_permutex2var_pd(_mm512_permutex2var_pd(cx, xy2, cy), z2, cz));
        q += __builtin_popcount((unsigned)keep);
    }
    return q;
}
#endif

#ifdef CELL_LIST_AVX2
// int32 indices of _mm256_permutevar8x32_epi32 that move the 64-bit lanes of a 4-bit mask to the front
static const int COMPRESS4[16][8] = {
    {0, 0, 0, 0, 0, 0, 0, 0}, {0, 1, 0, 0, 0, 0, 0, 0}, {2, 3, 0, 0, 0, 0, 0, 0}, {0, 1, 2, 3, 0, 0, 0, 0},
    {4, 5, 0, 0, 0, 0, 0, 0}, {0, 1, 4, 5, 0, 0, 0, 0}, {2, 3, 4, 5, 0, 0, 0, 0}, {0, 1, 2, 3, 4, 5, 0, 0},
    {6, 7, 0, 0, 0, 0, 0, 0}, {0, 1, 6, 7, 0, 0, 0, 0}, {2, 3, 6, 7, 0, 0, 0, 0}, {0, 1, 2, 3, 6, 7, 0, 0},
    {4, 5, 6, 7, 0, 0, 0, 0}, {0, 1, 4, 5, 6, 7, 0, 0}, {2, 3, 4, 5, 6, 7, 0, 0}, {0, 1, 2, 3, 4, 5, 6, 7}};

// scan<false, true, false> four candidates at a time with AVX2 (the same arithmetic, so the same bits): the
// kept ones moved to the front through COMPRESS4 and stored whole, so up to 4 pairs past q are written (the
// caller checks room for the run plus 4)
inline long long scan4(const Grid& g, const Run& run, double r2, long long q, const Out& out) {
    const __m256d sx = _mm256_set1_pd(run.shift[0]), sy = _mm256_set1_pd(run.shift[1]), sz = _mm256_set1_pd(run.shift[2]);
    const __m256d ax = _mm256_set1_pd(run.wa[0]), ay = _mm256_set1_pd(run.wa[1]), az = _mm256_set1_pd(run.wa[2]);
    const __m256d vr2 = _mm256_set1_pd(r2);
    const __m256i va = _mm256_set1_epi64x(run.a), lane = _mm256_setr_epi64x(0, 1, 2, 3);
    const double *xs = g.xs.data(), *ys = g.ys.data(), *zs = g.zs.data();
    const long long* atoms = g.atoms.data();
    for (long long s = run.first; s < run.last; s += 4) {
        const __m256i tail = _mm256_cmpgt_epi64(_mm256_set1_epi64x(run.last - s), lane);
        const __m256d dx = _mm256_sub_pd(_mm256_add_pd(_mm256_maskload_pd(xs + s, tail), sx), ax);
        const __m256d dy = _mm256_sub_pd(_mm256_add_pd(_mm256_maskload_pd(ys + s, tail), sy), ay);
        const __m256d dz = _mm256_sub_pd(_mm256_add_pd(_mm256_maskload_pd(zs + s, tail), sz), az);
        const __m256d rr = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(dx, dx), _mm256_mul_pd(dy, dy)), _mm256_mul_pd(dz, dz));
        int keep = _mm256_movemask_pd(_mm256_cmp_pd(rr, vr2, _CMP_LT_OQ)) & _mm256_movemask_pd(_mm256_castsi256_pd(tail));
        const __m256i b = _mm256_maskload_epi64(atoms + s, tail);
        if (run.zero) keep &= ~_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(b, va)));
        const __m256i order = _mm256_loadu_si256((const __m256i*)COMPRESS4[keep]);
        _mm256_storeu_si256((__m256i*)(out.j + q), _mm256_permutevar8x32_epi32(b, order));
        const __m256d cx = _mm256_castsi256_pd(_mm256_permutevar8x32_epi32(_mm256_castpd_si256(dx), order));
        const __m256d cy = _mm256_castsi256_pd(_mm256_permutevar8x32_epi32(_mm256_castpd_si256(dy), order));
        const __m256d cz = _mm256_castsi256_pd(_mm256_permutevar8x32_epi32(_mm256_castpd_si256(dz), order));
        // to x0 y0 z0 x1 | y1 z1 x2 y2 | z2 x3 y3 z3
        const __m256d xy02 = _mm256_unpacklo_pd(cx, cy), xy13 = _mm256_unpackhi_pd(cx, cy);
        const __m256d zx = _mm256_unpacklo_pd(cz, xy13), yz = _mm256_unpackhi_pd(xy13, cz);
        double* d = out.d + 3 * q;
        _mm256_storeu_pd(d, _mm256_permute2f128_pd(xy02, zx, 0x20));
        _mm256_storeu_pd(d + 4, _mm256_permute2f128_pd(yz, xy02, 0x30));
        _mm256_storeu_pd(d + 8, _mm256_permute2f128_pd(zx, yz, 0x31));
        q += __builtin_popcount((unsigned)keep);
    }
    return q;
}
#endif

// pairs of the centre atoms lo .. hi-1, written from slot q while q < end; returns the slot after the
// last pair (beyond `end` when the arrays were too short: the pairs are then counted, not all written).
// Bins whose gaps to the atom give |d|^2 >= r^2 (through reach2) are skipped: whole x-y columns, and the
// z-bins at either end of a column.
template <bool IMAGES, bool VECTORS>
long long range_pairs(const Grid& g, long long lo, long long hi, double r2, long long q, long long end, Out out) {
    const long long rx = g.reach[0], ry = g.reach[1], rz = g.reach[2], wx = 2 * rx + 1, wy = 2 * ry + 1;
    const long long ny = g.nb[1], nz = g.nb[2];
    const double reach2 = g.reach2, *F = g.frame, *w = g.w.data(), *ub = g.ub.data();
    const long long *bin3 = g.bin3.data(), *fold = g.fold.data(), *start = g.start.data();
    const long long *zruns = g.zruns.data(), *zrun_start = g.zrun_start.data();
    long long* __restrict out_i = out.i;
    std::vector<double> gap2(wx + wy + 2 * rz + 1);
    double *gx = gap2.data(), *gy = gx + wx, *gz = gy + wy;
    for (long long a = lo; a < hi; ++a) {
        const long long q0 = q, *ba = bin3 + 3 * a, *fa = fold + 3 * a;
        const long long *tx = &g.target[0][ba[0] * wx], *ix = &g.image[0][ba[0] * wx];
        const long long *ty = &g.target[1][ba[1] * wy], *iy = &g.image[1][ba[1] * wy];
        const long long *zr = zruns + 4 * zrun_start[ba[2]], n_runs = zrun_start[ba[2] + 1] - zrun_start[ba[2]];
        gaps(ub[3 * a], g.h[0], rx, gx);
        gaps(ub[3 * a + 1], g.h[1], ry, gy);
        gaps(ub[3 * a + 2], g.h[2], rz, gz);
        for (long long ox = 0; ox < wx; ++ox) {
            if (tx[ox] < 0 || gx[ox] >= reach2) continue;
            for (long long oy = 0; oy < wy; ++oy) {
                const double left = reach2 - gx[ox] - gy[oy];
                if (ty[oy] < 0 || left <= 0.0) continue;
                // z-offsets zlo .. zhi can hold a neighbour (the gaps grow away from offset 0)
                long long zlo = -rz, zhi = rz;
                while (gz[zlo + rz] >= left) ++zlo;
                while (gz[zhi + rz] >= left) --zhi;
                const long long row = (tx[ox] * ny + ty[oy]) * nz;
                const double bx = ix[ox] * F[0] + iy[oy] * F[3], by = ix[ox] * F[1] + iy[oy] * F[4],
                             bz = ix[ox] * F[2] + iy[oy] * F[5];
                for (long long r = 0; r < n_runs; ++r) {
                    const long long* z = zr + 4 * r;  // offsets z[0] .. z[1], bins from z[2], image z[3]
                    const long long o0 = std::max(z[0], zlo), o1 = std::min(z[1], zhi);
                    if (o0 > o1) continue;
                    const Run run = {start[row + z[2] + o0 - z[0]], start[row + z[2] + o1 - z[0] + 1], a,
                                     {w[3 * a], w[3 * a + 1], w[3 * a + 2]},
                                     {bx + z[3] * F[6], by + z[3] * F[7], bz + z[3] * F[8]},
                                     {ix[ox] + fa[0], iy[oy] + fa[1], z[3] + fa[2]},
                                     ix[ox] == 0 && iy[oy] == 0 && z[3] == 0};
                    const long long room = end - q - (run.last - run.first);
#ifdef CELL_LIST_AVX512
                    if (!IMAGES && VECTORS && room >= 8) { q = scan8(g, run, r2, q, out); continue; }
#endif
#ifdef CELL_LIST_AVX2
                    if (!IMAGES && VECTORS && room >= 4) { q = scan4(g, run, r2, q, out); continue; }
#endif
                    q = room > 0 ? scan<IMAGES, VECTORS, false>(g, run, r2, q, end, out)
                                 : scan<IMAGES, VECTORS, true>(g, run, r2, q, end, out);
                }
            }
        }
        for (long long p = q0; p < std::min(q, end); ++p) out_i[p] = a;
    }
    return q;
}

long long any_pairs(const Grid& g, long long lo, long long hi, double r2, long long q, long long end, Out out) {
    if (out.image)
        return out.d ? range_pairs<true, true>(g, lo, hi, r2, q, end, out) : range_pairs<true, false>(g, lo, hi, r2, q, end, out);
    return out.d ? range_pairs<false, true>(g, lo, hi, r2, q, end, out) : range_pairs<false, false>(g, lo, hi, r2, q, end, out);
}

void move_pairs(Out out, long long from, long long to, long long count) {
    std::memmove(out.i + to, out.i + from, count * sizeof(long long));
    std::memmove(out.j + to, out.j + from, count * sizeof(long long));
    if (out.image) std::memmove(out.image + 3 * to, out.image + 3 * from, 3 * count * sizeof(long long));
    if (out.d) std::memmove(out.d + 3 * to, out.d + 3 * from, 3 * count * sizeof(double));
}
}  // namespace

// the vector scan compiled in: 512 (AVX-512), 256 (AVX2) or 0 (the scalar scan only)
extern "C" int cell_list_simd() {
#if defined(CELL_LIST_AVX512)
    return 512;
#elif defined(CELL_LIST_AVX2)
    return 256;
#else
    return 0;
#endif
}

// All pairs within r_list, sorted by centre atom, written to out_i, out_j [capacity], out_image and out_d
// [capacity, 3] (either may be null: not wanted).  Returns 0 and status[0] = the number of pairs; 1 when
// the arrays are too short (status[1] = a capacity that suffices; call again); 2 when a periodic direction
// has a cell of zero volume.  Images relative to the unfolded positions.
extern "C" int cell_list(long long n, const double* pos, const double* cell, const int* pbc, double r_list,
                         long long capacity, long long* out_i, long long* out_j, long long* out_image,
                         double* out_d, long long* status) {
    Grid g;
    if (!make_grid(g, n, pos, cell, pbc, r_list)) return 2;
    const double r2 = r_list * r_list;
    const Out out = {out_i, out_j, out_image, out_d};
    int threads = 1;
#ifdef _OPENMP
    if (n >= PARALLEL_MIN_ATOMS) threads = omp_get_max_threads();
#endif
    // thread t: centre atoms lo_t .. hi_t-1, slots region_t .. region_{t+1}-1 (shares proportional to atoms)
    std::vector<long long> lo(threads + 1), region(threads + 1), count(threads);
    for (int t = 0; t <= threads; ++t) {
        lo[t] = n * t / threads;
        region[t] = (capacity / std::max(n, 1LL)) * lo[t] + (capacity % std::max(n, 1LL)) * lo[t] / std::max(n, 1LL);
    }
    region[threads] = capacity;
    #pragma omp parallel for num_threads(threads) schedule(static, 1) if (threads > 1)
    for (int t = 0; t < threads; ++t)
        count[t] = any_pairs(g, lo[t], lo[t + 1], r2, region[t], region[t + 1], out) - region[t];
    long long total = 0, needed = 0;
    bool short_of_room = false;
    for (int t = 0; t < threads; ++t) {
        total += count[t];
        short_of_room |= count[t] > region[t + 1] - region[t];
        const long long atoms = lo[t + 1] - lo[t];
        if (atoms) needed = std::max(needed, (count[t] * std::max(n, 1LL) + atoms - 1) / atoms + threads);
    }
    if (short_of_room) {
        status[1] = std::max(needed, total);
        return 1;
    }
    long long to = 0;
    for (int t = 0; t < threads; ++t) {
        if (region[t] != to) move_pairs(out, region[t], to, count[t]);
        to += count[t];
    }
    status[0] = total;
    return 0;
}
"""


#: the same source without the vector scans (the scalar loop everywhere): the reference the tests compare
#: the vector scans with, bit for bit
SCALAR_SOURCE = "#define CELL_LIST_SCALAR 1\n" + SOURCE
#: builds of the cell list: ``native`` (the vector scan of this host: AVX-512, AVX2 or none), ``avx2`` (the
#: build without AVX-512 instructions, what a host with AVX2 only runs), ``scalar`` (SCALAR_SOURCE)
SCANS = ("native", "avx2", "scalar")


def _library(scan: str = "native"):
    if scan not in SCANS:
        raise ValueError(f"cell list scan {scan!r} is not one of {', '.join(SCANS)}")
    flags = FLAGS + ("-mno-avx512f",) if scan == "avx2" else FLAGS
    return load_library(SCALAR_SOURCE if scan == "scalar" else SOURCE, flags=flags)


def _function(scan: str = "native"):
    library = _library(scan)
    if library is None:
        return None
    function = library.cell_list
    function.restype = ctypes.c_int
    return function


def available() -> bool:
    """Whether the compiled cell list loads (:func:`cell_list_pairs` then returns pairs, not None)."""
    return _function() is not None


def simd_width(scan: str = "native") -> int:
    """Width in bits of the vector scan of the ``scan`` build (:data:`SCANS`): 512, 256 or 0 (none, or
    not loaded)."""
    library = _library(scan)
    if library is None:
        return 0
    library.cell_list_simd.restype = ctypes.c_int
    return int(library.cell_list_simd())


def cell_list_pairs(positions, cell, pbc, r_list: float, *, images: bool = True, vectors: bool = True,
                    scan: str = "native"):
    """``(i, j, images, d)`` of every pair within ``r_list`` (Å) (module docstring), or None when the
    compiled cell list is not available.  positions [n, 3] Å, cell [3, 3] Å (rows), pbc 3 bools;
    ``images``/``vectors``: whether to return the images / the vectors d (None in their place if not);
    ``scan``: which build (:data:`SCANS`; the others list the same pairs bit for bit, for tests and
    benchmarks)."""
    function = _function(scan)
    if function is None:
        return None
    return _call(function, positions, cell, pbc, r_list, images=images, vectors=vectors)


def _call(function, positions, cell, pbc, r_list: float, *, images: bool, vectors: bool):
    """:func:`cell_list_pairs` through the loaded kernel ``function`` (a build of :data:`SOURCE`)."""
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    frame = np.ascontiguousarray(cell, dtype=np.float64).reshape(3, 3)
    flags = np.array([bool(p) for p in pbc], dtype=np.int32)
    n, r_list = len(positions), float(r_list)
    status = np.zeros(2, dtype=np.int64)
    capacity = int(n * _PAIRS_PER_ATOM.get(r_list, 64.0) * 1.25) + 64
    while True:
        i, j = np.empty(capacity, dtype=np.int64), np.empty(capacity, dtype=np.int64)
        image = np.empty((capacity, 3), dtype=np.int64) if images else None
        d = np.empty((capacity, 3)) if vectors else None
        code = function(ctypes.c_longlong(n), pointer(positions), pointer(frame), pointer(flags),
                        ctypes.c_double(r_list), ctypes.c_longlong(capacity), pointer(i), pointer(j),
                        None if image is None else pointer(image), None if d is None else pointer(d),
                        pointer(status))
        if code == 2:
            raise ValueError(f"cell {frame.tolist()} has zero volume but pbc={flags.astype(bool).tolist()}: a "
                             "periodic direction needs a cell of full rank (give the vacuum direction a length)")
        if code == 0:
            break
        capacity = int(status[1])
    p = int(status[0])
    if n:
        if len(_PAIRS_PER_ATOM) > 16:
            _PAIRS_PER_ATOM.clear()
        _PAIRS_PER_ATOM[r_list] = p / n
    return i[:p], j[:p], None if image is None else image[:p], None if d is None else d[:p]


#: pairs per atom of the last list of each list radius: the next call's capacity (times 1.25; grown when short)
_PAIRS_PER_ATOM: dict = {}
