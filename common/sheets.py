"""Geometry of 2D sheets: vacuum detection, primitive and rectangular cells,
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


def _in_plane(atoms) -> np.ndarray:
    """The two in-plane cell vectors as a [2, 2] array (x, y components), after checking the cell."""
    if not plane_and_normal(atoms):
        raise GeometryError("the third cell vector must be along z and orthogonal to the first two "
                            "(a sheet in the xy plane)")
    return atoms.cell.array[:2, :2].copy()


def _maps_onto_itself(frac: np.ndarray, z: np.ndarray, numbers: np.ndarray, shift: np.ndarray,
                      cell2: np.ndarray, tol_A: float) -> bool:
    """True when translating every atom by ``shift`` (fractional, in-plane) lands within ``tol_A`` (Å, in
    the plane with periodic images, and in height) on an atom of the same species."""
    moved = frac + shift
    for i in range(len(frac)):
        d = moved[i] - frac
        d -= np.round(d)
        near = np.linalg.norm(d @ cell2, axis=1) <= tol_A
        if not (near & (np.abs(z - z[i]) <= tol_A) & (numbers == numbers[i])).any():
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
    """The atoms of the periodic structure ``atoms`` folded into the in-plane cell ``cell2`` ([2, 2]).

    Images of one site (same species, within ``tol_A`` in the plane, periodic images included, and in
    height) are merged into one atom at their mean position, so a relaxed supercell whose copies of a
    site differ by a few hundredths of an Å gives its averaged unit cell."""
    from ase import Atoms

    frac = atoms.positions[:, :2] @ np.linalg.inv(cell2)
    frac -= np.floor(frac)
    sites: list[dict] = []
    for f, z, number in zip(frac, atoms.positions[:, 2], atoms.numbers):
        for site in sites:
            d = f - site["frac"][0]
            d -= np.round(d)
            if site["number"] == number and abs(z - site["z"][0]) <= tol_A and np.linalg.norm(d @ cell2) <= tol_A:
                site["frac"].append(site["frac"][0] + d)
                site["z"].append(z)
                break
        else:
            sites.append({"number": number, "frac": [f], "z": [z]})
    mean_frac = np.array([np.mean(site["frac"], axis=0) for site in sites]) % 1.0
    cell = np.zeros((3, 3))
    cell[:2, :2] = cell2
    cell[2] = atoms.cell.array[2]
    positions = np.column_stack([mean_frac @ cell2, [np.mean(site["z"]) for site in sites]])
    return Atoms([site["number"] for site in sites], positions=positions, cell=cell, pbc=atoms.pbc)


def primitive_sheet(atoms, *, tol_A: float = 0.15):
    """The smallest in-plane translation cell of a sheet (the primitive cell of its 2D lattice), with a
    Lagrange-Gauss reduced basis whose first vector is the shortest; z and the species unchanged.

    Method: every in-plane vector from atom 0 to an atom of the same species at the same height is a
    candidate translation; those that map the whole structure onto itself within ``tol_A`` (Å; a cell
    relaxed by an engine repeats itself only to a few hundredths of an Å) are the ``n - 1`` lattice
    points inside the given cell. Their fractional coordinates are multiples of ``1/n`` (the index of a
    sublattice divides every element's order) and are snapped to them; with the two cell vectors they
    span the lattice, whose reduced basis is the returned cell. Copies of a site are averaged.
    """
    cell2 = _in_plane(atoms)
    numbers, z = atoms.numbers, atoms.positions[:, 2]
    frac = (atoms.positions[:, :2] @ np.linalg.inv(cell2)) % 1.0
    same = np.flatnonzero((numbers == numbers[0]) & (np.abs(z - z[0]) <= tol_A))
    shifts = [(frac[j] - frac[0]) % 1.0 for j in same[1:]]
    shifts = [s for s in shifts if _maps_onto_itself(frac, z, numbers, s, cell2, tol_A)]
    n_cells = len(shifts) + 1                      # lattice points per given cell
    if len(atoms) % n_cells:
        raise GeometryError(f"{len(atoms)} atoms do not divide into {n_cells} translation cells within "
                            f"{tol_A} Å; the structure is not periodic enough to reduce")
    shifts = [(np.round(s * n_cells) / n_cells) % 1.0 for s in shifts]
    vectors = [cell2[0], cell2[1]] + [s @ cell2 for s in shifts]
    candidates = []
    for v in vectors:
        for a in (-1, 0, 1):
            for b in (-1, 0, 1):
                candidates.append(v + a * cell2[0] + b * cell2[1])
    candidates = [c for c in candidates if c @ c > tol_A ** 2]
    candidates.sort(key=lambda c: (round(float(c @ c), 6), -round(float(c @ cell2[0]), 6)))
    area = abs(np.linalg.det(cell2)) / n_cells
    v1 = candidates[0]
    v2 = next(c for c in candidates[1:] if abs(abs(v1[0] * c[1] - v1[1] * c[0]) - area) < 1e-6 * area)
    v1, v2 = _reduce(v1, v2)
    if v1[0] * v2[1] - v1[1] * v2[0] < 0:
        v2 = -v2
    unit = _atoms_in_cell(atoms, np.array([v1, v2]), tol_A)
    if len(unit) * n_cells != len(atoms):
        raise GeometryError(f"the {n_cells} copies of the primitive cell do not hold the same atoms within "
                            f"{tol_A} Å ({len(unit)} sites for {len(atoms)} atoms)")
    return unit


def rectangular_sheet(atoms, *, max_index: int = 12, tol_deg: float = 1.0, tie: float = 0.02):
    """The smallest rectangular (orthogonal in-plane) supercell of a sheet's primitive cell, rotated so
    that the shortest lattice vector lies along x and the shortest lattice vector orthogonal to it along
    y (for a honeycomb lattice: zigzag rows along x, the 4-atom cell ``a x a sqrt(3)``).

    Among the shortest lattice vectors (within ``tie``, relative: a relaxed hexagonal cell is slightly
    anisotropic) the one closest in direction to the structure's first cell vector is taken, so the
    orientation follows the file; orthogonal means within ``tol_deg``, and the cell is made exactly
    rectangular through the atoms' fractional coordinates. Raises :class:`GeometryError` when no
    orthogonal pair with indices up to ``max_index`` exists (an oblique lattice).
    """
    from ase import Atoms

    prim = primitive_sheet(atoms)
    p = prim.cell.array[:2, :2]
    first = _in_plane(atoms)[0]
    ij = np.array([(i, j) for i in range(-max_index, max_index + 1) for j in range(-max_index, max_index + 1)
                   if (i, j) != (0, 0)])
    vecs = ij @ p
    lengths = np.linalg.norm(vecs, axis=1)
    shortest = np.flatnonzero(lengths < lengths.min() * (1 + tie))
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
    # u along x, w along y: the fractional coordinates in (u, w) on the rectangle |u| x |w|
    cell = np.diag([np.linalg.norm(u), np.linalg.norm(w), atoms.cell[2, 2]])
    frac = (rect.positions[:, :2] @ np.linalg.inv(supercell)) % 1.0
    frac[frac > 1.0 - 0.01 / np.array([np.linalg.norm(u), np.linalg.norm(w)])] -= 1.0  # a site 0.01 Å below 1 is at 0
    xy = frac @ cell[:2, :2]
    out = Atoms(rect.numbers, positions=np.column_stack([xy, rect.positions[:, 2]]), cell=cell, pbc=atoms.pbc)
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
                      repeat_x: int = 1, min_length_A: float = 0.0, names: tuple[str, str] = ("A", "B")):
    """A periodic cell of two phases side by side in the plane, with two lateral interfaces along x.

    ``a``, ``b``: rectangular sheets (:func:`rectangular_sheet`). Their periods along x are matched by
    :func:`match_periods` (``n_a`` cells of A, ``n_b`` of B); A keeps its lattice and B is strained along
    x to A's period (phase B is the one strained, by ``strain``). A occupies the lower part of the cell in
    y with ``cells_y[0]`` cells, B the upper part with ``cells_y[1]`` cells, their facing atom rows
    ``gap_A`` apart at both interfaces (default :func:`edge_gap`); both sheets share A's mean height and
    A's z length. Along x the matched period is repeated to at least ``min_length_A`` (Å; e.g. twice the
    potential's cut-off), and that cell ``repeat_x`` times. Positions as built (unrelaxed).

    Returns ``(atoms, info)``; ``info``: ``cells_x`` [n_a, n_b], ``cells_y``, ``strained`` (name of B),
    ``strain`` (relative, of B along x), ``gap_A``, ``period_x_A`` (the matched period), ``period_nm`` (the cell's y length), ``length_nm`` (x),
    ``fraction_B`` (area fraction of B, interfaces in the middle of the gaps), ``n_atoms``, ``between``,
    ``repeat_x`` (the matched periods along x);
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
    repeat_x = int(np.ceil(min_length_A / lx - 1e-9)) * int(repeat_x) if min_length_A > lx else int(repeat_x)
    atoms = atoms.repeat((repeat_x, 1, 1))
    info = {"between": list(names), "cells_x": [n_a, n_b], "cells_y": [int(c) for c in cells_y],
            "strained": names[1], "strain": float(strain), "gap_A": gap, "period_x_A": float(lx),
            "period_nm": float(ly) / 10.0, "length_nm": float(lx * repeat_x) / 10.0, "fraction_B": float((y_b.max() - y_b.min() + gap) / ly),
            "n_atoms": len(atoms), "repeat_x": repeat_x}
    return atoms, info
