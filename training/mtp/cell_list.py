r"""Full neighbour lists by cell lists in compiled code (C++, OpenMP), for any cell: bulk or sheet,
orthorhombic or triclinic, cells shorter than the cut-off included.

Contract: :func:`cell_list_pairs(positions, cell, pbc, r_list)` returns ``i [p]``, ``j [p]`` (int64,
sorted by ``i``), ``images [p, 3]`` (int64) and ``d [p, 3]`` (Å) such that every ordered pair of atoms
(and periodic image, an atom's own images included) with ``|d| < r_list`` appears once, with
``d = w_j + images @ cell - w_i`` where ``w = positions - floor(frac) @ cell`` are the positions folded
into the cell along the periodic directions (``frac = positions @ cell^-1``; non-periodic directions
are not folded).  It is ``None`` when compiled kernels are off or cannot be built
(:mod:`common.native`); callers then use their array code (:func:`training.mtp.neighbors.neighbor_pairs`,
:func:`md_gpu.neighbors.build_pairs`), which the tests compare this list with.

Method (the binning of ``md_gpu.neighbors``): bins in fractional coordinates, so triclinic cells need
nothing special.  Along a periodic direction k of perpendicular width ``w_k`` there are
``n_k = max(1, floor(w_k / r_list))`` bins, and two points closer than ``r_list`` are at most
``m_k = ceil(r_list n_k / w_k)`` bins apart; when ``2 m_k + 1 > n_k`` (small cells) the offsets wrap
around several times, each time with its own image, so no pair is missed or listed twice.  A
non-periodic direction is binned over the extent of the atoms (bins at least ``r_list`` wide, offsets
-1..1, nothing wrapped).  Bins are filled by a counting sort; a first pass counts the pairs of each
atom, a second writes them at their offsets (both OpenMP-parallel over the atoms).  Cost O(n): about
``27 (r_list / bin)^3`` candidate atoms per atom.
"""
from __future__ import annotations

import ctypes

import numpy as np

from common.native import load_function, pointer

