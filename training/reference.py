"""The reference engine's own 0 K structure and in-plane stiffness of any 2D sheet.

Data flow: a sheet (:class:`ase.Atoms`, rectangular in-plane cell, vacuum along z) + an ASE calculator
-> :func:`relax_cell` (BFGS on ASE's Frechet cell filter, with a mask that frees only the chosen in-plane
cell components; positions always relax) -> :func:`strain_scan` (relaxed-ion C11, C22, C12, C66 from
small static strains) -> :func:`reference_properties`: the numbers the fitted potential and the MD
must reproduce (dataset metadata ``reference``; the report's "MTP-MD vs reference engine" check).
The same strained, position-relaxed cells (:data:`STRAIN_MODES`, :func:`strained`,
:func:`relax_positions`) are the relaxed-ion training frames of :mod:`training.strain_frames`.

Units: Å, eV; 2D stiffnesses in N/m (3D stress times the cell's z length).
"""
from __future__ import annotations

import numpy as np
from ase import Atoms

from .summary import EV_PER_A2_TO_N_PER_M

#: FrechetCellFilter masks (Voigt xx, yy, zz, yz, xz, xy) of the relaxations the data stage runs:
#: a phase relaxes both in-plane lengths (the cell stays rectangular), an interface cell only the
#: length across its interfaces (y; x is fixed by the phase that keeps its lattice).
RELAX_MASKS = {"lattice": (1, 1, 0, 0, 0, 0), "normal": (0, 1, 0, 0, 0, 0), "positions": (0, 0, 0, 0, 0, 0)}


def relax_cell(atoms: Atoms, calc, *, free: str = "lattice", fmax: float = 0.01, steps: int = 300,
               kick_A: float = 0.02, seed: int = 0) -> Atoms:
    """A relaxed copy of ``atoms`` (positions and the cell components of ``RELAX_MASKS[free]``).

    A small random out-of-plane kick (``kick_A``, seeded) lets a sheet that prefers to buckle leave
    the flat saddle point; a flat sheet relaxes back.
    """
    from ase.optimize import BFGS

    from common.cell_filter import frechet_cell_filter

    if free not in RELAX_MASKS:
        raise ValueError(f"relax_cell: free={free!r} is not one of {', '.join(RELAX_MASKS)}")
    atoms = atoms.copy()
    atoms.positions[:, 2] += np.random.default_rng(seed).normal(0.0, kick_A, len(atoms))
    atoms.calc = calc
    mask = RELAX_MASKS[free]
    target = frechet_cell_filter(atoms, mask=list(mask)) if any(mask) else atoms
    BFGS(target, logfile=None).run(fmax=fmax, steps=steps)  # graphene, 60 atoms: 25 steps (FIRE: > 500)
    return atoms


#: The small in-plane strain tensors [2, 2] of the static strain modes, as functions of the strain
#: ``e``: uniaxial along x and along y, equi-biaxial, and a pure shear of engineering strain ``gamma = e``.
STRAIN_MODES = {"x": lambda e: np.array([[e, 0.0], [0.0, 0.0]]), "y": lambda e: np.array([[0.0, 0.0], [0.0, e]]),
                "biaxial": lambda e: np.array([[e, 0.0], [0.0, e]]),
                "shear": lambda e: np.array([[0.0, e / 2], [e / 2, 0.0]])}


def relax_positions(atoms: Atoms, calc, *, fmax: float, steps: int = 300, optimizer: str = "FIRE") -> bool:
    """Relax the positions of ``atoms`` in place at fixed cell (ASE's ``FIRE`` or ``BFGS``, ``calc``
    attached); True when the largest force is then below ``fmax`` (eV/Å), False when ``steps`` ran out
    first."""
    from ase import optimize

    if optimizer not in ("FIRE", "BFGS"):
        raise ValueError(f"relax_positions: optimizer={optimizer!r} is not FIRE or BFGS")
    atoms.calc = calc
    return bool(getattr(optimize, optimizer)(atoms, logfile=None).run(fmax=fmax, steps=steps))


def stress_2d(atoms: Atoms) -> np.ndarray:
    """2D stress [sxx, syy, sxy] (N/m) of ``atoms`` (calculator attached): the 3D stress times the cell's z."""
    return atoms.get_stress()[[0, 1, 5]] * atoms.cell[2, 2] * EV_PER_A2_TO_N_PER_M


def strained(atoms: Atoms, strain: np.ndarray) -> Atoms:
    """``atoms`` under the small in-plane strain tensor ``strain`` ([2, 2], symmetric), atoms moved affinely
    (cell rows ``h' = h (I + strain)^T``)."""
    deformation = np.eye(3)
    deformation[:2, :2] += strain
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ deformation.T, scale_atoms=True)
    return out


def strain_scan(atoms: Atoms, calc, *, strains=(-0.01, -0.005, 0.005, 0.01), fmax: float = 2e-3) -> dict:
    """0 K relaxed-ion in-plane elastic constants of a relaxed sheet from small static strains.

    For each strain ``e`` (``STRAIN_MODES`` x, y and shear, the last with engineering strain ``gamma = e``)
    the positions relax at fixed cell (:func:`relax_positions`) and the 2D stress is ``sigma_3D * L_z``.
    Linear fits give C11 = dsxx/dexx, C12 = dsyy/dexx (averaged with dsxx/deyy), C22 = dsyy/deyy,
    C66 = dsxy/dgamma (N/m); E_x = (C11 C22 - C12^2) / C22, E_y = (C11 C22 - C12^2) / C11, nu_xy = C12 / C22.
    """
    strains = np.asarray(strains, dtype=float)
    slopes = {}
    for name in ("x", "y", "shear"):
        sig = []
        for e in strains:
            cell = strained(atoms, STRAIN_MODES[name](e))
            relax_positions(cell, calc, fmax=fmax)
            sig.append(stress_2d(cell))
        slopes[name] = np.polyfit(strains, np.array(sig), 1)[0]  # [dsxx, dsyy, dsxy] / de
    c11, c12_x = slopes["x"][:2]
    c12_y, c22 = slopes["y"][:2]
    c66 = slopes["shear"][2]
    c12 = 0.5 * (c12_x + c12_y)
    det = c11 * c22 - c12 ** 2
    return {"C11_N_per_m": float(c11), "C22_N_per_m": float(c22), "C12_N_per_m": float(c12),
            "C66_N_per_m": float(c66), "E_x_N_per_m": float(det / c22), "E_y_N_per_m": float(det / c11),
            "nu_xy": float(c12 / c22), "strains": strains.tolist(), "relaxed_ion": True}


def reference_properties(relaxed: Atoms, calc) -> dict:
    """The engine's own 0 K cell (Å) and in-plane stiffness (N/m) of the relaxed sheet ``relaxed``."""
    return {"n_atoms": len(relaxed), "cell_A": relaxed.cell.lengths().tolist(),
            "formula": relaxed.get_chemical_formula(), **strain_scan(relaxed, calc)}
