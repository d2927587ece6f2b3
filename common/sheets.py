"""Geometry of 2D sheets: vacuum detection, shortest distances, primitive and rectangular cells,
repeats, and lateral interfaces between two phases.

Every function takes and returns :class:`ase.Atoms`; lengths in Å. A *sheet* is a cell periodic in
x and y whose atoms leave more than ``SHEET_GAP_A`` of vacuum along z (the third cell vector along z,
orthogonal to the plane); :func:`as_sheet` makes such a cell open along z
(``pbc = (True, True, False)``) so that neighbour lists, barostats and the stress conversion treat it
as 2D.
"""
from __future__ import annotations

import numpy as np

SHEET_GAP_A = 8.0


class GeometryError(ValueError):
    """A structure that the sheet geometry cannot handle; the message says what and why."""


def plane_and_normal(atoms) -> bool:
    """True when the third cell vector is along z and orthogonal to the first two."""
    cell = atoms.cell.array
    return abs(cell[2, 0]) + abs(cell[2, 1]) <= 1e-9 and abs(cell[0, 2]) + abs(cell[1, 2]) <= 1e-9


def vacuum_gap(atoms) -> float:
    """Vacuum (Å) the atoms leave along z: the cell's z length minus the z extent of the atoms
    (``inf`` when z is not periodic, 0 when the third cell vector is not along z)."""
    if not atoms.pbc[2]:
        return float("inf")
    if not plane_and_normal(atoms):
        return 0.0
    z = atoms.positions[:, 2]
    return float(atoms.cell[2, 2] - (z.max() - z.min()))


def is_sheet(atoms, *, min_gap_A: float = SHEET_GAP_A) -> bool:
    """True for a 2D sheet: periodic in x and y, and more than ``min_gap_A`` (Å) of vacuum along z
    (or z not periodic)."""
    return bool(atoms.pbc[0] and atoms.pbc[1]) and vacuum_gap(atoms) > min_gap_A


def as_sheet(atoms, *, min_gap_A: float = SHEET_GAP_A):
    """``atoms`` with z made non-periodic when the atoms leave more than ``min_gap_A`` (Å) of vacuum along z."""
    if atoms.pbc[2] and plane_and_normal(atoms) and vacuum_gap(atoms) > min_gap_A:
        atoms = atoms.copy()
        atoms.pbc = (atoms.pbc[0], atoms.pbc[1], False)
    return atoms