SOURCE = r"""
#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

#define BINS_PER_RANGE 2     // bins per r_list along each direction
#define MAX_BINS_PER_ATOM 4.0
#define PARALLEL_MIN_ATOMS 4096  // below this a list takes about a millisecond: threads would cost more

namespace {
struct Grid {
    long long nb[3], reach[3];
    std::vector<long long> bin3, start, atoms;  // bin of each atom [n,3]; CSR of atoms per bin
    std::vector<double> w, ws;                   // folded positions [n,3], and in bin order [n,3]
    std::vector<long long> fold;                 // floor(frac) along periodic directions [n,3]
    // per direction k, bin c and offset o = -reach..reach (row c * (2 reach + 1) + o + reach): the target
    // bin (-1 outside a non-periodic direction) and its image count
    std::vector<long long> target[3], image[3];
};

void make_grid(Grid& g, long long n, const double* pos, const double* frac, const double* cell, const int* pbc,
               const double* width, double r_list) {
    g.bin3.assign(3 * n, 0); g.w.assign(3 * n, 0.0); g.fold.assign(3 * n, 0);
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
    for (int k = 0; k < 3; ++k) {
        // two points closer than r_list are at most `reach` bins apart
        g.reach[k] = g.nb[k] == 1 && !pbc[k] ? 0 : (long long)std::ceil(r_list * g.nb[k] / extent[k] - 1e-12);
        if (!pbc[k]) g.reach[k] = std::min(g.reach[k], g.nb[k] - 1);
        for (long long a = 0; a < n; ++a) {
            double f = frac[3 * a + k];
            long long b;
            if (pbc[k]) {
                const double fl = std::floor(f);
                g.fold[3 * a + k] = (long long)fl;
                b = (long long)((f - fl) * g.nb[k]);
            } else {
                b = (long long)((f - lo[k]) / std::fmax(hi[k] - lo[k], 1e-300) * g.nb[k]);
            }
            g.bin3[3 * a + k] = b < 0 ? 0 : (b >= g.nb[k] ? g.nb[k] - 1 : b);
        }
    }
    for (int k = 0; k < 3; ++k) {
        const long long width_o = 2 * g.reach[k] + 1;
        g.target[k].assign(g.nb[k] * width_o, -1);
        g.image[k].assign(g.nb[k] * width_o, 0);
        for (long long c = 0; c < g.nb[k]; ++c)
            for (long long o = -g.reach[k]; o <= g.reach[k]; ++o) {
                long long v = c + o, img = 0;
                if (pbc[k]) {
                    img = v >= 0 ? v / g.nb[k] : -((-v + g.nb[k] - 1) / g.nb[k]);
                    v -= img * g.nb[k];
                } else if (v < 0 || v >= g.nb[k]) {
                    continue;
                }
                g.target[k][c * width_o + o + g.reach[k]] = v;
                g.image[k][c * width_o + o + g.reach[k]] = img;
            }
    }
    for (long long a = 0; a < n; ++a)
        for (int c = 0; c < 3; ++c) {
            double v = pos[3 * a + c];
            for (int k = 0; k < 3; ++k) v -= (double)g.fold[3 * a + k] * cell[3 * k + c];
            g.w[3 * a + c] = v;
        }
    const long long total = g.nb[0] * g.nb[1] * g.nb[2];
    g.start.assign(total + 1, 0);
    std::vector<long long> flat(n);
    for (long long a = 0; a < n; ++a) {
        flat[a] = (g.bin3[3 * a] * g.nb[1] + g.bin3[3 * a + 1]) * g.nb[2] + g.bin3[3 * a + 2];
        ++g.start[flat[a] + 1];
    }
    for (long long b = 0; b < total; ++b) g.start[b + 1] += g.start[b];
    g.atoms.assign(n, 0);
    std::vector<long long> fill(g.start.begin(), g.start.end() - 1);
    for (long long a = 0; a < n; ++a) g.atoms[fill[flat[a]]++] = a;
    g.ws.resize(3 * n);
    for (long long s = 0; s < n; ++s)
        for (int c = 0; c < 3; ++c) g.ws[3 * s + c] = g.w[3 * g.atoms[s] + c];
}

struct Pair {
    long long i, j, image[3];
    double d[3];
};

// append the pairs of centre atom a to `out`; the z-offsets of one (x, y) target that land on
// consecutive bins with the same image are one run of atoms in the bin-sorted order
void atom_pairs(const Grid& g, long long a, const double* cell, double r2, std::vector<Pair>& out) {
    const double* wa = &g.w[3 * a];
    const long long wx = 2 * g.reach[0] + 1, wy = 2 * g.reach[1] + 1, wz = 2 * g.reach[2] + 1;
    const long long* tx = &g.target[0][g.bin3[3 * a] * wx];
    const long long* ty = &g.target[1][g.bin3[3 * a + 1] * wy];
    const long long* tz = &g.target[2][g.bin3[3 * a + 2] * wz];
    const long long* ix = &g.image[0][g.bin3[3 * a] * wx];
    const long long* iy = &g.image[1][g.bin3[3 * a + 1] * wy];
    const long long* iz = &g.image[2][g.bin3[3 * a + 2] * wz];
    for (long long ox = 0; ox < wx; ++ox) {
        if (tx[ox] < 0) continue;
        for (long long oy = 0; oy < wy; ++oy) {
            if (ty[oy] < 0) continue;
            const long long row = (tx[ox] * g.nb[1] + ty[oy]) * g.nb[2];
            long long oz = 0;
            while (oz < wz) {
                if (tz[oz] < 0) { ++oz; continue; }
                long long end = oz + 1;  // extend the run while bins stay consecutive with one image
                while (end < wz && tz[end] == tz[end - 1] + 1 && iz[end] == iz[oz]) ++end;
                const long long img[3] = {ix[ox], iy[oy], iz[oz]};
                double shift[3];
                for (int c = 0; c < 3; ++c)
                    shift[c] = img[0] * cell[c] + img[1] * cell[3 + c] + img[2] * cell[6 + c];
                const bool zero = img[0] == 0 && img[1] == 0 && img[2] == 0;
                const double sx = shift[0] - wa[0], sy = shift[1] - wa[1], sz = shift[2] - wa[2];
                const long long first = g.start[row + tz[oz]], last = g.start[row + tz[end - 1] + 1];
                for (long long s = first; s < last; ++s) {
                    const double* wb = &g.ws[3 * s];
                    const double dx = wb[0] + sx, dy = wb[1] + sy, dz = wb[2] + sz;
                    if (dx * dx + dy * dy + dz * dz >= r2) continue;
                    const long long b = g.atoms[s];
                    if (zero && b == a) continue;
                    Pair q;
                    q.i = a; q.j = b;
                    for (int k = 0; k < 3; ++k) q.image[k] = img[k] - g.fold[3 * b + k] + g.fold[3 * a + k];
                    // the same sum as w_b + shift - w_a
                    q.d[0] = wb[0] + shift[0] - wa[0]; q.d[1] = wb[1] + shift[1] - wa[1];
                    q.d[2] = wb[2] + shift[2] - wa[2];
                    out.push_back(q);
                }
                oz = end;
            }
        }
    }
}
}  // namespace

// All pairs, sorted by centre atom (each thread takes a contiguous range of atoms); returns their number
// and writes them to out_* when it is at most `capacity` (else the caller calls again with more room).
// Images relative to the unfolded positions.
extern "C" long long cell_list(long long n, const double* pos, const double* frac, const double* cell,
                               const int* pbc, const double* width, double r_list, long long capacity,
                               long long* out_i, long long* out_j, long long* out_image, double* out_d) {
    Grid g;
    make_grid(g, n, pos, frac, cell, pbc, width, r_list);
    const double r2 = r_list * r_list;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    std::vector<std::vector<Pair>> parts(threads);
    #pragma omp parallel num_threads(threads) if (n >= PARALLEL_MIN_ATOMS)
    {
        int me = 0, count = 1;
#ifdef _OPENMP
        me = omp_get_thread_num(); count = omp_get_num_threads();
#endif
        std::vector<Pair>& out = parts[me];
        const long long lo = n * me / count, hi = n * (me + 1) / count;
        out.reserve((size_t)((hi - lo) * 64));
        for (long long a = lo; a < hi; ++a) atom_pairs(g, a, cell, r2, out);
    }
    long long total = 0;
    for (const auto& part : parts) total += (long long)part.size();
    if (total > capacity) return total;
    long long q = 0;
    for (const auto& part : parts)
        for (const Pair& pair : part) {
            out_i[q] = pair.i; out_j[q] = pair.j;
            for (int k = 0; k < 3; ++k) { out_image[3 * q + k] = pair.image[k]; out_d[3 * q + k] = pair.d[k]; }
            ++q;
        }
    return total;
}
"""


