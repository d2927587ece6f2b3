"""Rows of the MTP extrapolation grade: derivatives of energies with respect to the coefficients.

A row is x = dE/dθ for one atom (``neighbourhood`` mode: the site energy E_i) or one configuration
(``configuration`` mode: the total energy, the sum of its atoms' rows).  ``parameters="linear"``: θ =
species and moment coefficients, x_i = [onehot(type_i) [S], B[i] [K]] (B from ``MTP.basis_values``;
NumPy or CuPy); ``parameters="all"`` (MLIP-2's choice): also the radial coefficients [S*S*M*X]
between them (exact derivatives, :func:`radial_rows`; computed on the host).  :func:`frame_rows`
builds the rows of many ``ase.Atoms`` frames, :func:`fingerprint` hashes what they depend on.
:mod:`training.mtp.maxvol` selects and grades with them.

Two engines give the same rows (to 1e-10 relative in the tests, about 1e-15 measured): the array code
(:func:`radial_rows`, ``MTP.basis_values``), which the active-set *selection* keeps, so the training set a
fit chooses does not depend on whether the machine has a compiler (as ``neighbors.FIT_PAIRS``); and with
``compiled=True`` on NumPy the host build of the fused kernel (:func:`training.mtp.host_kernel.grade_rows`,
falling back to the array code without a compiler), which *grading* uses.
"""
from __future__ import annotations

import hashlib

import numpy as np

from common.arrays import array_module

from .neighbors import PAIRS, batched_pairs

MODES = ("neighbourhood", "configuration")
PARAMETERS = ("linear", "all")

__all__ = ["MODES", "PARAMETERS", "ActiveSetError", "neighbourhood_rows", "radial_rows", "configuration_row",
           "frame_rows", "atom_batches", "fingerprint"]


class ActiveSetError(ValueError):
    """A bad active set or grading request: unknown mode, unreadable or mismatched ``.als`` file
    (built for another potential or species), empty training set."""


def neighbourhood_rows(mtp, types, i, j, d, *, xp=None, parameters: str = "linear", compiled: bool = False):
    """Rows dE_i/dc of each atom: [n, S + K] = one-hot species [S], basis values B[i] [K]
    (``parameters="linear"``), or [n, S + S*S*M*X + K] with the radial-coefficient derivatives
    (:func:`radial_rows`) between them (``parameters="all"``, MLIP-2's choice; computed on the host
    and returned on the pair list's array module, so a CuPy caller gets CuPy rows either way).

    types [n] (MTP type indices), i, j [p], d [p, 3] Å: the full pair list (``MTP.evaluate``'s inputs).
    ``compiled``: on NumPy, the compiled kernel's rows (module docstring) where it loads.
    """
    _check_parameters(parameters)
    if compiled and array_module(d) is np and (xp is None or xp is np):
        from .host_kernel import grade_rows

        kernel = grade_rows(mtp, types, i, j, d)
        if kernel is not None:
            onehot = np.eye(mtp.species_count)[np.asarray(types, dtype=np.int64)]
            return np.concatenate([onehot, kernel[0], kernel[1]] if parameters == "all" else [onehot, kernel[1]],
                                  axis=1)
    if parameters == "all":
        caller = array_module(d)
        types, i, j, d = (a.get() if hasattr(a, "get") else a for a in (types, i, j, d))
        theta_rows, b = radial_rows(mtp, types, i, j, d)
        onehot = np.eye(mtp.species_count)[np.asarray(types, dtype=np.int64)]
        return caller.asarray(np.concatenate([onehot, theta_rows, b], axis=1))
    b = mtp.basis_values(types, i, j, d, xp=xp)  # values only: memory O(n K), fit for MD
    xp = array_module(b)
    types = xp.asarray(types, dtype=xp.int64)
    onehot = xp.eye(mtp.species_count)[types]
    return xp.concatenate([onehot, b], axis=1)


