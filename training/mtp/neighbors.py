"""Pair lists for ``MTP.evaluate``: ASE Atoms -> full pair list (i, j, d), and pair gradients -> forces.

* :func:`neighbor_pairs`: the CPU neighbour list of one structure: the compiled cell list of
  :mod:`training.mtp.cell_list`, or without a compiler :func:`array_neighbor_pairs` (small cells, the
  usual fitting and AIMD cells, which need many periodic images: a brute-force search over all atom
  pairs and image shifts in one array expression; larger ones: ``ase.neighborlist.neighbor_list``).
  All give the same pairs.  The MD engine keeps its own Verlet lists (``md_gpu.neighbors``, on the
  CPU the same compiled cell list); this one serves the calculator, ``calc-efs`` and fitting.
* :func:`batched_pairs`, :class:`PairBatch`: one pair list for many structures (evaluation, fitting).
* :class:`PairCache`, :data:`PAIRS`: pair lists remembered by the content of the structure (passive
  training grades and predicts the same frames many times).
* :func:`forces_and_virial`: forces and virials from dE/dd per pair (also md_gpu's, on NumPy), compiled
  (:mod:`training.mtp.pair_scatter`) when it loads; :func:`array_forces_and_virial` is the array code.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from ase import Atoms
from ase.neighborlist import neighbor_list

from common.arrays import array_module

from .cell_list import cell_list_pairs
from .pair_scatter import compiled_forces_and_virial


def neighbor_pairs(atoms: Atoms, cutoff: float):
    """Full neighbour list of ``atoms`` within ``cutoff`` (Å).

    Returns i [p] int64, j [p] int64, d [p, 3] float64 with d = r_j + image shift - r_i (Å); every pair
    appears as i->j and j->i; periodic images of an atom itself are included as pairs (i, i).  The
    compiled cell list (:mod:`training.mtp.cell_list`, pairs sorted by i) when it loads, else
    :func:`array_neighbor_pairs` (the same pairs in another order).
    """
    compiled = cell_list_pairs(atoms.positions, atoms.cell.array, atoms.pbc, float(cutoff), images=False)
    if compiled is None:
        return array_neighbor_pairs(atoms, cutoff)
    i, j, _, d = compiled
    return i, j, d


def array_neighbor_pairs(atoms: Atoms, cutoff: float):
    """:func:`neighbor_pairs` without compiled code: brute force over all atom pairs and image shifts in
    one array expression for small cells, ``ase.neighborlist.neighbor_list("ijD")`` for larger ones."""
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


#: The pair list of everything that decides a fitted potential (the fit's PairBatch, and PAIRS: grading,
#: passive selection): the array list, whose pair order does not depend on whether the compiled list
#: loads on this machine. A fit is a non-convex optimisation whose result moves with the round-off of
#: its sums: the pair order alone took a cubic level-10 fit of MLIP-2's Cu set from 0.61x to 1.13x
#: MLIP-2's force RMSE (tests/test_fit_mlip.py), so the potential a case gets must not depend on the
#: machine's compiler. The lists are built once per frame (and cached), a small part of a fit.
FIT_PAIRS = array_neighbor_pairs


class PairCache:
    """:func:`array_neighbor_pairs` (FIT_PAIRS) remembered by content: a structure with the same positions, cell and pbc
    (bytes compared through a SHA-256 digest) and the same cut-off gets the same arrays back. At most
    ``max_pairs`` pairs are kept (about 40 bytes each); past that the cache starts empty again."""

    def __init__(self, max_pairs: int = 2_000_000):
        self.max_pairs = int(max_pairs)
        self._store: dict = {}
        self._pairs = 0

    def __call__(self, atoms: Atoms, cutoff: float):
        h = hashlib.sha256()
        for a in (atoms.positions, atoms.cell.array, atoms.pbc):
            h.update(np.ascontiguousarray(a).tobytes())
        key = (h.hexdigest(), float(cutoff))
        hit = self._store.get(key)
        if hit is not None:
            return hit
        pairs = FIT_PAIRS(atoms, cutoff)
        if self._pairs + len(pairs[0]) > self.max_pairs:
            self._store.clear()
            self._pairs = 0
        self._store[key] = pairs
        self._pairs += len(pairs[0])
        return pairs


#: the pair lists shared by grading, passive selection and the fit report within one process
PAIRS = PairCache()


def batched_pairs(frames, cutoff: float, *, pairs=neighbor_pairs):
    """One pair list for many structures, so that one ``MTP.evaluate`` call handles them all.

    ``pairs(atoms, cutoff)`` gives each structure's list (:func:`neighbor_pairs`, or :data:`PAIRS` to
    reuse lists already built). Returns i [p], j [p], d [p, 3] (Å) with atom indices offset frame by
    frame, and ``frame`` [n_total] (the frame index of each atom; per-frame sums:
    ``numpy.bincount(frame, weights=...)``).
    """
    parts, offset, frame = [], 0, []
    for k, atoms in enumerate(frames):
        i, j, d = pairs(atoms, cutoff)
        parts.append((i + offset, j + offset, d))
        frame.append(np.full(len(atoms), k, dtype=np.int64))
        offset += len(atoms)
    if not parts:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0, np.int64))
    i, j, d = (np.concatenate(x) for x in zip(*parts))
    return i, j, d, np.concatenate(frame)


@dataclass
class PairBatch:
    """Concatenated pair lists of F frames with N atoms in all and p pairs, sorted by centre atom.

    ``types`` [N] int; ``atom_frame`` [N] int; ``n_atoms`` [F]; ``volume`` [F] (Å³, 0 without a full cell);
    ``i``, ``j`` [p] global atom indices (centre, neighbour); ``d`` [p, 3] (Å) = r_j + shift − r_i;
    ``pair_type`` [p] = t_i*S + t_j; ``pair_frame`` [p]; ``slot`` [p] position of each pair among the
    pairs of its centre atom (0 .. ``k_max``−1); ``center`` CSR [N, p] (1 at (i_p, p));
    ``disp`` CSR [N, p] (+1 at (j_p, p), −1 at (i_p, p)); ``frame_pairs`` CSR [F, p];
    ``atom_to_frame`` CSR [F, N].
    """

    types: np.ndarray
    atom_frame: np.ndarray
    n_atoms: np.ndarray
    volume: np.ndarray
    i: np.ndarray
    j: np.ndarray
    d: np.ndarray
    pair_type: np.ndarray
    pair_frame: np.ndarray
    slot: np.ndarray
    k_max: int
    center: sp.csr_matrix
    disp: sp.csr_matrix
    frame_pairs: sp.csr_matrix
    atom_to_frame: sp.csr_matrix

    @classmethod
    def build(cls, frames, types_list, *, cutoff: float, species_count: int) -> "PairBatch":
        """Pairs within ``cutoff`` (Å) of every frame (:func:`array_neighbor_pairs`, see FIT_PAIRS), concatenated."""
        ti, tj, td, tt, taf, tpf, nat, vol = [], [], [], [], [], [], [], []
        offset = 0
        for f, (atoms, types) in enumerate(zip(frames, types_list)):
            i, j, d = FIT_PAIRS(atoms, cutoff)
            order = np.argsort(i, kind="stable")
            i, j, d = i[order], j[order], d[order]
            n = len(atoms)
            ti.append(i + offset), tj.append(j + offset), td.append(d.reshape(-1, 3))
            tt.append(np.asarray(types, dtype=np.int64)), taf.append(np.full(n, f)), tpf.append(np.full(i.size, f))
            nat.append(n)
            vol.append(abs(atoms.get_volume()) if atoms.cell.rank == 3 else 0.0)
            offset += n
        i, j = np.concatenate(ti), np.concatenate(tj)
        types = np.concatenate(tt)
        pair_frame, atom_frame = np.concatenate(tpf), np.concatenate(taf)
        p, n_all, n_f = i.size, offset, len(nat)
        counts = np.bincount(i, minlength=n_all)
        slot = np.arange(p) - (np.cumsum(counts) - counts)[i]
        cols, ones = np.arange(p), np.ones(p)
        center = sp.csr_matrix((ones, (i, cols)), shape=(n_all, p))
        disp = (sp.csr_matrix((ones, (j, cols)), shape=(n_all, p)) - center).tocsr()
        return cls(types=types, atom_frame=atom_frame, n_atoms=np.asarray(nat),
                   volume=np.asarray(vol, dtype=float), i=i, j=j, d=np.concatenate(td).astype(float),
                   pair_type=types[i] * species_count + types[j], pair_frame=pair_frame, slot=slot,
                   k_max=max(int(counts.max(initial=0)), 1), center=center, disp=disp,
                   frame_pairs=sp.csr_matrix((ones, (pair_frame, cols)), shape=(n_f, p)),
                   atom_to_frame=sp.csr_matrix((np.ones(n_all), (atom_frame, np.arange(n_all))),
                                               shape=(n_f, n_all)))

    @property
    def n_frames(self) -> int:
        return int(self.n_atoms.size)

    @property
    def n_pairs(self) -> int:
        return int(self.i.size)


def forces_and_virial(i, j, d, de_dd, n_atoms: int, xp=None, *, per_atom: bool = True):
    """Forces, virial and per-atom virials from the pair gradients of ``MTP.evaluate``: the contract of
    :func:`array_forces_and_virial`; on NumPy one compiled pass over the pairs when it loads."""
    xp = array_module(d) if xp is None else xp
    if xp is np:
        compiled = compiled_forces_and_virial(i, j, d, de_dd, n_atoms, per_atom=per_atom)
        if compiled is not None:
            return compiled
    return array_forces_and_virial(i, j, d, de_dd, n_atoms, xp, per_atom=per_atom)


def array_forces_and_virial(i, j, d, de_dd, n_atoms: int, xp=None, *, per_atom: bool = True):
    """Forces, virial and per-atom virials from the pair gradients of ``MTP.evaluate`` (array code).

    Parameters: i, j [p] (centre, neighbour); d [p, 3] Å (r_j + shift - r_i); de_dd [p, 3] eV/Å;
    n_atoms; xp numpy or cupy (default: the module of ``d``); per_atom: also the per-atom virials.
    Returns
    -------
    forces : [n, 3] eV/Å      F_a = -dE/dr_a  (d_p = r_j - r_i, so F_i += dE/dd_p, F_j -= dE/dd_p).
    virial : [3, 3] eV        W = -Σ_p d_p ⊗ dE/dd_p.  MLIP's PlusStress is W in Voigt order and ASE's
                              stress is -W / V (W is symmetric for a rotation-invariant energy).
    per_atom_virial : [n, 3, 3] eV, or None without ``per_atom``:  W_a = -Σ_{p: j_p = a} d_p ⊗ dE/dd_p,
                              the many-body per-atom virial of Fan et al., Phys. Rev. B 92, 094301 (2015)
                              (right for heat currents); Σ_a W_a = W.
    """
    xp = array_module(d) if xp is None else xp
    forces = xp.zeros((n_atoms, 3))
    outer = -d[:, :, None] * de_dd[:, None, :]  # [p, 3, 3]
    for c in range(3):
        forces[:, c] = xp.bincount(i, weights=de_dd[:, c], minlength=n_atoms) - xp.bincount(
            j, weights=de_dd[:, c], minlength=n_atoms)
    if not per_atom:
        return forces, outer.sum(axis=0), None
    per_atom_virial = xp.zeros((n_atoms, 9))
    flat = outer.reshape(-1, 9)
    for c in range(9):
        per_atom_virial[:, c] = xp.bincount(j, weights=flat[:, c], minlength=n_atoms)
    return forces, outer.sum(axis=0), per_atom_virial.reshape(n_atoms, 3, 3)
