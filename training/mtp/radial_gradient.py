"""MTP basis values, their position derivatives and radial-coefficient gradients, batched for fitting.

The fit needs what the plain model evaluation (``MTP.evaluate``) does not give: the design matrix of
the linear coefficients (energy, forces and virial of every basis function for many frames at once), the
gradient of a weighted sum of predictions with respect to the radial coefficients θ, and the Jacobian of
the predictions with respect to θ, for MLIP-2's MTP (Shapeev 2016, Multiscale Model. Simul. 14, 1153;
Novikov et al. 2021, Mach. Learn.: Sci. Technol. 2, 025002) on the concatenated pair lists of several
frames.  The radial basis and the angular monomials are those of :mod:`training.mtp.basis`.

Data flow::

    training.mtp.MTP  --BasisSpec.from_mtp-->   BasisSpec (alpha indices, radial basis; no coefficients)
    list[Atoms] + types --PairBatch.build-->     pairs i, j, d [p, 3] of several frames
                                                 (training.mtp.neighbors.neighbor_pairs per frame)
    BasisSpec, θ, PairBatch --design-->          energy rows [F, K], force rows [N, 3, K],
                                                 virial rows [F, 6, K]  (K = basis functions)
    BasisSpec, θ, c, PairBatch, seeds --theta_gradient-->  ∂S/∂θ of S = Σ_f a_f E_f + Σ u·F + Σ ρ·W
    BasisSpec, θ, c, PairBatch --prediction_jacobian-->   ∂(E, F, W)/∂θ at fixed c (for Levenberg-Marquardt)

Conventions (MLIP-2's, as in :mod:`training.mtp.model`): f_μ(r) = Σ_β θ[t_i*S + t_j, μ, β] Q_β(r); basic
moment (μ, a, b, c): M(i) = Σ_j f_μ(r_ij) x^a y^b z^c / r^(a+b+c) with d = r_j − r_i = (x, y, z); basis
function k: B_k(i) = M_{mapping[k]}(i); E_i = species_coeffs[t_i] + Σ_k c_k B_k(i).  Lengths in Å,
energies in eV.  θ [S*S, M, X] is ``MTP.radial_coeffs`` [S, S, M, X] reshaped.

Design matrix (the costly part of a fit).  For a pair p with centre i, dB_k(i)/dd_p = Σ_b J_kb(i)
∂M_b(i)/∂d_p, with J(i) = ∂B(i)/∂M_basic [K, Nb] the Jacobian of the basis functions with respect to the
basic moments of the same atom.  J is found by one reverse pass through the product table per atom
(only the columns k that depend on a moment are carried), and the pair derivatives by one batched matrix
product per atom over its padded neighbour slots, so the cost is O(pairs · K · Nb) in BLAS instead of
O(pairs · products) in Python-level array operations.

The θ-gradient uses the complex step: with d̃ = d + i h δd, Ẽ = E + i h D E[δd] + O(h²) exactly in
floating point (no subtraction), and the reverse pass through the moment products is holomorphic, so
one complex reverse pass gives both ∂E/∂θ (real part) and ∂(D E[δd])/∂θ (imaginary part / h).  Force
residuals enter through δd_p = −(u_j − u_i) (F = −∂E/∂r), virial residuals through δd_p = ε d_p.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from common.voigt import VOIGT_PAIRS, to_voigt

from .basis import MonomialTable, angular_powers, monomials, radial_basis_inside
from .neighbors import PairBatch

__all__ = ["BasisSpec", "PairBatch", "Geometry", "geometry", "geometry_bytes", "basic_terms", "terms_bytes",
           "design", "theta_gradient", "prediction_jacobian", "site_basis"]

#: Complex-step size (dimensionless multiplier of δd, which is O(residual)); see module docstring.
COMPLEX_STEP = 1e-30


@dataclass(frozen=True)
class BasisSpec:
    """The MTP basis of one level: everything but the fitted coefficients.

    Attributes: ``species_count`` S; ``min_dist``, ``max_dist`` (Å); ``radial_basis_size`` X;
    ``radial_funcs_count`` M; ``scaling`` s; ``basic`` [Nb, 4] int (μ, a, b, c);
    ``times`` [Nt, 4] int (a, b, mult, out); ``mapping`` [K] int; ``moments_count``.
    """

    species_count: int
    min_dist: float
    max_dist: float
    radial_basis_size: int
    radial_funcs_count: int
    scaling: float
    basic: np.ndarray
    times: np.ndarray
    mapping: np.ndarray
    moments_count: int

    @classmethod
    def from_mtp(cls, mtp, *, species_count: int | None = None, scaling: float | None = None) -> "BasisSpec":
        """The basis of a ``training.mtp.MTP`` (optionally with another species count or scaling)."""
        return cls(species_count=int(mtp.species_count if species_count is None else species_count),
                   min_dist=float(mtp.min_dist), max_dist=float(mtp.max_dist),
                   radial_basis_size=int(mtp.radial_basis_size), radial_funcs_count=int(mtp.radial_funcs_count),
                   scaling=float(mtp.scaling if scaling is None else scaling),
                   basic=np.asarray(mtp.alpha_index_basic, dtype=np.int64).reshape(-1, 4),
                   times=np.asarray(mtp.alpha_index_times, dtype=np.int64).reshape(-1, 4),
                   mapping=np.asarray(mtp.alpha_moment_mapping, dtype=np.int64),
                   moments_count=int(mtp.alpha_moments_count))

    def mtp_fields(self) -> dict:
        """The basis part of the ``.mtp`` fields (``training.mtp.mtp_file``); coefficients are left out."""
        return {"scaling": self.scaling, "species_count": self.species_count, "radial_basis_type": "RBChebyshev",
                "min_dist": self.min_dist, "max_dist": self.max_dist, "radial_basis_size": self.radial_basis_size,
                "radial_funcs_count": self.radial_funcs_count, "alpha_moments_count": self.moments_count,
                "alpha_index_basic": self.basic, "alpha_index_times": self.times,
                "alpha_moment_mapping": self.mapping}

    @property
    def theta_shape(self) -> tuple[int, int, int]:
        """Shape of θ: [S*S, M, X]."""
        return (self.species_count ** 2, self.radial_funcs_count, self.radial_basis_size)

    @property
    def n_basis(self) -> int:
        """K, the number of linear (moment) coefficients."""
        return int(self.mapping.size)

    def with_scaling(self, scaling: float) -> "BasisSpec":
        """The same basis with another radial ``scaling``."""
        return replace(self, scaling=float(scaling))


# --------------------------------------------------------------------------------------------
# Radial and angular parts per pair (work for real and complex d)
# --------------------------------------------------------------------------------------------

def _radial(spec: BasisSpec, r, *, derivative: bool):
    """Q [X, p] and, if asked, dQ/dr [X, p] (else None) of the radial basis; r <= max_dist, real or complex."""
    return radial_basis_inside(r, min_dist=spec.min_dist, max_dist=spec.max_dist, scaling=spec.scaling,
                               size=spec.radial_basis_size, derivative=derivative)


def _radial_funcs(theta, pair_type, q, dq):
    """f [M, p] = Σ_β θ[t_p, μ, β] Q_β and its r-derivative (or None)."""
    nmu = theta.shape[1]
    f = np.zeros((nmu, q.shape[1]), dtype=np.result_type(q, theta))
    df = None if dq is None else np.zeros_like(f)
    for tp in np.unique(pair_type):
        m = pair_type == tp
        f[:, m] = theta[tp] @ q[:, m]
        if dq is not None:
            df[:, m] = theta[tp] @ dq[:, m]
    return f, df


def _atom_moments(spec: BasisSpec, batch: PairBatch, m_basic):
    """All moments per atom [n_mom, N] from the per-pair basic moment values m_basic [Nb, p]."""
    return _all_moments(spec, (batch.center @ m_basic.T).T)


#: Index plans of each basis seen (:func:`_dependents`, :func:`_hessian_plan`; keyed by its tables): the same
#: for every batch and θ.
_DEPENDENTS: dict = {}


def _dependents(spec: BasisSpec):
    """Per moment, the sorted basis-function columns k that depend on it, and the reverse-pass plan.

    Returns ``deps`` (list of int arrays) and ``rows``: the product rows (a, b, mult, out) sorted by
    ``out`` descending with index arrays placing deps[out] inside deps[a] and deps[b].  Computed once
    per basis (:data:`_DEPENDENTS`).
    """
    key = (spec.moments_count, spec.times.tobytes(), spec.mapping.tobytes())
    if key not in _DEPENDENTS:
        _DEPENDENTS[key] = _dependents_of(spec)
    return _DEPENDENTS[key]


def _dependents_of(spec: BasisSpec):
    deps = [set() for _ in range(spec.moments_count)]
    for k, m in enumerate(spec.mapping):
        deps[m].add(k)
    order = np.argsort(-spec.times[:, 3], kind="stable") if len(spec.times) else np.zeros(0, dtype=np.int64)
    for a, b, _, out in spec.times[order]:
        deps[a] |= deps[out]
        deps[b] |= deps[out]
    deps = [np.array(sorted(s), dtype=np.int64) for s in deps]
    rows = []
    for a, b, mult, out in spec.times[order]:
        if deps[out].size:
            rows.append((a, b, float(mult), out, np.searchsorted(deps[a], deps[out]),
                         np.searchsorted(deps[b], deps[out])))
    return deps, rows


def _basis_jacobian(spec: BasisSpec, mom) -> np.ndarray:
    """J [N, Nb, K] = ∂B_k(i)/∂M_b(i) by a reverse pass (columns restricted to dependents)."""
    deps, rows = _dependents(spec)
    n = mom.shape[1]
    adj = [np.zeros((dk.size, n)) for dk in deps]
    for k, m in enumerate(spec.mapping):
        adj[m][np.searchsorted(deps[m], k)] += 1.0
    for a, b, mult, out, pos_a, pos_b in rows:
        g = mult * adj[out]
        adj[a][pos_a] += g * mom[b]
        adj[b][pos_b] += g * mom[a]
    nb = len(spec.basic)
    jac = np.zeros((n, nb, spec.n_basis))
    for b in range(nb):
        if deps[b].size:
            jac[:, b, deps[b]] = adj[b].T
    return jac


def _monomial_plan(spec: BasisSpec):
    """The monomial table of the basis, ``basic_l`` [Nb] (monomial of each basic moment), ``low`` [Nb, 3]
    (monomial of l_b − e_c, 0 where the exponent is 0) and ``expo`` [Nb, 3] (the exponents, as floats).
    Computed once per basis (:data:`_DEPENDENTS`): the θ-gradient asks for it on every batch and pass."""
    key = ("monomials", spec.basic.tobytes(), spec.basic.shape)
    if key not in _DEPENDENTS:
        table = MonomialTable.of_basic(spec.basic)
        abc = spec.basic[:, 1:]
        basic_l = table.indices(abc)
        low = table.lowered[:, basic_l].T
        _DEPENDENTS[key] = table, basic_l, np.where(low >= 0, low, 0), abc.astype(float)
    return _DEPENDENTS[key]


def _padded_pairs(spec: BasisSpec, batch: PairBatch):
    """Pair vectors d [P, 3] (Å) and pair types [P] in the padded layout P = N·k_max (slot-major per atom).

    Padding slots sit at (max_dist, 0, 0), where every radial basis function and its derivative vanish.
    """
    n, slots = batch.types.size, batch.k_max
    d = np.zeros((n * slots, 3))
    d[:, 0] = spec.max_dist
    flat = batch.i * slots + batch.slot
    d[flat] = batch.d
    pair_type = np.zeros(n * slots, dtype=np.int64)
    pair_type[flat] = batch.pair_type
    return d, pair_type


def _unit_monomials(spec: BasisSpec, u):
    """All monomials A_l(u) [L, p] of unit pair vectors u [3, p] (real or complex: the complex step) in
    :class:`MonomialTable` order, with ``basic_l``, ``low`` and ``expo`` of :func:`_monomial_plan`."""
    table, basic_l, low, expo = _monomial_plan(spec)
    mono = monomials(*(u[c][None, :] for c in range(3)), table.degree, np.empty((len(table), u.shape[1]), u.dtype))
    return mono, basic_l, low, expo


@dataclass
class Geometry:
    """θ-independent per-slot quantities of a batch in the padded layout P = N·k_max.

    d [P, 3] Å; pair_type [P]; r [P]; u [3, P]; q, dq [X, P] radial basis and its r-derivative;
    ang [Nb, P] angular part of each basic moment; dang [3, Nb, P] its gradient with respect to d (1/Å);
    gather CSR [N, P]: 1 at (j_p, slot of p), sends a pair-slot quantity to the pair's neighbour atom;
    phi [N, Nb, S*S, X] or None until :func:`prediction_jacobian` needs it: Φ_(b,tp,β)(i) =
    Σ_(p of i, type tp) ang_b(p) Q_β(r_p), the derivative of basic moment b with respect to θ[tp, μ_b, β].
    :func:`design` and :func:`prediction_jacobian` compute it when not given; a fit that evaluates the
    same batch at many θ keeps it (:meth:`training.fit_data.TrainingSet.matrix`), which gives the same
    numbers bit for bit.
    """

    d: np.ndarray
    pair_type: np.ndarray
    r: np.ndarray
    u: np.ndarray
    q: np.ndarray
    dq: np.ndarray
    ang: np.ndarray
    dang: np.ndarray
    gather: sp.csr_matrix
    phi: np.ndarray | None = None


def geometry_bytes(spec: BasisSpec, batch: PairBatch) -> int:
    """Bytes that :func:`geometry` of ``batch`` holds (float64 arrays, int64 pair types, the CSR gather,
    ``phi``)."""
    slots = batch.types.size * batch.k_max
    per_slot = 3 + 1 + 1 + 3 + 2 * spec.radial_basis_size + 4 * len(spec.basic)
    per_atom = len(spec.basic) * spec.species_count ** 2 * spec.radial_basis_size
    return 8 * (slots * per_slot + batch.types.size * per_atom) + 16 * batch.n_pairs + 8 * (batch.types.size + 1)


def terms_bytes(spec: BasisSpec, batch: PairBatch) -> int:
    """Bytes of :func:`basic_terms` of ``batch``."""
    return 8 * len(spec.basic) * batch.types.size * (3 * batch.k_max + 1)


def geometry(spec: BasisSpec, batch: PairBatch) -> Geometry:
    """The θ-independent :class:`Geometry` of ``batch`` (what every design and Jacobian pass reuses)."""
    d, pair_type = _padded_pairs(spec, batch)
    r = np.sqrt(np.einsum("pa,pa->p", d, d))
    u = (d / r[:, None]).T
    q, dq = _radial(spec, r, derivative=True)
    mono, basic_l, low, expo = _unit_monomials(spec, u)
    ang = mono[basic_l]                                      # [Nb, P]
    inv_r = 1.0 / r
    deg = expo.sum(axis=1)[:, None]
    # ∂(u^l)/∂d_c = (e_c u^(l − e_c) − |l| u^l u_c) / r
    dang = np.stack([(expo[:, c, None] * mono[low[:, c]] - deg * ang * u[c]) * inv_r for c in range(3)])
    slots = batch.k_max
    gather = sp.csr_matrix((np.ones(batch.n_pairs), (batch.j, batch.i * slots + batch.slot)),
                           shape=(batch.types.size, batch.types.size * slots))
    return Geometry(d, pair_type, r, u, q, dq, ang, dang, gather)


def basic_terms(spec: BasisSpec, theta, batch: PairBatch, geo: Geometry):
    """Basic moments per atom [Nb, N] and their derivatives per padded pair slot [N·k_max, 3, Nb] (1/Å) at
    θ [S*S, M, X], from the batch's :func:`geometry`: what :func:`design` and :func:`prediction_jacobian`
    at the same θ share (Levenberg-Marquardt linearises where it has just evaluated the design matrix)."""
    f, df = _radial_funcs(theta, geo.pair_type, geo.q, geo.dq)   # [M, P]
    mu = spec.basic[:, 0]
    n, slots = batch.types.size, batch.k_max
    fm = f[mu]
    moments = np.einsum("bns->bn", (fm * geo.ang).reshape(len(mu), n, slots))
    along = df[mu] * geo.ang
    dm = np.empty((geo.r.size, 3, len(mu)))
    for c in range(3):
        dm[:, c, :] = (geo.u[c] * along + fm * geo.dang[c]).T
    return moments, dm


def _all_moments(spec: BasisSpec, basic_moments):
    """All moments per atom [n_mom, N] from the basic moments [Nb, N] through ``alpha_index_times``."""
    mom = np.zeros((spec.moments_count, basic_moments.shape[1]), dtype=basic_moments.dtype)
    mom[: len(spec.basic)] = basic_moments
    for a, b, mult, out in spec.times:
        mom[out] += mult * mom[a] * mom[b]
    return mom


def site_basis(spec: BasisSpec, theta, batch: PairBatch):
    """Per-atom basis values B [K, N] (dimensionless products of moments; E_i = Σ_k c_k B_k(i))."""
    theta = np.asarray(theta, dtype=float).reshape(spec.theta_shape)
    r = np.sqrt(np.einsum("pa,pa->p", batch.d, batch.d))
    q, _ = _radial(spec, r, derivative=False)
    ang = angular_powers(batch.d, r, spec.basic[:, 1:])
    f, _ = _radial_funcs(theta, batch.pair_type, q, None)
    return _atom_moments(spec, batch, f[spec.basic[:, 0]] * ang)[spec.mapping]


def design(spec: BasisSpec, theta, batch: PairBatch, geo: Geometry | None = None, terms=None):
    """Design blocks of the linear coefficients for the frames of ``batch``.

    Returns ``(energy [F, K], forces [N, 3, K], virial [F, 6, K])`` with the species columns left out:
    energy E_f = Σ_k c_k energy[f, k] (+ species terms, eV), forces F = Σ_k c_k forces[..., k] (eV/Å),
    virial W_f = Σ_k c_k virial[f, :, k] = Σ_p ∂E/∂d_p ⊗ d_p in Voigt order xx yy zz yz xz xy (eV;
    ASE stress = W / V, MLIP PlusStress = −W).  ``geo``: the batch's :func:`geometry`; ``terms``: its
    :func:`basic_terms` at this θ (each computed when None).
    """
    theta = np.asarray(theta, dtype=float).reshape(spec.theta_shape)
    geo = geometry(spec, batch) if geo is None else geo
    basic_moments, dm = basic_terms(spec, theta, batch, geo) if terms is None else terms
    mom = _all_moments(spec, basic_moments)
    jac = _basis_jacobian(spec, mom)                            # [N, Nb, K]
    n, nb, k = jac.shape
    slots = batch.k_max
    per_slot = np.matmul(dm.reshape(n, slots * 3, nb), jac)   # dB(i)/dd_slot [N, k_max·3, K]
    forces, virial = _forces_and_virial(geo, batch, per_slot)
    energy = batch.atom_to_frame @ mom[spec.mapping].T
    return np.asarray(energy), forces, virial


def _forces_and_virial(geo: Geometry, batch: PairBatch, per_slot):
    """Forces [N, 3, W] and frame virials [F, 6, W] (Voigt) of W quantities from their derivatives with
    respect to each padded pair slot's d, ``per_slot`` [N·k_max·3·W] (any shape of that layout)."""
    n, slots = batch.types.size, batch.k_max
    flat = per_slot.reshape(n * slots, -1)
    width = flat.shape[1] // 3
    # F_a = Σ_{p: i_p = a} ∂X/∂d_p − Σ_{p: j_p = a} ∂X/∂d_p
    forces = flat.reshape(n, slots, -1).sum(axis=1).reshape(n, 3, width) - (geo.gather @ flat).reshape(n, 3, width)
    # W = Σ_p d_p ⊗ ∂X/∂d_p, per atom one BLAS product over its slots: [3 (d), k_max] @ [k_max, 3·W (c, w)]
    d_t = np.ascontiguousarray(geo.d.reshape(n, slots, 3).transpose(0, 2, 1))
    atom_virial = np.matmul(d_t, flat.reshape(n, slots, -1))
    frame_virial = (batch.atom_to_frame @ atom_virial.reshape(n, -1)).reshape(-1, 3, 3, width)
    return forces, to_voigt(frame_virial, axis=1)  # symmetrised: the order of the two tensor axes is immaterial