def radial_rows(mtp, types, i, j, d):
    """Site-energy derivatives with respect to the radial coefficients, dE_i/dθ [n, S*S*M*X] (NumPy).

    E_i = Σ_k c_k B_k(i), B built from the basic moments M_b(i) = Σ_{p: i_p = i} R_{μ_b}(r_p) u_p^{(a,b,c)}
    and R_μ(r_p) = Σ_β θ[t_i t_j, μ, β] Q_β(r_p) with Q_β = scaling (max_dist - r)² T_β(ξ) (MLIP's
    RBChebyshev).  So dE_i/dθ[t, μ, β] = Σ_{p: i_p = i, pair type t} Q_β(r_p) Σ_{b: μ_b = μ} G_b(i) u_p^(b),
    with G = dE_i/dM_basic from one reverse pass through ``alpha_index_times``.  Also returns B [n, K].
    """
    import scipy.sparse as sp

    types, i, j, d = (np.asarray(types, dtype=np.int64), np.asarray(i, dtype=np.int64),
                      np.asarray(j, dtype=np.int64), np.asarray(d, dtype=float))
    n, s = len(types), mtp.species_count
    m_count, x_count = mtp.radial_funcs_count, mtp.radial_basis_size
    lo, hi = mtp.min_dist, mtp.max_dist
    r = np.sqrt(np.einsum("pc,pc->p", d, d))
    inside = r < hi
    i, j, d, r = i[inside], j[inside], d[inside], r[inside]
    u = d / r[:, None]
    ksi = (2.0 * r - (lo + hi)) / (hi - lo)
    cheb = [np.ones_like(r), ksi]
    for _ in range(2, x_count):
        cheb.append(2.0 * ksi * cheb[-1] - cheb[-2])
    q = np.stack(cheb[:x_count], axis=1) * (mtp.scaling * (hi - r) ** 2)[:, None]  # [p, X]
    pair_type = types[i] * s + types[j]
    radial = np.einsum("pmx,px->pm", mtp.radial_coeffs.reshape(s * s, m_count, x_count)[pair_type], q)
    basic = mtp.alpha_index_basic  # [Nb, 4]: μ, a, b, c
    # u_x^a u_y^b u_z^c [p, Nb] from a table of powers: the same pow calls and products as
    # np.prod(u[:, None, :] ** basic[None, :, 1:], axis=2), one pow per pair and exponent instead of per moment
    powers = u[:, :, None] ** np.arange(basic[:, 1:].max(initial=0) + 1.0)  # [p, 3, max exponent + 1]
    ang = powers[:, 0, basic[:, 1]] * powers[:, 1, basic[:, 2]] * powers[:, 2, basic[:, 3]]
    centre = sp.csr_matrix((np.ones(len(i)), (i, np.arange(len(i)))), shape=(n, len(i)))
    moments = np.zeros((mtp.alpha_moments_count, n))
    moments[: len(basic)] = (centre @ (radial[:, basic[:, 0]] * ang)).T
    times = mtp.alpha_index_times
    for a, b, mult, out in times:
        moments[out] += mult * moments[a] * moments[b]
    adj = np.zeros_like(moments)
    np.add.at(adj, mtp.alpha_moment_mapping, np.asarray(mtp.moment_coeffs)[:, None] * np.ones((1, n)))
    for a, b, mult, out in times[::-1]:
        adj[a] += mult * adj[out] * moments[b]
        adj[b] += mult * adj[out] * moments[a]
    g = adj[: len(basic)]  # dE_i/dM_b [Nb, n]
    mu_onehot = np.eye(m_count)[basic[:, 0]]  # [Nb, M]
    h = (g[:, i].T * ang) @ mu_onehot  # [p, M]
    contrib = (h[:, :, None] * q[:, None, :]).reshape(len(i), -1)  # [p, M*X]
    rows = np.zeros((n, s * s, m_count * x_count))
    for t in np.unique(pair_type):
        sel = pair_type == t
        rows[:, t] = sp.csr_matrix((np.ones(sel.sum()), (i[sel], np.arange(sel.sum()))),
                                   shape=(n, int(sel.sum()))) @ contrib[sel]
    return rows.reshape(n, -1), moments[mtp.alpha_moment_mapping].T


