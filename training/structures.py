"""Periodic 2D cells of the embedded systems: graphene, chi3 borophene, their lateral interface.

Data flow: a builder name from ``case.yaml`` (``systems.<name>.structure``) ->
:func:`build` -> an :class:`ase.Atoms` (periodic in x and y, vacuum along z,
flat sheet at z = vacuum/2) -> :mod:`training.aimd` strains and heats it.

All cells are orthorhombic and at least ``min_length_A`` (default 10 A = twice
the 5 A MTP cut-off) long in x and y, with ``vacuum_A`` (default 20 A) along z;
the Gamma-point engines (tblite) need these large cells anyway.

Lattice parameters (Angstrom) are the 0 K values of the reference engine
(tblite 0.8.0 GFN2-xTB, Gamma point, in the very supercells built here), found
by :func:`relax_lattice` and :func:`relax_interface`; rerun them when the
engine changes. They are stored in ``LATTICE`` so that building a cell does
not need an engine.

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
  has two coplanar C-B interfaces. Atom positions and the y length are
  relaxed with the engine (:func:`relax_interface`); ``LATTICE['interface']``
  stores the relaxed y length and the positions are re-relaxed cheaply.
"""
from __future__ import annotations

import numpy as np
from ase import Atoms

# 0 K lattice parameters of the default reference engine (tblite 0.8.0, GFN2-xTB, Gamma point);
# regenerate with ``python -m training.structures`` (prints the new table).
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
    C and B rows at both interfaces. Positions are as built (unrelaxed); the
    relaxed structure comes from :func:`relax_interface`.
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


def relax_lattice(name: str, calc, *, fmax: float = 0.01, steps: int = 300) -> dict:
    """0 K in-plane lattice parameters of ``graphene`` or ``borophene`` with calculator ``calc``.

    Graphene: the energy per atom of the default supercell is minimised over
    ``a`` (positions fixed by symmetry). Borophene: positions and the x and y
    cell lengths relax together (FIRE on a Frechet cell filter, in-plane
    strain only, out-of-plane buckling allowed by a small random z kick).
    Returns the new ``LATTICE[name]`` dict (A).
    """
    from scipy.optimize import minimize_scalar

    if name == "graphene":
        def energy(a):
            atoms = graphene(a=a)
            atoms.calc = calc
            return atoms.get_potential_energy() / len(atoms)
        a0 = LATTICE["graphene"]["a"]
        res = minimize_scalar(energy, bounds=(a0 * 0.95, a0 * 1.05), method="bounded",
                              options={"xatol": 1e-6})
        return {"a": float(res.x)}
    if name == "borophene":
        atoms = _relax_cell(borophene(), calc, fmax=fmax, steps=steps, mask=[1, 1, 0, 0, 0, 0])
        nx = _repeats(LATTICE["borophene"]["a"], 10.0)
        ny = _repeats(LATTICE["borophene"]["b"], 10.0)
        return {"a": float(atoms.cell[0, 0] / nx), "b": float(atoms.cell[1, 1] / ny)}
    raise ValueError(f"relax_lattice: {name!r} is not graphene or borophene")


def _relax_cell(atoms: Atoms, calc, *, fmax: float, steps: int, mask) -> Atoms:
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    rng = np.random.default_rng(0)
    atoms.positions[:, 2] += rng.normal(0.0, 0.02, len(atoms))
    atoms.calc = calc
    FIRE(FrechetCellFilter(atoms, mask=mask), logfile=None).run(fmax=fmax, steps=steps)
    return atoms


def relax_interface(calc, *, fmax: float = 0.02, steps: int = 400) -> Atoms:
    """Interface cell with positions and y length relaxed by ``calc`` (x fixed by graphene)."""
    return _relax_cell(interface(), calc, fmax=fmax, steps=steps, mask=[0, 1, 0, 0, 0, 0])


if __name__ == "__main__":  # pragma: no cover - regenerates LATTICE with the default engine
    from .engines import make_calculator

    calc = make_calculator()  # the default engine
    table = {name: relax_lattice(name, calc) for name in ("graphene", "borophene")}
    print(table)


EV_PER_A2_TO_N_PER_M = 16.021766208  # 1 eV/A^2 in N/m


def _relaxed_stress_2d(atoms: Atoms, calc, *, fmax: float) -> np.ndarray:
    """2D stress [sxx, syy] (N/m) after relaxing the positions of ``atoms`` at fixed cell."""
    from ase.optimize import FIRE

    atoms.calc = calc
    FIRE(atoms, logfile=None).run(fmax=fmax, steps=300)
    stress = atoms.get_stress()
    return stress[:2] * atoms.cell[2, 2] * EV_PER_A2_TO_N_PER_M


def strain_scan(atoms: Atoms, calc, *, strains=(-0.01, -0.005, 0.005, 0.01), fmax: float = 2e-3) -> dict:
    """0 K in-plane elastic constants of a relaxed sheet from a small static strain scan.

    For each uniaxial strain ``e`` along x (then y) the positions relax at fixed
    cell (relaxed-ion constants) and the 2D stress is ``sigma_3D * L_z``. Linear
    fits give C11 = dsxx/dexx, C12 = dsyy/dexx, C22 = dsyy/deyy (N/m);
    E_x = (C11 C22 - C12^2) / C22, E_y = (C11 C22 - C12^2) / C11,
    nu_xy = C12 / C22 (2D Young's moduli in N/m).
    """
    strains = np.asarray(strains, dtype=float)
    rows = {}
    for axis in (0, 1):
        sig = []
        for e in strains:
            strained = atoms.copy()
            scale = np.ones(3)
            scale[axis] += e
            strained.set_cell(atoms.cell.array * scale[:, None], scale_atoms=True)
            sig.append(_relaxed_stress_2d(strained, calc, fmax=fmax))
        rows[axis] = np.polyfit(strains, np.array(sig), 1)[0]  # [dsxx/de, dsyy/de]
    c11, c12 = rows[0]
    c21, c22 = rows[1]
    c12 = 0.5 * (c12 + c21)
    det = c11 * c22 - c12 ** 2
    return {"C11_N_per_m": float(c11), "C22_N_per_m": float(c22), "C12_N_per_m": float(c12),
            "E_x_N_per_m": float(det / c22), "E_y_N_per_m": float(det / c11),
            "nu_xy": float(c12 / c22), "strains": strains.tolist(), "relaxed_ion": True}


def reference_properties(name: str, calc) -> dict:
    """The engine's own 0 K lattice parameters (A) and in-plane stiffness (N/m) of ``name``.

    These are the numbers the fitted potential and the MD must reproduce; they
    go into the dataset metadata and ``multiscale data summary`` prints them.
    """
    lattice = relax_lattice(name, calc)
    atoms = graphene(**lattice) if name == "graphene" else borophene(**lattice)
    return {"lattice_A": lattice, "n_atoms": len(atoms), "cell_A": atoms.cell.lengths().tolist(),
            **strain_scan(atoms, calc)}
