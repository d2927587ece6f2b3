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


def shortest_distance(atoms) -> tuple[float, int, int]:
    """The shortest interatomic distance (Å) with periodic images, and the two atom indices (0-based)."""
    if len(atoms) < 2:
        return float("inf"), 0, 0
    d = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
    np.fill_diagonal(d, np.inf)
    i, j = np.unravel_index(np.argmin(d), d.shape)
    return float(d[i, j]), int(min(i, j)), int(max(i, j))


def _in_plane(atoms) -> np.ndarray:
    """The two in-plane cell vectors as a [2, 2] array (x, y components), after checking the cell."""
    if not plane_and_normal(atoms):
        raise GeometryError("the third cell vector must be along z and orthogonal to the first two "
                            "(a sheet in the xy plane)")
    return atoms.cell.array[:2, :2].copy()


def _maps_onto_itself(frac: np.ndarray, z: np.ndarray, numbers: np.ndarray, shift: np.ndarray,
                      tol_frac: np.ndarray, tol_z: float) -> bool:
    """True when translating every atom by ``shift`` (fractional, in-plane) lands on an atom of the same
    species at the same height."""
    moved = frac + shift
    for i in range(len(frac)):
        d = moved[i] - frac
        d -= np.round(d)
        hit = (np.abs(d) <= tol_frac).all(axis=1) & (np.abs(z - z[i]) <= tol_z) & (numbers == numbers[i])
        if not hit.any():
            return False
    return True