def _function():
    return load_function(SOURCE, "cell_list", ctypes.c_longlong)


def available() -> bool:
    """Whether the compiled cell list loads (:func:`cell_list_pairs` then returns pairs, not None)."""
    return _function() is not None


def binning_frame(cell, pbc) -> tuple[np.ndarray, np.ndarray]:
    """(frame [3, 3] Å, perpendicular widths [3] Å) for the binning: the cell when it has full rank,
    the Cartesian axes for a structure without periodic directions and without a cell (a molecule);
    ValueError for a periodic direction without a full-rank cell."""
    cell = np.asarray(cell, dtype=float).reshape(3, 3)
    volume = abs(np.linalg.det(cell))
    if volume < 1e-12:
        if any(pbc):
            raise ValueError(f"cell {cell.tolist()} has zero volume but pbc={list(pbc)}: a periodic direction "
                             "needs a cell of full rank (give the vacuum direction a length)")
        return np.eye(3), np.ones(3)
    widths = np.array([volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)])
    return cell, widths


def cell_list_pairs(positions, cell, pbc, r_list: float):
    """``(i, j, images, d)`` of every pair within ``r_list`` (Å) (module docstring), or None when the
    compiled cell list is not available.  positions [n, 3] Å, cell [3, 3] Å (rows), pbc 3 bools."""
    function = _function()
    if function is None:
        return None
    frame, widths = binning_frame(cell, pbc)
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    frac = np.ascontiguousarray(positions @ np.linalg.inv(frame))
    frame = np.ascontiguousarray(frame)
    flags = np.ascontiguousarray(np.asarray(pbc, dtype=bool).astype(np.int32))
    n = len(positions)
    args = (ctypes.c_longlong(n), pointer(positions), pointer(frac), pointer(frame), pointer(flags),
            pointer(np.ascontiguousarray(widths)), ctypes.c_double(float(r_list)))
    capacity = int(n * (_PAIRS_PER_ATOM[0] * 1.2 + 8))
    while True:
        i, j = np.empty(capacity, dtype=np.int64), np.empty(capacity, dtype=np.int64)
        images, d = np.empty((capacity, 3), dtype=np.int64), np.empty((capacity, 3))
        p = int(function(*args, ctypes.c_longlong(capacity), pointer(i), pointer(j), pointer(images), pointer(d)))
        if p <= capacity:
            break
        capacity = p
    if n:
        _PAIRS_PER_ATOM[0] = p / n
    return i[:p], j[:p], images[:p], d[:p]


_PAIRS_PER_ATOM = [64.0]  # pairs per atom of the last list: the next call's buffer size (grown when short)
