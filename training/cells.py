"""The systems' 0 K cells: from ``case.yaml``'s structure files or builders to the cells every stage reads.

Data flow::

    systems.<name>.structure (a file relative to the case folder, or a built-in builder;
                              read and checked by training.systems.read_structure)
      phase:      -> rectangular unit cell (common.sheets.rectangular_sheet: shortest lattice vector
                     along x) -> repeated to at least ``min_length_A`` in x and y (:func:`phase_cell`);
                     a cell that is already rectangular and long enough is kept as given
      interface:  a file or builder: kept as given, repeated to ``min_length_A``;
                  no structure and ``between: [A, B]``: generated from the two phases' cells
                  (:func:`interface_cell`: common.sheets.lateral_interface, B strained to A's period)
      -> the data stage relaxes them with the reference engine when it generates data
         (training.aimd.generate) and writes runs/data/<name>.structure.extxyz

``min_length_A`` is twice the MTP cut-off (the Gamma-point reference engines and the MTP's
neighbourhoods need cells at least that long). Lengths in Å.
"""
from __future__ import annotations

import numpy as np
from ase import Atoms

from common.sheets import GeometryError, lateral_interface, rectangular_sheet, repeats_for

MIN_LENGTH_A = 10.0


def _is_rectangular(atoms: Atoms) -> bool:
    cell = atoms.cell.array
    return abs(cell[0, 1]) + abs(cell[1, 0]) + abs(cell[0, 2]) + abs(cell[1, 2]) + abs(cell[2, 0]) + abs(cell[2, 1]) < 1e-8


def phase_cell(atoms: Atoms, *, min_length_A: float = MIN_LENGTH_A) -> tuple[Atoms, dict]:
    """The phase's rectangular cell, repeated to at least ``min_length_A`` (Å) in x and y, and a record
    ``{"rectangularised": bool, "repeat": [nx, ny], "n_atoms": int, "cell_A": [lx, ly, lz]}``."""
    rectangularised = not _is_rectangular(atoms)
    if rectangularised:
        atoms = rectangular_sheet(atoms)
    reps = repeats_for(atoms, min_length_A)
    if reps != (1, 1):
        atoms = atoms.repeat((*reps, 1))
    atoms.pbc = True  # the reference engines want a periodic cell; md_gpu opens z again (as_sheet)
    return atoms, {"rectangularised": rectangularised, "repeat": list(reps), "n_atoms": len(atoms),
                   "cell_A": atoms.cell.lengths().tolist()}


def interface_cell(a: Atoms, b: Atoms, *, names: tuple[str, str], tolerance: float = 0.04,
                   min_length_A: float = MIN_LENGTH_A) -> tuple[Atoms, dict]:
    """A lateral interface cell of phases ``a`` and ``b`` (their cells, any supercell of them): each
    stripe at least ``min_length_A / 2`` wide, the matched period repeated to at least ``min_length_A``
    along the interfaces (x). Returns the cell and :func:`common.sheets.lateral_interface`'s record.
    Raises :class:`common.sheets.GeometryError` for phases whose periods do not match within
    ``tolerance``."""
    units = [rectangular_sheet(x) for x in (a, b)]
    cells_y = tuple(int(np.ceil(0.5 * min_length_A / u.cell[1, 1] - 1e-9)) for u in units)
    atoms, info = lateral_interface(units[0], units[1], cells_y=cells_y, tolerance=tolerance, names=names,
                                    min_length_A=min_length_A)
    del atoms.arrays["phase"]
    atoms.pbc = True
    return atoms, info


__all__ = ["GeometryError", "MIN_LENGTH_A", "interface_cell", "phase_cell"]