def configuration_row(mtp, types, i, j, d, *, xp=None, parameters: str = "linear", compiled: bool = False):
    """Row dE/dc of a whole configuration: the sum of its neighbourhood rows."""
    return neighbourhood_rows(mtp, types, i, j, d, xp=xp, parameters=parameters, compiled=compiled).sum(axis=0)


def frame_rows(mtp, frames, *, mode: str = "neighbourhood", parameters: str = "linear", batch_atoms: int = 1500,
               compiled: bool = False):
    """Rows of many frames (ase.Atoms; MTP types from the potential's species, see ``atom_types``).

    Returns rows [R, K'] (see :func:`neighbourhood_rows`, also for ``compiled``), frame [R] (frame index of
    each row) and atom [R] (atom index within its frame; -1 in configuration mode).  Frames are evaluated
    in batches of about ``batch_atoms`` atoms.
    """
    from training.mtp import atom_types

    _check_mode(mode)
    frames = list(frames)
    out_rows, out_frame, out_atom = [], [], []
    for start, stop in atom_batches(frames, batch_atoms):
        chunk = frames[start:stop]
        types = np.concatenate([atom_types(mtp, a) for a in chunk])
        i, j, d, owner = batched_pairs(chunk, mtp.cutoff, pairs=PAIRS)
        rows = np.asarray(neighbourhood_rows(mtp, types, i, j, d, xp=np, parameters=parameters, compiled=compiled))
        owner = owner + start
        local = np.concatenate([np.arange(len(a)) for a in chunk])
        if mode == "neighbourhood":
            out_rows.append(rows)
            out_frame.append(owner)
            out_atom.append(local)
        else:
            sums = np.zeros((len(chunk), rows.shape[1]))
            np.add.at(sums, owner - start, rows)
            out_rows.append(sums)
            out_frame.append(np.arange(start, stop))
            out_atom.append(np.full(len(chunk), -1))
    if not out_rows:
        raise ActiveSetError("no frames to take rows from")
    return np.concatenate(out_rows), np.concatenate(out_frame), np.concatenate(out_atom)


def atom_batches(frames, batch_atoms: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) frame ranges of about ``batch_atoms`` atoms each (at least one frame)."""
    out, start = [], 0
    while start < len(frames):
        stop, n = start, 0
        while stop < len(frames) and (stop == start or n + len(frames[stop]) <= batch_atoms):
            n += len(frames[stop])
            stop += 1
        out.append((start, stop))
        start = stop
    return out


def fingerprint(mtp, parameters: str = "linear") -> str:
    """Hash of what the rows depend on: basis tables, radial coefficients, distances, species (and the
    moment coefficients for ``parameters="all"``)."""
    h = hashlib.sha256()
    if parameters == "all":
        h.update(np.ascontiguousarray(np.asarray(mtp.moment_coeffs, dtype=float)).tobytes())
    for a in (mtp.alpha_index_basic, mtp.alpha_index_times, mtp.alpha_moment_mapping, mtp.radial_coeffs,
              np.array([mtp.min_dist, mtp.max_dist, mtp.scaling, mtp.species_count], dtype=float)):
        h.update(np.ascontiguousarray(np.asarray(a, dtype=float)).tobytes())
    h.update(",".join(mtp.species or []).encode())
    return h.hexdigest()[:32]


def _check_parameters(parameters: str) -> None:
    if parameters not in PARAMETERS:
        raise ActiveSetError(f"active set parameters {parameters!r} is not one of {', '.join(PARAMETERS)}")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ActiveSetError(f"active set mode {mode!r} is not one of {', '.join(MODES)}")