def theta_gradient(spec: BasisSpec, theta, coeffs, batch: PairBatch, *, energy_seed, force_seed,
                   virial_seed) -> np.ndarray:
    """∂S/∂θ [S*S, M, X] of S = Σ_f a_f E_f + Σ_atoms u·F + Σ_f Σ_v ρ_fv W_fv.

    ``coeffs`` [K] linear moment coefficients; ``energy_seed`` a [F]; ``force_seed`` u [N, 3] (eV/Å)⁻¹;
    ``virial_seed`` ρ [F, 6] (Voigt, as in :func:`design`).  Species coefficients do not depend on θ.
    """
    theta = np.asarray(theta, dtype=float).reshape(spec.theta_shape)
    u = np.asarray(force_seed, dtype=float)
    rho = np.asarray(virial_seed, dtype=float)
    d = batch.d
    # δd_p: F = −∂E/∂r so the force term is −D E[u_j − u_i]; the virial term is D E[ε d_p]
    eps = np.empty((batch.n_frames, 3, 3))
    for v, (a, b) in enumerate(VOIGT_PAIRS):
        eps[:, a, b] = eps[:, b, a] = rho[:, v] if a == b else 0.5 * rho[:, v]
    delta = -(u[batch.j] - u[batch.i]) + np.einsum("pab,pb->pa", eps[batch.pair_frame], d)
    scale = float(np.abs(delta).max()) or 1.0
    h = COMPLEX_STEP / scale
    dz = d + 1j * h * delta
    r = np.sqrt(np.einsum("pa,pa->p", dz, dz))
    q, _ = _radial(spec, r, derivative=False)
    mono, basic_l, _, _ = _unit_monomials(spec, (dz / r[:, None]).T)
    ang = mono[basic_l]                                          # [Nb, p] complex
    f, _ = _radial_funcs(theta, batch.pair_type, q, None)
    mu = spec.basic[:, 0]
    mom = _atom_moments(spec, batch, f[mu] * ang)
    adj = np.zeros_like(mom)
    adj[spec.mapping] += np.asarray(coeffs, dtype=float)[:, None]
    for a, b, mult, out in spec.times[::-1]:
        g = mult * adj[out]
        adj[a] += g * mom[b]
        adj[b] += g * mom[a]
    nb = len(spec.basic)
    # per pair: ∂Ẽ/∂f_μ(p) = Σ_{a: μ_a = μ} adj_a(i_p) ang_a(p)
    indicator = np.zeros((nb, spec.radial_funcs_count))
    indicator[np.arange(nb), mu] = 1.0
    upair = (adj[:nb][:, batch.i] * ang).T @ indicator          # [p, M] complex
    a_pair = np.asarray(energy_seed, dtype=float)[batch.pair_frame]
    grad = np.zeros(spec.theta_shape)
    # real and imaginary parts as contiguous arrays, so that the products over the pairs run in BLAS
    u_re, u_im = np.ascontiguousarray(upair.real), np.ascontiguousarray(upair.imag)   # [p, M]
    q_re, q_im = np.ascontiguousarray(q.real.T), np.ascontiguousarray(q.imag.T)       # [p, X]
    for tp in np.unique(batch.pair_type):
        m = batch.pair_type == tp if spec.species_count > 1 else slice(None)
        ur, ui, qr, qi, am = u_re[m], u_im[m], q_re[m], q_im[m], a_pair[m, None]
        grad[tp] = (ur * am).T @ qr - (ui * am).T @ qi + (ur.T @ qi + ui.T @ qr) / h
    return grad


