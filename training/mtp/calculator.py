"""``MTPCalculator``: an MLIP moment tensor potential as an ASE calculator.

Data flow: Atoms -> types (species list of the potential, else ``atoms.arrays["mlip_type"]``, else 0 for a
one-element potential) -> ``neighbor_pairs`` -> ``host_kernel.evaluate`` (the compiled kernel of ``MTP.evaluate``,
or its array code without a compiler) -> ``forces_and_virial`` -> results
``energy``, ``free_energy`` (eV), ``energies`` [n] (eV), ``forces`` [n, 3] (eV/Å), ``stress`` [6] and
``stresses`` [n, 6] (eV/Å³, ASE sign: positive = tensile, Voigt xx yy zz yz xz xy).  Stress needs a cell of
non-zero volume; for a 2D sheet with vacuum it is the 3D stress of the whole cell (multiply by the cell
height for N/m-type 2D stress).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from common.voigt import stress_from_virial

from . import host_kernel
from .errors import MTPSpeciesError
from .model import MTP
from .neighbors import batched_pairs, forces_and_virial, neighbor_pairs


def atom_types(mtp: MTP, atoms) -> np.ndarray:
    """MTP type indices [n] of ``atoms`` (see the module docstring); MTPSpeciesError if none apply."""
    species = mtp.species
    if species is not None:
        index = {s: k for k, s in enumerate(species)}
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(index))
        if unknown and "mlip_type" not in atoms.arrays:
            raise MTPSpeciesError(f"element(s) {unknown} are not in the potential's species {species}")
        if not unknown:
            return np.array([index[s] for s in symbols], dtype=np.int64)
    if "mlip_type" in atoms.arrays:
        types = np.asarray(atoms.arrays["mlip_type"], dtype=np.int64)
    elif mtp.species_count == 1 and len(set(atoms.numbers)) <= 1:
        types = np.zeros(len(atoms), dtype=np.int64)
    else:
        raise MTPSpeciesError("cannot tell MTP types of these atoms: the potential has no species list "
                              "(write species=[...] into it, e.g. MTPCalculator(mtp, species=['C', 'B'])) and the "
                              "atoms have no 'mlip_type' array")
    if len(types) and (types.min() < 0 or types.max() >= mtp.species_count):
        raise MTPSpeciesError(f"mlip_type values {types.min()}..{types.max()} outside the potential's "
                              f"0..{mtp.species_count - 1}")
    return types


class MTPCalculator(Calculator):
    """ASE calculator for an MLIP ``.mtp`` potential (CPU: compiled kernel, else NumPy array code).

    Parameters
    ----------
    potential : MTP or path of an ``.mtp`` file.
    species : list of element symbols for types 0..S-1, keyword-only; overrides (and is written into) the
        potential's own list.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]
    default_parameters: dict = {}

    def __init__(self, potential, *, species=None, **kwargs):
        super().__init__(**kwargs)
        self.mtp = potential if isinstance(potential, MTP) else MTP.read(Path(potential))
        if species is not None:
            self.mtp.species = species

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        types = atom_types(self.mtp, atoms)
        i, j, d = neighbor_pairs(atoms, self.mtp.cutoff)
        energies, de_dd = host_kernel.evaluate(self.mtp, types, i, j, d)
        forces, virial, per_atom = forces_and_virial(i, j, d, de_dd, len(atoms), np)
        energy = float(energies.sum())
        self.results = {"energy": energy, "free_energy": energy, "energies": energies, "forces": forces}
        volume = abs(np.linalg.det(atoms.cell.array)) if atoms.cell.rank == 3 else 0.0
        if volume > 0:
            self.results["stress"] = stress_from_virial(virial, volume)
            self.results["stresses"] = stress_from_virial(per_atom, volume)
        elif "stress" in properties or "stresses" in properties:
            raise PropertyNotImplementedError("stress needs a cell with non-zero volume")


def evaluate_frames(mtp: MTP, frames, *, xp=np, pairs=neighbor_pairs) -> list[dict]:
    """Energy, forces and stress of many structures with one batched ``MTP.evaluate`` call (on NumPy
    the compiled kernel, :func:`training.mtp.host_kernel.evaluate`).

    ``pairs``: the pair-list function of :func:`training.mtp.neighbors.batched_pairs` (``PAIRS`` reuses
    lists already built for the same structures).

    Returns one dict per frame with ``energy`` (eV), ``energies`` [n] (eV), ``forces`` [n, 3] (eV/Å),
    ``virial`` [3, 3] (eV; MLIP's PlusStress) and, for cells of non-zero volume, ``stress`` [6]
    (eV/Å³, ASE sign and Voigt order).
    """
    frames = list(frames)
    if not frames:
        return []
    types = np.concatenate([atom_types(mtp, atoms) for atoms in frames])
    i, j, d, frame = batched_pairs(frames, mtp.cutoff, pairs=pairs)
    if xp is np:
        energies, de_dd = host_kernel.evaluate(mtp, types, i, j, d)
    else:
        energies, de_dd = mtp.evaluate(xp.asarray(types), xp.asarray(i), xp.asarray(j), xp.asarray(d), xp=xp)
    forces, _, per_atom = forces_and_virial(xp.asarray(i), xp.asarray(j), xp.asarray(d), de_dd, len(types), xp)
    energies, forces, per_atom = (np.asarray(a.get() if hasattr(a, "get") else a) for a in (energies, forces, per_atom))
    results, start = [], 0
    for atoms in frames:
        stop = start + len(atoms)
        virial = per_atom[start:stop].sum(axis=0)
        res = {"energy": float(energies[start:stop].sum()), "energies": energies[start:stop],
               "forces": forces[start:stop], "virial": virial}
        volume = abs(np.linalg.det(atoms.cell.array)) if atoms.cell.rank == 3 else 0.0
        if volume > 0:
            res["stress"] = stress_from_virial(virial, volume)
        results.append(res)
        start = stop
    return results
