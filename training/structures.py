"""Periodic 2D cells of the embedded systems: graphene, chi3 borophene, their lateral interface.

Data flow: a builder name from ``case.yaml`` (``systems.<name>.structure``) ->
:func:`build` -> an :class:`ase.Atoms` (periodic in x and y, vacuum along z,
flat sheet at z = vacuum/2) -> :mod:`training.aimd` strains and heats it.

All cells are orthorhombic and at least ``min_length_A`` (default 10 A = twice
the 5 A MTP cut-off) long in x and y, with ``vacuum_A`` (default 20 A) along z;
the Gamma-point engines (tblite) need these large cells anyway.

Lattice parameters (Angstrom) are the 0 K values of the reference engine
(tblite 0.8.0 GFN2-xTB, Gamma point, in the very supercells built here), found
by :func:`training.reference.relax_cell`; rerun it when the engine changes.
They are stored in ``LATTICE`` so that building a cell does not need an engine.
``python -m training.structures NAME FILE`` writes a builder's cell to a file.

* graphene: honeycomb, lattice constant ``a`` (C-C bond ``a/sqrt(3)``); the
  rectangular 4-atom cell is ``a x a*sqrt(3)`` with zigzag rows along x.
* chi3 borophene (Feng et al., Nat. Chem. 8, 563 (2016); Zhang et al., Angew.
  Chem. 54, 13022 (2015)): a triangular boron lattice (nearest-neighbour
  distance ``d``) with hexagonal holes at concentration 1/5. Its centred
  rectangular cell ``sqrt(3) d x 5 d`` holds 10 sites and 2 holes (8 atoms);
  the holes form rows of edge-sharing hexagons along x, each row shifted by
  half a period from the next (primitive rhombic cell ``sqrt(7) d`` ~ 4.4 A).
  chi3 is the polymorph grown on Ag(111) and the one used in the
  graphene/borophene lateral heterostructure literature. Its 0 K cell has
  ``a`` (x) and ``b`` (y) relaxed independently.
* interface: graphene (6 x 2 rectangular cells, zigzag edges) and chi3
  borophene (5 x 1 cells) side by side along y, sharing the x period
  ``6 a_graphene`` (borophene stretched ~1 % to fit: 5 a_B ~ 6 a_C), so the cell
  has two coplanar C-B interfaces (the generic builder
  :func:`common.sheets.lateral_interface` makes the same cell from the two
  phases); ``LATTICE['interface']`` stores the relaxed C-B row distance.
"""
from __future__ import annotations

import numpy as np
from ase import Atoms

# 0 K lattice parameters of the default reference engine (tblite 0.8.0, GFN2-xTB, Gamma point);
LATTICE = {
    "graphene": {"a": 2.45014},
    "borophene": {"a": 2.88229, "b": 8.41529},
    "interface": {"gap_A": 1.55},
}
SYSTEMS = ("graphene", "borophene", "interface")


def _sheet(symbols, xy, lx: float, ly: float, vacuum_A: float) -> Atoms:
    positions = np.column_stack([xy, np.full(len(xy), vacuum_A / 2.0)])
    return Atoms(symbols, positions=positions, cell=[lx, ly, vacuum_A], pbc=True)


def graphene_cell(a: float) -> tuple[np.ndarray, float, float]:
    """Rectangular 4-atom graphene cell: xy positions [4, 2] (A), lengths lx = a, ly = a sqrt(3)."""
    h = a * np.sqrt(3.0)
    xy = np.array([[0.0, 0.0], [a / 2, h / 6], [a / 2, h / 2], [0.0, 2 * h / 3]])
    return xy, a, h


def borophene_cell(a: float, b: float) -> tuple[np.ndarray, float, float]:
    """Rectangular 8-atom chi3 cell: xy positions [8, 2] (A), lengths lx = a, ly = b.

    Sites of a triangular lattice with rows along y: column 0 at (0, j b/5),
    column 1 at (a/2, (j + 1/2) b/5), j = 0..4; the holes are column 0, j = 0
    and column 1, j = 2.
    """
    d = b / 5.0
    xy = [(0.0, j * d) for j in range(5) if j != 0] + [(a / 2, (j + 0.5) * d) for j in range(5) if j != 2]
    return np.array(xy), a, b


def _repeats(length: float, min_length_A: float) -> int:
    return int(np.ceil(min_length_A / length - 1e-9))


def _tile(xy: np.ndarray, lx: float, ly: float, nx: int, ny: int) -> np.ndarray:
    shifts = np.array([(i * lx, j * ly) for j in range(ny) for i in range(nx)])
    return (shifts[:, None, :] + xy[None, :, :]).reshape(-1, 2)