def _hessian_plan(spec: BasisSpec):
    """Index plan of :func:`_moment_hessian`: the basic moments each moment's tangent (``fwd``) and adjoint
    tangent (``rev``) can depend on, and per product row the positions that place one inside another.

    Returns ``fwd``, ``rev`` (lists of sorted int arrays, one per moment), ``forward`` rows (a, b, mult,
    out, rows of fwd[a] and fwd[b] in fwd[out]) in table order and ``reverse`` rows (a, b, mult, out,
    then for each input side: rows of rev[out] and of the other input's fwd in their union, and rows of
    that union in rev[input]) in reverse table order.  Computed once per basis (:data:`_DEPENDENTS`).
    """
    key = ("hessian", spec.moments_count, spec.times.tobytes(), spec.mapping.tobytes(), len(spec.basic))
    if key in _DEPENDENTS:
        return _DEPENDENTS[key]
    nb = len(spec.basic)
    fwd_sets = [{m} if m < nb else set() for m in range(spec.moments_count)]
    for a, b, _, out in spec.times:
        fwd_sets[out] |= fwd_sets[a] | fwd_sets[b]
    rev_sets = [set() for _ in range(spec.moments_count)]
    for a, b, _, out in spec.times[::-1]:
        rev_sets[a] |= rev_sets[out] | fwd_sets[b]
        rev_sets[b] |= rev_sets[out] | fwd_sets[a]
    fwd = [np.array(sorted(x), dtype=np.int64) for x in fwd_sets]
    rev = [np.array(sorted(x), dtype=np.int64) for x in rev_sets]
    forward = [(a, b, float(mult), out, np.searchsorted(fwd[out], fwd[a]), np.searchsorted(fwd[out], fwd[b]))
               for a, b, mult, out in spec.times]

    def side(into, other, out):
        union = np.union1d(rev[out], fwd[other])
        return (np.searchsorted(union, rev[out]), np.searchsorted(union, fwd[other]), union.size,
                np.searchsorted(rev[into], union))

    reverse = [(a, b, float(mult), out, side(a, b, out), side(b, a, out)) for a, b, mult, out in spec.times[::-1]]
    _DEPENDENTS[key] = fwd, rev, forward, reverse
    return _DEPENDENTS[key]


