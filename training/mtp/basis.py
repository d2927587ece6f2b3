r"""The MTP basis as array code: radial basis, angular monomials and the moment-product plan.

One implementation for both users: the model evaluation (:mod:`training.mtp.model`, MD and the ASE
calculator) and the fitting derivatives (:mod:`training.mtp.radial_gradient`).  Method: Shapeev,
Multiscale Model. Simul. 14, 1153 (2016); MLIP-2 conventions: Novikov et al., Mach. Learn.: Sci.
Technol. 2, 025002 (2021).

* Radial basis (MLIP's ``RBChebyshev``): for a pair distance r (Å),
  ``Q_x(r) = scaling * T_x(ξ) * (max_dist - r)^2`` for r < max_dist, else 0, with the Chebyshev
  polynomials T_x of ``ξ = (2r - min_dist - max_dist) / (max_dist - min_dist)``, x = 0 .. X-1.
  :func:`radial_basis` gives Q and dQ/dr for real r, cut off at ``max_dist``; :func:`radial_basis_inside`
  gives them for real or complex r <= max_dist (the complex step of the fit) by the recurrence on the
  scaled values ``Q_x = 2 ξ Q_{x-1} - Q_{x-2}``.  The two agree to rounding; each keeps its own order of
  floating-point operations, so that fitted potentials and MD runs reproduce bit for bit.
* Angular monomials: ``A_l(u) = u_x^a u_y^b u_z^c`` of the unit pair vector u = d / r, for every
  exponent l = (a, b, c) with a + b + c <= D, in the order of :class:`MonomialTable` (degree ascending,
  then a descending, then b descending).  Basic moments are ``M_(μ,l)(i) = Σ_j f_μ(r_ij) A_l(u_ij)``.
* Products: ``alpha_index_times`` rows (first, second, mult, target) add ``mult * M_first * M_second``
  to ``M_target``; :class:`MomentPlan` groups them into waves whose inputs are ready.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.arrays import array_module

_WORKSPACE_BYTES = 256 * 2**20  # wave buffers up to this size are kept between calls


# ---------------------------------------------------------------------------------------- radial basis
def radial_basis(r, *, min_dist: float, max_dist: float, scaling: float, size: int, xp):
    """Q, dQ/dr [X, p] (dimensionless, 1/Å) for real distances r [p] (Å); zero at and beyond ``max_dist``.

    T_x and T'_x by the Chebyshev recurrence on rows [X, p] (contiguous), then times the cut-off
    ``s(r) = scaling (max_dist - r)^2``: Q = T s, dQ = T' s + T s'.
    """
    lo, hi = min_dist, max_dist
    gap = xp.where(r < hi, hi - r, 0.0)
    smooth, dsmooth = scaling * gap * gap, -2.0 * scaling * gap
    ksi = (2.0 / (hi - lo)) * r - (lo + hi) / (hi - lo)
    dksi = 2.0 / (hi - lo)
    t, dt = xp.empty((size, len(r))), xp.empty((size, len(r)))
    t[0], dt[0] = 1.0, 0.0
    if size > 1:
        t[1], dt[1] = ksi, dksi
    for x in range(2, size):  # T_x = 2 ξ T_{x-1} - T_{x-2};  T'_x = 2 (ξ' T_{x-1} + ξ T'_{x-1}) - T'_{x-2}
        xp.multiply(ksi, t[x - 1], out=t[x])
        t[x] *= 2.0
        t[x] -= t[x - 2]
        xp.multiply(ksi, dt[x - 1], out=dt[x])
        dt[x] += dksi * t[x - 1]
        dt[x] *= 2.0
        dt[x] -= dt[x - 2]
    dt *= smooth  # dQ = T' s + T s'
    dt += t * dsmooth
    t *= smooth  # Q = T s
    return t, dt


def radial_basis_inside(r, *, min_dist: float, max_dist: float, scaling: float, size: int,
                        derivative: bool):
    """Q [X, ...] and, if ``derivative``, dQ/dr [X, ...] (else None) for r <= ``max_dist`` (Å).

    NumPy, real or complex r (no cut-off test, so it is holomorphic in r: the complex step of the fit).
    Recurrence on the scaled values: Q_0 = s w, Q_1 = s ξ w, Q_x = 2 ξ Q_{x-1} - Q_{x-2} with
    w = (r - max_dist)^2, and dQ_x = 2 (ξ' Q_{x-1} + ξ dQ_{x-1}) - dQ_{x-2}.
    """
    lo, hi, s = min_dist, max_dist, scaling
    mult = 2.0 / (hi - lo)
    ksi = (2.0 * r - (lo + hi)) / (hi - lo)
    q = np.empty((size,) + r.shape, dtype=r.dtype)
    w = (r - hi) ** 2
    q[0] = s * w
    q[1] = s * ksi * w
    for b in range(2, size):
        q[b] = 2.0 * ksi * q[b - 1] - q[b - 2]
    if not derivative:
        return q, None
    dq = np.empty_like(q)
    dq[0] = s * 2.0 * (r - hi)
    dq[1] = s * (mult * w + 2.0 * ksi * (r - hi))
    for b in range(2, size):
        dq[b] = 2.0 * (mult * q[b - 1] + ksi * dq[b - 1]) - dq[b - 2]
    return q, dq


# ---------------------------------------------------------------------------------------- angular part
class MonomialTable:
    """All exponents l = (a, b, c) with a + b + c <= ``degree``, in the order of :func:`monomials`.

    ``exps`` [L, 3] int; ``index`` {(a, b, c): l}; ``raised`` [3, L]: index of l + e_c, or L where that
    exceeds ``degree``; ``lowered`` [3, L]: index of l - e_c, or -1 where the exponent c is 0.
    """

    def __init__(self, degree: int):
        self.degree = int(degree)
        exps = [(a, b, n - a - b) for n in range(self.degree + 1)
                for a in range(n, -1, -1) for b in range(n - a, -1, -1)]
        self.index = {e: k for k, e in enumerate(exps)}
        self.exps = np.array(exps, dtype=np.int64).reshape(-1, 3)
        unit = np.eye(3, dtype=np.int64)
        self.raised = np.array([[self.index.get(tuple(e + unit[c]), len(exps)) for e in self.exps]
                                for c in range(3)], dtype=np.int64).reshape(3, -1)
        self.lowered = np.array([[self.index[tuple(e - unit[c])] if e[c] > 0 else -1 for e in self.exps]
                                 for c in range(3)], dtype=np.int64).reshape(3, -1)

    @classmethod
    def of_basic(cls, basic) -> "MonomialTable":
        """The table up to the largest degree a + b + c of ``alpha_index_basic`` rows (μ, a, b, c) [Nb, 4]."""
        abc = np.asarray(basic, dtype=np.int64).reshape(-1, 4)[:, 1:]
        return cls(int(abc.sum(axis=1).max()) if abc.size else 0)

    def __len__(self) -> int:
        return len(self.exps)

    def indices(self, abc) -> np.ndarray:
        """Monomial index [m] of exponent rows ``abc`` [m, 3]."""
        return np.array([self.index[tuple(e)] for e in np.asarray(abc, dtype=np.int64).reshape(-1, 3)],
                        dtype=np.int64)


def monomials(ux, uy, uz, degree: int, out):
    """Fill ``out`` [..., L, k] with the monomials A_l(u) of :class:`MonomialTable` ``(degree)``; returns it.

    ``ux, uy, uz`` are the components of the unit vectors, each broadcastable to [..., 1, k].  Degree by
    degree: the block of degree δ is u_x * (all of degree δ-1), u_y * (those of degree δ-1 without x),
    u_z * z^(δ-1), so every A_l is A_(l - e_c) * u_c for the first non-zero exponent c.
    """
    xp = array_module(out)
    out[..., 0, :] = 1.0
    start, size = 0, 1  # the block of degree δ-1
    for deg in range(1, degree + 1):
        prev, first = out[..., start:start + size, :], start + size
        xp.multiply(prev, ux, out=out[..., first:first + size, :])
        xp.multiply(prev[..., -deg:, :], uy, out=out[..., first + size:first + size + deg, :])
        xp.multiply(prev[..., -1:, :], uz, out=out[..., first + size + deg:first + size + deg + 1, :])
        start, size = first, size + deg + 1
    return out


def angular_powers(d, r, abc):
    """x^a y^b z^c / r^(a+b+c) [m, p] for exponent rows ``abc`` [m, 3] of pair vectors d [p, 3] (Å), r [p].

    NumPy, real or complex d (the complex step of the fit): powers of the components times powers of 1/r.
    """
    kmax = int(abc.max()) if abc.size else 0
    pw = np.empty((kmax + 2, 3) + r.shape, dtype=d.dtype)
    pw[0] = 1.0
    for k in range(1, kmax + 2):
        pw[k] = pw[k - 1] * d.T
    inv_r = 1.0 / r
    rpow = np.empty((kmax + 1,) + r.shape, dtype=d.dtype)
    rpow[0] = 1.0
    for k in range(1, kmax + 1):
        rpow[k] = rpow[k - 1] * inv_r
    return pw[abc[:, 0], 0] * pw[abc[:, 1], 1] * pw[abc[:, 2], 2] * rpow[abc.sum(axis=1)]


# ---------------------------------------------------------------------------------------- moment products
def _sparse(xp):
    if xp is np:
        import scipy.sparse as sparse
    else:
        import cupyx.scipy.sparse as sparse
    return sparse


@dataclass(frozen=True)
class Wave:
    """One level of ``alpha_index_times``: products whose inputs are all computed earlier.

    first [E], second [E]: input moment indices; target [E]: output moment per product;
    targets [T]: the distinct outputs; gather [T, E]: sparse, entries mult, sums mult * products into
    their outputs; inputs [U]: the distinct input moments; scatter [U, 2E]: sparse, entries mult, sends the
    reverse-pass terms (dE/dM_target * M_second, then dE/dM_target * M_first) back to the inputs.
    """

    first: object
    second: object
    target: object
    targets: object
    gather: object
    inputs: object
    scatter: object


class MomentPlan:
    """Index tables of one basis definition on one array module ``xp``.

    ``degree`` D, ``n_mono`` L, ``n_radial`` M, ``n_basic`` Nb, ``n_moments`` K_all; ``exps`` [L, 3];
    ``mono_degree`` [L] (float); ``up`` [3, L], ``up_factor`` [3, L]: monomial l + e_c (or the dummy
    column L) and e_c + 1 (0 for the dummy); ``down`` [3, L]: monomial l - e_c, or l itself where e_c = 0;
    ``basic_flat`` [Nb]: μ * L + l of each basic moment in a [M, L] table; ``waves``: the products.
    """

    def __init__(self, basic: np.ndarray, times: np.ndarray, n_moments: int, n_radial: int, xp):
        self.xp = xp
        table = MonomialTable.of_basic(basic)
        exps = table.exps
        self.degree, self.n_mono, self.n_radial = table.degree, len(table), n_radial
        self.exps = xp.asarray(exps)
        self.mono_degree = xp.asarray(exps.sum(axis=1).astype(float))
        self.up = xp.asarray(table.raised)
        self.up_factor = xp.asarray(np.where(table.raised < len(table), exps.T + 1.0, 0.0))
        self.down = xp.asarray(np.where(table.lowered >= 0, table.lowered, np.arange(len(table))))
        self.basic_flat = xp.asarray(basic[:, 0] * len(table) + table.indices(basic[:, 1:]))
        self.n_basic, self.n_moments = len(basic), n_moments
        self.waves = self._waves(times, n_moments, xp)

    def workspace(self, n: int):
        """Buffers [2 * max_entries, n] and [max_entries, n] for the wave products of ``n`` atoms.

        Kept between calls (MD calls evaluate on the same atoms every step) when they fit in
        ``_WORKSPACE_BYTES``; larger ones are fresh each call, so big fitting batches hold no memory after.
        Not thread-safe: one ``MTP`` object per thread.
        """
        rows, xp = self.max_entries, self.xp
        if 3 * rows * n * 8 > _WORKSPACE_BYTES:
            return xp.empty((2 * rows, n)), xp.empty((rows, n))
        cached = getattr(self, "_buffers", None)
        if cached is None or cached[1].size < rows * n:
            self._buffers = cached = (xp.empty(2 * rows * n), xp.empty(rows * n))
        return cached[0][: 2 * rows * n].reshape(2 * rows, n), cached[1][: rows * n].reshape(rows, n)

    def moments(self, radial, mono):
        """All moments as rows [K_all, n] from radial functions [n, k, M] and monomials [n, k, L] of n atoms.

        Basic moments Mfull [n, M, L] = R^T A as one batched product, then the waves: a gather, a
        multiply and a sparse sum (entries ``mult``) each, in reused buffers.
        """
        xp = self.xp
        n = radial.shape[0]
        full = xp.matmul(radial.transpose(0, 2, 1), mono)  # [n, M, L]
        moments = xp.zeros((self.n_moments, n))
        moments[: self.n_basic] = full.reshape(n, -1)[:, self.basic_flat].T
        buf, _ = self.workspace(n)
        for w in self.waves:
            e = len(w.first)
            prod = xp.take(moments, w.first, axis=0, out=buf[:e])
            prod *= xp.take(moments, w.second, axis=0, out=buf[e:2 * e])
            moments[w.targets] = w.gather @ prod
        return moments

    def moment_gradient(self, moments, mapping, coeffs):
        """dE_i/dM_k as rows [K_all, n] for E_i = Σ_k coeffs[k] * M[mapping[k]](i), by the reverse pass
        through the waves; ``moments`` [K_all, n] from :meth:`moments`, ``mapping`` [K], ``coeffs`` [K]."""
        xp = self.xp
        seed = np.zeros(self.n_moments)
        np.add.at(seed, mapping, coeffs)
        grad = xp.repeat(xp.asarray(seed)[:, None], moments.shape[1], axis=1)
        buf, g = self.workspace(moments.shape[1])
        for w in reversed(self.waves):
            e = len(w.first)
            xp.take(grad, w.target, axis=0, out=g[:e])
            terms = buf[: 2 * e]
            xp.take(moments, w.second, axis=0, out=terms[:e])
            xp.take(moments, w.first, axis=0, out=terms[e:])
            terms[:e] *= g[:e]
            terms[e:] *= g[:e]
            grad[w.inputs] += w.scatter @ terms
        return grad

    def _waves(self, times: np.ndarray, n_moments: int, xp) -> list[Wave]:
        sparse = _sparse(xp)
        level = np.zeros(n_moments, dtype=np.int64)
        for first, second, _, target in times:  # tables are small: O(entries) once per potential
            level[target] = max(level[target], 1 + max(level[first], level[second]))
        waves = []
        entry_level = level[times[:, 3]] if len(times) else np.zeros(0, dtype=np.int64)
        for lev in range(1, int(level.max(initial=0)) + 1):
            rows = times[entry_level == lev]
            first, second, mult, target = rows.T
            targets, column = np.unique(target, return_inverse=True)
            e = len(rows)
            mult = xp.asarray(mult.astype(float))
            gather = sparse.csr_matrix((mult, (xp.asarray(column), xp.arange(e))), shape=(len(targets), e))
            inputs, back = np.unique(np.concatenate([first, second]), return_inverse=True)
            scatter = sparse.csr_matrix((xp.concatenate([mult, mult]), (xp.asarray(back), xp.arange(2 * e))),
                                        shape=(len(inputs), 2 * e))
            waves.append(Wave(xp.asarray(first), xp.asarray(second), xp.asarray(target), xp.asarray(targets),
                              gather, xp.asarray(inputs), scatter))
        self.max_entries = max([len(w.first) for w in waves], default=0)
        return waves