def graphene(*, a: float | None = None, repeat: tuple[int, int] | None = None,
             min_length_A: float = 10.0, vacuum_A: float = 20.0) -> Atoms:
    """Flat graphene sheet, rectangular supercell (default 5 x 3 cells = 60 atoms, 12.3 x 12.8 A)."""
    a = LATTICE["graphene"]["a"] if a is None else a
    xy, lx, ly = graphene_cell(a)
    nx, ny = repeat or (_repeats(lx, min_length_A), _repeats(ly, min_length_A))
    return _sheet("C" * (4 * nx * ny), _tile(xy, lx, ly, nx, ny), nx * lx, ny * ly, vacuum_A)


def borophene(*, a: float | None = None, b: float | None = None, repeat: tuple[int, int] | None = None,
              min_length_A: float = 10.0, vacuum_A: float = 20.0) -> Atoms:
    """Flat chi3 borophene sheet, rectangular supercell (default 4 x 2 cells = 64 atoms, 11.7 x 16.9 A)."""
    a = LATTICE["borophene"]["a"] if a is None else a
    b = LATTICE["borophene"]["b"] if b is None else b
    xy, lx, ly = borophene_cell(a, b)
    nx, ny = repeat or (_repeats(lx, min_length_A), _repeats(ly, min_length_A))
    return _sheet("B" * (8 * nx * ny), _tile(xy, lx, ly, nx, ny), nx * lx, ny * ly, vacuum_A)


def interface(*, a_graphene: float | None = None, a_borophene: float | None = None,
              b_borophene: float | None = None, gap_A: float | None = None,
              graphene_cells: tuple[int, int] = (6, 2), borophene_cells_y: int = 1,
              vacuum_A: float = 20.0) -> Atoms:
    """Coplanar graphene | chi3 borophene lateral interface cell (default 48 C + 40 B = 88 atoms).

    Graphene occupies the lower part of the cell in y, borophene the upper part;
    the x period is that of graphene (``graphene_cells[0] * a``), borophene is
    stretched in x to fit. ``gap_A`` (A) is the y distance between the outermost
    C and B rows at both interfaces. Positions are as built (unrelaxed).
    """
    a_c = LATTICE["graphene"]["a"] if a_graphene is None else a_graphene
    a_b = LATTICE["borophene"]["a"] if a_borophene is None else a_borophene
    b_b = LATTICE["borophene"]["b"] if b_borophene is None else b_borophene
    gap = LATTICE["interface"]["gap_A"] if gap_A is None else gap_A
    ncx, ncy = graphene_cells
    xy_c, lx_c, ly_c = graphene_cell(a_c)
    carbon = _tile(xy_c, lx_c, ly_c, ncx, ncy)
    lx = ncx * lx_c
    nbx = int(round(lx / a_b))
    xy_b, _, ly_b = borophene_cell(lx / nbx, b_b)
    boron = _tile(xy_b, lx / nbx, ly_b, nbx, borophene_cells_y)
    boron[:, 1] += carbon[:, 1].max() + gap - boron[:, 1].min()
    ly = boron[:, 1].max() + gap - carbon[:, 1].min()
    symbols = "C" * len(carbon) + "B" * len(boron)
    return _sheet(symbols, np.vstack([carbon, boron]), lx, ly, vacuum_A)


BUILDERS = {"graphene": graphene, "borophene": borophene, "interface": interface}
ALIASES = {"borophene_chi3": "borophene", "graphene_borophene_interface": "interface"}


def canonical(name: str) -> str:
    """The builder name behind ``name`` (an entry of ``BUILDERS`` or one of its ``ALIASES``)."""
    name = ALIASES.get(name, name)
    if name not in BUILDERS:
        raise ValueError(f"systems.*.structure: {name!r} is not one of "
                         f"{', '.join(list(BUILDERS) + list(ALIASES))}")
    return name


def build(name: str, **kwargs) -> Atoms:
    """The cell of builder ``name`` (see :func:`canonical`); ``kwargs`` go to the builder."""
    return BUILDERS[canonical(name)](**kwargs)


if __name__ == "__main__":  # pragma: no cover - writes a builder's cell to a structure file
    import sys

    if len(sys.argv) != 3:
        sys.exit(f"usage: python -m training.structures NAME FILE  (NAME: {', '.join(list(BUILDERS) + list(ALIASES))}; "
                 "FILE: any format ASE writes, e.g. graphene.extxyz or POSCAR)")
    build(sys.argv[1]).write(sys.argv[2])
    print(f"{sys.argv[2]}: the {canonical(sys.argv[1])} cell")
