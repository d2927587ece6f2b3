"""Is the structure a minimum of the potential? A 0 K relaxation that looks for holes.

Why: a machine-learned potential can have a hole next to the structure it was fitted around: a
region with no training data where its energy falls without bound. MD finds such a hole by chance
(a blow-up in one seed, a collapsed cell with nonsense properties in another); a 0 K relaxation,
which follows the forces downhill, finds it in seconds: the energy then falls by eV/atom within a
few steps, typically with a pair of atoms far closer than any bond.

Data flow::

    built structure (ase.Atoms) + force field (md_gpu.calculator.MDCalculator: MD's forces, core included)
    --FIRE on positions and the periodic in-plane cell (FrechetCellFilter; a sheet keeps its vacuum)--
    stops at max force <= fmax, after ``steps``, or at a hole: the energy more than
    simulation.COLLAPSE_EV_PER_ATOM per atom below the start (the collapse criterion of the MD loop's
    simulation.BlowUpGuard)
    -> {"hole", "converged", "steps", "energy_change_meV_per_atom", "lowest_energy_change_meV_per_atom",
        "cell_strain": [e_xx, e_yy] of the relaxed cell against the built one,
        "max_displacement_A" (periodic images unwrapped by the cell), "min_distance_A",
        "fmax_eV_per_A", "n_atoms"}

Physically a relaxation releases the strain of a structure built with another engine's lattice or
ideal positions: tens of meV/atom for the interface cell built from the phases' lattices, about
zero for a phase built at the lattice of the engine the MTP learned. A hole is 1 eV/atom and more.
"""
from __future__ import annotations

import numpy as np

from ..errors import MDSetupError
from ..simulation import COLLAPSE_EV_PER_ATOM
from ..state import State, to_atoms


def relaxation_check(ff, atoms, *, fmax: float = 0.01, steps: int = 500) -> dict:
    """Relax ``atoms`` (ase.Atoms or State) at 0 K with ``ff``; see the module docstring.

    fmax: eV/Å convergence threshold on the largest force (and cell force) component; steps: FIRE
    steps at most. Returns plain data (energies in meV/atom, lengths in Å)."""
    from common.cell_filter import frechet_cell_filter
    from ase.neighborlist import neighbor_list
    from ase.optimize import FIRE

    from ..calculator import MDCalculator

    if steps < 1 or fmax <= 0:
        raise MDSetupError(f"relaxation check: steps ({steps}) must be >= 1 and fmax ({fmax}) > 0")
    atoms = to_atoms(atoms) if isinstance(atoms, State) else atoms.copy()
    pbc = atoms.pbc
    if not (pbc[0] and pbc[1]):
        raise MDSetupError("relaxation check: the cell must be periodic in x and y")
    start_positions, start_cell = atoms.positions.copy(), atoms.cell.array.copy()
    atoms.calc = MDCalculator(ff)
    n = len(atoms)
    e0 = atoms.get_potential_energy()
    lowest = e0
    # in-plane cell components only (xx, yy, xy); zz too for a bulk cell
    mask = [True, True, bool(pbc[2]), False, False, True]
    optimizer = FIRE(frechet_cell_filter(atoms, mask=mask), logfile=None)
    hole, converged, done = False, False, 0
    for done, converged in enumerate(optimizer.irun(fmax=fmax, steps=steps)):
        lowest = min(lowest, atoms.get_potential_energy())
        if (e0 - lowest) / n > COLLAPSE_EV_PER_ATOM:
            hole = True
            break
    energy = atoms.get_potential_energy()
    cell = atoms.cell.array
    shift = atoms.positions - start_positions @ np.linalg.solve(start_cell, cell)  # affine part removed
    shift -= np.round(shift @ np.linalg.inv(cell) * pbc) @ cell  # nearest image
    distances = neighbor_list("d", atoms, 3.0)
    return {"hole": bool(hole), "converged": bool(converged and not hole), "steps": int(done),
            "energy_change_meV_per_atom": float((energy - e0) / n * 1000.0),
            "lowest_energy_change_meV_per_atom": float((lowest - e0) / n * 1000.0),
            "cell_strain": [float(cell[k, k] / start_cell[k, k] - 1.0) for k in (0, 1)],
            "max_displacement_A": float(np.sqrt((shift ** 2).sum(axis=1)).max()),
            "min_distance_A": float(distances.min()) if distances.size else None,
            "fmax_eV_per_A": float(fmax), "n_atoms": n}


def describe(result: dict) -> str:
    """One line on a :func:`relaxation_check` result (for logs and errors)."""
    ex, ey = result["cell_strain"]
    what = ("a HOLE of the potential: the energy fell more than "
            f"{COLLAPSE_EV_PER_ATOM:g} eV/atom" if result["hole"]
            else "converged" if result["converged"] else "not converged")
    return (f"0 K relaxation, {result['steps']} FIRE steps: {what}; energy {result['energy_change_meV_per_atom']:+.1f} "
            f"meV/atom, in-plane cell {100 * ex:+.2f} % / {100 * ey:+.2f} %, largest displacement "
            f"{result['max_displacement_A']:.2f} Å, shortest distance {result['min_distance_A']:.2f} Å")
