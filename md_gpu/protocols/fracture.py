"""Failure detection of the tensile test (:func:`md_gpu.protocols.tensile`, its rule 3): is there a crack
across the cell, and where did the sample yield?

* :func:`spans_axis`: does the bond network wrap around the periodic axis of the load (a crack at any
  angle leaves pieces that do not)?
* :func:`crossing_bonds` / :func:`fractured`: bonds crossing planes normal to the load; a crack bridged by
  a chain of atoms leaves some plane with at most a quarter of the starting structure's weakest plane.
* :func:`first_shell_cutoff_of`: the bond cutoff (Å) these use, the first-shell cutoff of the starting
  structure (graphene 1.42 | 1.94 Å, fcc Cu 2.55 | 3.08 Å: the gap between shells absorbs the stretch
  of intact bonds).
* :func:`yield_point`: strain and stress of the peak before the first sustained drop that is not the
  fracture (:func:`md_gpu.analysis.sustained_drop`).

Structures are ``ase.Atoms``; strains dimensionless; stresses in the curve's unit (N/m or GPa).
"""
from __future__ import annotations

import numpy as np

from ..analysis import sustained_drop
from ..cell_control import axis_index
from ..errors import MDSetupError
from ..state import State, to_atoms

YIELD_NOISE_SIGMAS = 4.0  # a yield drop must also exceed this many standard errors of the smoothed stress


def spans_axis(atoms, axis, cutoff_A: float) -> bool:
    """Does the network of bonds shorter than ``cutoff_A`` (Å) wrap around the periodic ``axis``?

    A breadth-first walk gives each atom its periodic image along ``axis``; reaching an atom again
    in another image means a chain of bonds runs through the cell and joins itself: the structure
    carries load along ``axis``. A crack across the whole cross-section (at any angle) leaves only
    pieces that do not wrap. Slip, vacancies and voids keep the network wrapping."""
    from ase.neighborlist import neighbor_list

    k = axis_index(axis)
    i, j, shifts = neighbor_list("ijS", atoms, cutoff_A)
    n = len(atoms)
    order = np.argsort(i, kind="stable")
    i, j, s = i[order], j[order], shifts[order, k]
    starts = np.searchsorted(i, np.arange(n + 1))
    image = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    for root in range(n):
        if image[root] != np.iinfo(np.int64).min:
            continue
        image[root] = 0
        stack = [root]
        while stack:
            u = stack.pop()
            for e in range(starts[u], starts[u + 1]):
                v, want = j[e], image[u] + s[e]
                if image[v] == np.iinfo(np.int64).min:
                    image[v] = want
                    stack.append(v)
                elif image[v] != want:
                    return True
    return False


def crossing_bonds(atoms, axis, cutoff_A: float, *, n_planes: int = 64) -> np.ndarray:
    """Bonds (shorter than ``cutoff_A``, Å) that cross each of ``n_planes`` planes normal to ``axis``
    at fractional coordinates ``k / n_planes`` [n_planes] (int)."""
    from ase.neighborlist import neighbor_list

    k = axis_index(axis)
    i, j, d = neighbor_list("ijD", atoms, cutoff_A)
    keep = i < j
    length = float(atoms.cell[k, k])
    start = atoms.get_scaled_positions(wrap=True)[i[keep], k]
    end = start + d[keep, k] / length
    lo, hi = np.minimum(start, end), np.maximum(start, end)
    planes = np.arange(n_planes) / n_planes
    # planes p + m (m integer) in (lo, hi]: floor(hi - p) - floor(lo - p)
    return (np.floor(hi[None, :] - planes[:, None]) - np.floor(lo[None, :] - planes[:, None])).sum(axis=1).astype(int)


def fractured(atoms, axis, cutoff_A: float, reference_min: int, *, fraction: float = 0.25) -> bool:
    """A crack across the whole cross-section: the bond network no longer wraps around ``axis``
    (:func:`spans_axis`, any crack angle), or some plane normal to ``axis`` is crossed by at most
    ``fraction`` of the bonds that cross the weakest plane of the starting structure
    (``reference_min``, :func:`crossing_bonds`): a crack bridged only by a chain of atoms or a
    few stretched bonds carries next to nothing."""
    if not spans_axis(atoms, axis, cutoff_A):
        return True
    return bool(crossing_bonds(atoms, axis, cutoff_A).min() <= fraction * reference_min)


def first_shell_cutoff_of(atoms_or_state, state: State):
    """(first-shell cutoff in Å, the ase.Atoms it was taken from): the starting structure's
    (:func:`md_gpu.protocols.stability.first_shell_cutoff`), the prepared state's if that fails."""
    from .stability import first_shell_cutoff

    reference = to_atoms(atoms_or_state) if isinstance(atoms_or_state, State) else atoms_or_state
    try:
        return first_shell_cutoff(reference), reference
    except MDSetupError:
        reference = to_atoms(state)
        return first_shell_cutoff(reference), reference


def yield_point(strain, stress, fracture_strain: float, window_strain: float, drop: float, min_strain: float,
                yielded: bool = False):
    """(strain, stress) of the peak before the first sustained drop of ``drop`` that is not the
    failure (:func:`md_gpu.analysis.sustained_drop`); (NaN, NaN) without one.

    ``fracture_strain``: where the run failed (the drop of a fracture, or where a collapse ended the curve;
    NaN when it did not). The first drop is the failure itself when the run failed, no pause found the
    structure intact (``yielded`` False) and the drop comes within two drop windows of the failure."""
    strain = np.asarray(strain, dtype=float)
    stress = np.asarray(stress, dtype=float)
    hit = sustained_drop(strain, stress, window_strain=window_strain, drop=drop, min_strain=min_strain,
                         noise_sigmas=YIELD_NOISE_SIGMAS)
    if hit is None:
        return float("nan"), float("nan")
    peak = int(np.argmax(stress[: hit + 1]))
    if np.isfinite(fracture_strain) and not yielded and strain[hit] > fracture_strain - 2 * window_strain:
        return float("nan"), float("nan")  # the first drop is the fracture itself
    return float(strain[peak]), float(stress[peak])