def _reduce(v1: np.ndarray, v2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lagrange-Gauss reduction of a 2D lattice basis: the two shortest independent vectors."""
    if v1 @ v1 > v2 @ v2:
        v1, v2 = v2, v1
    while True:
        m = np.round((v1 @ v2) / (v1 @ v1))
        v2 = v2 - m * v1
        if v2 @ v2 >= v1 @ v1 - 1e-12:
            return v1, v2
        v1, v2 = v2, v1


def _atoms_in_cell(atoms, cell2: np.ndarray, tol_A: float):
    """The atoms of the periodic structure ``atoms`` that lie in the in-plane cell ``cell2`` ([2, 2])."""
    from ase import Atoms

    inv = np.linalg.inv(cell2)
    frac = (atoms.positions[:, :2] @ inv) % 1.0
    frac[frac > 1.0 - tol_A / np.linalg.norm(cell2, axis=1)] = 0.0  # 0.99999 -> 0
    keep, seen = [], []
    for i, f in enumerate(frac):
        key = np.round(np.append(f, atoms.positions[i, 2]) / (tol_A * 10), 0)
        if not any(np.array_equal(key, s) for s in seen):
            seen.append(key)
            keep.append(i)
    cell = np.zeros((3, 3))
    cell[:2, :2] = cell2
    cell[2] = atoms.cell.array[2]
    positions = np.column_stack([frac[keep] @ cell2, atoms.positions[keep, 2]])
    return Atoms(atoms.numbers[keep], positions=positions, cell=cell, pbc=atoms.pbc)


def primitive_sheet(atoms, *, tol_A: float = 1e-3):
    """The smallest in-plane translation cell of a sheet (the primitive cell of its 2D lattice), with a
    Lagrange-Gauss reduced basis whose first vector is the shortest; z and the species unchanged.

    Method: every in-plane vector from atom 0 to an atom of the same species at the same height is a
    candidate translation; those that map the whole structure onto itself (within ``tol_A``) and the two
    in-plane cell vectors span the lattice, whose reduced basis is the returned cell.
    """
    cell2 = _in_plane(atoms)
    numbers, z = atoms.numbers, atoms.positions[:, 2]
    inv = np.linalg.inv(cell2)
    frac = (atoms.positions[:, :2] @ inv) % 1.0
    tol_frac = tol_A / np.linalg.norm(cell2, axis=1)
    same = np.flatnonzero((numbers == numbers[0]) & (np.abs(z - z[0]) <= tol_A))
    shifts = []
    for j in same[1:]:
        s = (frac[j] - frac[0]) % 1.0
        if _maps_onto_itself(frac, z, numbers, s, tol_frac, tol_A):
            shifts.append(s)
    n_cells = len(shifts) + 1                      # lattice points per given cell
    vectors = [cell2[0], cell2[1]] + [s @ cell2 for s in shifts]
    # every lattice vector of interest is an integer combination of these; search small combinations
    candidates = []
    for v in vectors:
        for a in (-1, 0, 1):
            for b in (-1, 0, 1):
                candidates.append(v + a * cell2[0] + b * cell2[1])
    candidates = [c for c in candidates if c @ c > tol_A ** 2]
    candidates.sort(key=lambda c: (round(float(c @ c), 6), -round(float(c @ cell2[0]), 6)))
    area = abs(np.linalg.det(cell2)) / n_cells
    v1 = candidates[0]
    v2 = next(c for c in candidates[1:] if abs(abs(v1[0] * c[1] - v1[1] * c[0]) - area) < 1e-3 * area)
    v1, v2 = _reduce(v1, v2)
    if v1[0] * v2[1] - v1[1] * v2[0] < 0:
        v2 = -v2
    return _atoms_in_cell(atoms, np.array([v1, v2]), tol_A)


def rectangular_sheet(atoms, *, max_index: int = 12, tol_deg: float = 0.05):
    """The smallest rectangular (orthogonal in-plane) supercell of a sheet's primitive cell, rotated so
    that the shortest lattice vector lies along x and the shortest lattice vector orthogonal to it along
    y (for a honeycomb lattice: zigzag rows along x, the 4-atom cell ``a x a sqrt(3)``).

    Among the shortest lattice vectors the one closest in direction to the structure's first cell vector
    is taken, so the orientation follows the file. Raises :class:`GeometryError` when no orthogonal pair
    with indices up to ``max_index`` exists (an oblique lattice).
    """
    from ase import Atoms

    prim = primitive_sheet(atoms)
    p = prim.cell.array[:2, :2]
    first = _in_plane(atoms)[0]
    ij = np.array([(i, j) for i in range(-max_index, max_index + 1) for j in range(-max_index, max_index + 1)
                   if (i, j) != (0, 0)])
    vecs = ij @ p
    lengths = np.linalg.norm(vecs, axis=1)
    shortest = np.flatnonzero(lengths < lengths.min() * (1 + 1e-6))
    u_idx = shortest[np.argmax(vecs[shortest] @ first / lengths[shortest])]
    u = vecs[u_idx]
    cosine = np.abs(vecs @ u) / (lengths * lengths[u_idx])
    ortho = np.flatnonzero((cosine < np.sin(np.radians(tol_deg))) & (u[0] * vecs[:, 1] - u[1] * vecs[:, 0] > 0))
    if len(ortho) == 0:
        raise GeometryError(f"no rectangular supercell with lattice indices up to {max_index}: the 2D lattice "
                            f"(primitive vectors {np.round(p, 4).tolist()} Å) is oblique")
    w = vecs[ortho[np.argmin(lengths[ortho])]]
    supercell = np.array([u, w])
    # the atoms of the rectangular cell, from a patch of primitive cells large enough to cover it
    n = int(np.ceil(max(np.abs(np.linalg.solve(p.T, supercell.T)).sum(axis=0)))) + 1
    patch = prim.repeat((2 * n + 1, 2 * n + 1, 1))
    patch.positions[:, :2] -= n * (p[0] + p[1])
    rect = _atoms_in_cell(patch, supercell, 1e-3)
    # rotate u onto x
    c, s = u / np.linalg.norm(u)
    rot = np.array([[c, s], [-s, c]])
    xy = rect.positions[:, :2] @ rot.T
    cell = np.diag([np.linalg.norm(u), np.linalg.norm(w), atoms.cell[2, 2]])
    out = Atoms(rect.numbers, positions=np.column_stack([xy, rect.positions[:, 2]]), cell=cell, pbc=atoms.pbc)
    out.wrap(eps=1e-9)
    order = np.lexsort((np.round(out.positions[:, 0], 6), np.round(out.positions[:, 1], 6)))
    return out[order]


def repeats_for(atoms, min_length_A: float) -> tuple[int, int]:
    """(nx, ny): the fewest repeats of a rectangular sheet that make both in-plane lengths >= ``min_length_A``."""
    lx, ly = atoms.cell[0, 0], atoms.cell[1, 1]
    return (max(1, int(np.ceil(min_length_A / lx - 1e-9))), max(1, int(np.ceil(min_length_A / ly - 1e-9))))


def match_periods(length_a: float, length_b: float, *, tolerance: float = 0.04, max_cells: int = 12,
                  names: tuple[str, str] = ("A", "B")) -> tuple[int, int, float]:
    """The smallest ``(n_a, n_b)`` with ``n_b length_b`` within ``tolerance`` (relative) of ``n_a length_a``,
    and the strain ``n_a length_a / (n_b length_b) - 1`` that makes phase B fit phase A's period.

    Smallest: the shortest common period ``n_a length_a``; for equal periods the smaller mismatch.
    Raises :class:`GeometryError` naming both phases, the best match with up to ``max_cells`` cells of
    each and the tolerance.
    """
    best = None
    for n_a in range(1, max_cells + 1):
        n_b = max(1, int(round(n_a * length_a / length_b)))
        strain = n_a * length_a / (n_b * length_b) - 1.0
        if best is None or abs(strain) < abs(best[2]):
            best = (n_a, n_b, strain)
        if abs(strain) <= tolerance:
            return n_a, n_b, float(strain)
    raise GeometryError(f"phases {names[0]} and {names[1]}: no common period along the interface within "
                        f"{100 * tolerance:g} % with up to {max_cells} cells (periods {length_a:.4f} and "
                        f"{length_b:.4f} Å; best: {best[0]} x {names[0]} : {best[1]} x {names[1]}, mismatch "
                        f"{100 * best[2]:+.2f} %); raise the tolerance or give the interface as a file")


def edge_gap(a, b) -> float:
    """Default distance (Å) between the facing atom rows of two phases: the sum of the mean covalent
    radii (Cordero et al., Dalton Trans. 2008, 2832, as tabulated by ASE) of A's top row and B's bottom
    row (rows: atoms within 0.3 Å of the extreme y)."""
    from ase.data import covalent_radii

    def row_radius(atoms, top: bool):
        y = atoms.positions[:, 1]
        edge = y.max() if top else y.min()
        return float(np.mean(covalent_radii[atoms.numbers[np.abs(y - edge) < 0.3]]))

    return row_radius(a, True) + row_radius(b, False)


def lateral_interface(a, b, *, cells_y: tuple[int, int] = (1, 1), tolerance: float = 0.04, gap_A: float | None = None,
                      repeat_x: int = 1, names: tuple[str, str] = ("A", "B")):
    """A periodic cell of two phases side by side in the plane, with two lateral interfaces along x.

    ``a``, ``b``: rectangular sheets (:func:`rectangular_sheet`). Their periods along x are matched by
    :func:`match_periods` (``n_a`` cells of A, ``n_b`` of B); A keeps its lattice and B is strained along
    x to A's period (phase B is the one strained, by ``strain``). A occupies the lower part of the cell in
    y with ``cells_y[0]`` cells, B the upper part with ``cells_y[1]`` cells, their facing atom rows
    ``gap_A`` apart at both interfaces (default :func:`edge_gap`); both sheets share A's mean height and
    A's z length; the whole cell is repeated ``repeat_x`` times along x. Positions as built (unrelaxed).

    Returns ``(atoms, info)``; ``info``: ``cells_x`` [n_a, n_b], ``cells_y``, ``strained`` (name of B),
    ``strain`` (relative, of B along x), ``gap_A``, ``period_x_A`` (the matched period), ``period_nm`` (the cell's y length), ``length_nm`` (x),
    ``fraction_B`` (area fraction of B, interfaces in the middle of the gaps), ``n_atoms``, ``between``;
    ``atoms.arrays["phase"]`` is 0 for A's atoms and 1 for B's.
    """
    from ase import Atoms

    for atoms, name in ((a, names[0]), (b, names[1])):
        cell = atoms.cell.array
        if abs(cell[0, 1]) + abs(cell[1, 0]) > 1e-6 or not is_sheet(atoms):
            raise GeometryError(f"phase {name}: needs a rectangular sheet cell (common.sheets.rectangular_sheet)")
    n_a, n_b, strain = match_periods(a.cell[0, 0], b.cell[0, 0], tolerance=tolerance, names=names)
    lower = a.repeat((n_a, int(cells_y[0]), 1))
    upper = b.repeat((n_b, int(cells_y[1]), 1))
    upper.positions[:, 0] *= 1.0 + strain
    gap = edge_gap(lower, upper) if gap_A is None else float(gap_A)
    upper.positions[:, 1] += lower.positions[:, 1].max() + gap - upper.positions[:, 1].min()
    upper.positions[:, 2] += lower.positions[:, 2].mean() - upper.positions[:, 2].mean()
    ly = upper.positions[:, 1].max() + gap - lower.positions[:, 1].min()
    lx = n_a * a.cell[0, 0]
    y_b = upper.positions[:, 1]
    cell = np.diag([lx, ly, a.cell[2, 2]])
    atoms = Atoms(np.concatenate([lower.numbers, upper.numbers]), positions=np.vstack([lower.positions, upper.positions]),
                  cell=cell, pbc=a.pbc)
    atoms.arrays["phase"] = np.repeat([0, 1], [len(lower), len(upper)])
    atoms = atoms.repeat((int(repeat_x), 1, 1))
    info = {"between": list(names), "cells_x": [n_a, n_b], "cells_y": [int(c) for c in cells_y],
            "strained": names[1], "strain": float(strain), "gap_A": gap, "period_x_A": float(lx),
            "period_nm": float(ly) / 10.0, "length_nm": float(lx * int(repeat_x)) / 10.0, "fraction_B": float((y_b.max() - y_b.min() + gap) / ly),
            "n_atoms": len(atoms)}
    return atoms, info
