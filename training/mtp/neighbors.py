"""CPU neighbour list for ``MTP.evaluate``: ASE Atoms -> full pair list (i, j, d).

Small cells (the usual fitting and AIMD cells, which need many periodic images) use a brute-force
search over all atom pairs and image shifts in one array expression; larger ones use
``ase.neighborlist.neighbor_list("ijD")``.  Both give the same pairs.  The GPU MD engine builds its own
lists; this one serves the calculator, ``calc-efs`` and fitting.
"""
from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list


def neighbor_pairs(atoms: Atoms, cutoff: float):
    """Full neighbour list of ``atoms`` within ``cutoff`` (Å).

    Returns i [p] int64, j [p] int64, d [p, 3] float64 with d = r_j + image shift - r_i (Å); every pair
    appears as i->j and j->i; periodic images of an atom itself are included as pairs (i, i).
    """
    cutoff = float(cutoff)
    shifts = _image_shifts(atoms, cutoff)
    if len(atoms) ** 2 * len(shifts) > _BRUTE_FORCE_LIMIT:
        i, j, d = neighbor_list("ijD", atoms, cutoff, self_interaction=False)
        return i.astype(np.int64), j.astype(np.int64), np.ascontiguousarray(d, dtype=np.float64)
    cell = atoms.cell.array
    positions = atoms.positions.copy()
    if atoms.pbc.any():  # wrap along periodic directions so that the image range below suffices
        frac = np.linalg.solve(cell.T, positions.T).T if atoms.cell.rank == 3 else None
        if frac is None:
            raise ValueError("a periodic direction needs a cell of full rank (give the vacuum direction a length)")
        positions -= (np.floor(frac) * atoms.pbc) @ cell
    vectors = shifts @ cell  # [s, 3]
    d = positions[None, :, None, :] - positions[:, None, None, :] + vectors[None, None, :, :]  # [n, n, s, 3]
    dist2 = np.einsum("ijsc,ijsc->ijs", d, d)
    keep = (dist2 < cutoff * cutoff) & (dist2 > 0.0)
    i, j, _ = np.nonzero(keep)
    return i.astype(np.int64), j.astype(np.int64), np.ascontiguousarray(d[keep])


#: above this many candidate (pair, image) vectors, use ASE's cell-list search
_BRUTE_FORCE_LIMIT = 400_000


def _image_shifts(atoms: Atoms, cutoff: float) -> np.ndarray:
    """Integer image shifts [s, 3] that can hold a neighbour of wrapped positions within ``cutoff``."""
    reach = np.zeros(3, dtype=int)
    if atoms.pbc.any():
        if atoms.cell.rank < 3:
            raise ValueError("a periodic direction needs a cell of full rank (give the vacuum direction a length)")
        # fractional coordinate k of a pair vector d is d . b_k, |d . b_k| <= cutoff |b_k|; wrapped positions
        # differ by less than 1 in it, so an image shift s_k needs |s_k| < cutoff |b_k| + 1
        recip = np.linalg.inv(atoms.cell.array).T  # rows: reciprocal vectors (no 2π); plane spacing = 1/|b|
        reach = np.where(atoms.pbc, np.ceil(cutoff * np.linalg.norm(recip, axis=1) + 1e-9).astype(int), 0)
    axes = [np.arange(-m, m + 1) for m in reach]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3).astype(float)


def batched_pairs(frames, cutoff: float):
    """One pair list for many structures, so that one ``MTP.evaluate`` call handles them all.

    Returns i [p], j [p], d [p, 3] (Å) with atom indices offset frame by frame, and ``frame`` [n_total]
    (the frame index of each atom; per-frame sums: ``numpy.bincount(frame, weights=...)``).
    """
    parts, offset, frame = [], 0, []
    for k, atoms in enumerate(frames):
        i, j, d = neighbor_pairs(atoms, cutoff)
        parts.append((i + offset, j + offset, d))
        frame.append(np.full(len(atoms), k, dtype=np.int64))
        offset += len(atoms)
    if not parts:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0, np.int64))
    i, j, d = (np.concatenate(x) for x in zip(*parts))
    return i, j, d, np.concatenate(frame)