def _moment_hessian(spec: BasisSpec, mom, coeffs):
    """g [N, Nb] = ∂E_i/∂M_b and H [N, Nb, Nb] = ∂²E_i/∂M_b∂M_b' of E_i = Σ_k c_k B_k(i).

    Forward tangents of every moment with respect to each basic moment, then the reverse (adjoint) pass
    carrying those tangents along (forward-over-reverse).  Each tangent is stored on the basic moments it
    can depend on (:func:`_hessian_plan`); the rows left out hold exact zeros, so the sums over the rows
    kept are those over all rows, bit for bit.
    """
    nb, n = len(spec.basic), mom.shape[1]
    fwd, rev, forward, reverse = _hessian_plan(spec)
    tangent = [np.ones((1, n)) if m < nb else np.zeros((rows.size, n)) for m, rows in enumerate(fwd)]
    for a, b, mult, out, in_a, in_b in forward:
        term = np.zeros_like(tangent[out])
        term[in_a] = tangent[a] * mom[b]
        term[in_b] += mom[a] * tangent[b]
        tangent[out] += mult * term
    adj = np.zeros((spec.moments_count, n))
    np.add.at(adj, spec.mapping, np.repeat(np.asarray(coeffs, float)[:, None], n, axis=1))
    adj_t = [np.zeros((rows.size, n)) for rows in rev]
    for a, b, mult, out, side_a, side_b in reverse:
        g, g_t = mult * adj[out], mult * adj_t[out]
        adj[a] += g * mom[b]
        adj[b] += g * mom[a]
        for into, other, (of_out, of_other, size, place) in ((a, b, side_a), (b, a, side_b)):
            term = np.zeros((size, n))
            term[of_out] = g_t * mom[other]
            term[of_other] += g * tangent[other]
            adj_t[into][place] += term
    hess = np.zeros((n, nb, nb))  # contiguous: the products with H then run in BLAS
    for b in range(nb):
        hess[:, b, rev[b]] = adj_t[b].T
    return adj[:nb].T, hess


def prediction_jacobian(spec: BasisSpec, theta, coeffs, batch: PairBatch, geo: Geometry | None = None, terms=None):
    """Derivatives of the predictions with respect to θ at fixed moment coefficients ``coeffs`` [K].

    Returns ``(energy [F, T], forces [N, 3, T], virial [F, 6, T])`` with T = S*S*M*X (θ flattened in C
    order): ∂/∂θ of ``design(spec, θ, batch)`` contracted with ``coeffs``.  Exact (no differencing):
    the basic moments are linear in θ, M_b(i) = Σ_(tp,β) θ[tp, μ_b, β] Φ_(b,tp,β)(i), and the pair
    gradients ∂E/∂d_p = Σ_b g_b(i) ∂M_b/∂d_p change through g (via the Hessian H of the site energy
    with respect to the basic moments) and through ∂M_b/∂d_p itself.  ``geo``: the batch's :func:`geometry`;
    ``terms``: its :func:`basic_terms` at this θ (each computed when None).
    """
    theta = np.asarray(theta, dtype=float).reshape(spec.theta_shape)
    geo = geometry(spec, batch) if geo is None else geo
    basic_moments, dm = basic_terms(spec, theta, batch, geo) if terms is None else terms
    mom = _all_moments(spec, basic_moments)
    g, hess = _moment_hessian(spec, mom, coeffs)                 # [N, Nb], [N, Nb, Nb]
    n, slots, nb = batch.types.size, batch.k_max, len(spec.basic)
    s2, m, x = spec.theta_shape
    t = s2 * m * x
    mu = spec.basic[:, 0]
    # δM_b = Σ_(tp,β) Φ_(b,tp,β) δθ[tp, μ_b, β]: basic moment b moves only with θ[tp, μ_b, :], so the
    # products with δM run over the basic moments of one μ at a time (the others contribute exact zeros)
    if geo.phi is None:
        geo.phi = np.zeros((n, nb, s2, x))
        for tp in np.unique(geo.pair_type):
            mask = (geo.pair_type == tp).reshape(n, slots)
            geo.phi[:, :, tp] = np.einsum("bns,xns->nbx", geo.ang.reshape(nb, n, slots) * mask,
                                          geo.q.reshape(x, n, slots))
    phi = geo.phi
    atom_energy = np.zeros((n, s2, m, x))
    d_g = np.zeros((n, nb, s2, m, x))                            # ∂g/∂θ = H δM  [N, Nb, T]
    for radial in range(m):
        group = np.nonzero(mu == radial)[0]
        block = phi[:, group].reshape(n, group.size, s2 * x)
        atom_energy[:, :, radial] = np.einsum("nb,nbt->nt", g[:, group], block).reshape(n, s2, x)
        d_g[:, :, :, radial] = np.matmul(hess[:, :, group], block).reshape(n, nb, s2, x)
    energy = batch.atom_to_frame @ atom_energy.reshape(n, t)
    d_g = d_g.reshape(n, nb, t)
    per_slot = np.matmul(dm.reshape(n, slots * 3, nb), d_g).reshape(n * slots, 3, s2, m, x)
    # the change of ∂M_b/∂d itself: u_c f'(r) ang_b + f(r) dang_b with f = Q_β of pair type tp
    indicator = np.zeros((nb, m))
    indicator[np.arange(nb), mu] = 1.0
    g_slot = np.repeat(g, slots, axis=0).T                       # [Nb, P]
    g1 = indicator.T @ (g_slot * geo.ang)                        # [M, P]
    g2 = np.stack([indicator.T @ (g_slot * geo.dang[c]) for c in range(3)])  # [3, M, P]
    # each slot adds to the θ block of its own pair type (padding slots: type 0, where q = dq = 0)
    own = np.arange(n * slots) if s2 > 1 else slice(None)
    for c in range(3):
        per_slot[own, c, geo.pair_type if s2 > 1 else 0] += (
            (g1 * geo.u[c]).T[:, :, None] * geo.dq.T[:, None, :] + g2[c].T[:, :, None] * geo.q.T[:, None, :])
    forces, virial = _forces_and_virial(geo, batch, per_slot)
    return np.asarray(energy), forces, virial
