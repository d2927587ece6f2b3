"""An ASE calculator around any md_gpu force field (for static relaxations and checks).

``MDCalculator(ff)`` gives ``energy`` (eV), ``energies`` [n], ``forces`` [n, 3]
(eV/Å), ``stress`` (Voigt, eV/Å^3, ASE sign) and ``stresses`` [n, 6] using the
same neighbour list and force code as the MD (NumPy backend).
"""
from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes

from common.voigt import stress_from_virial

from .backend import to_numpy
from .forcefields.base import compute_forces
from .neighbors import NeighborList
from .state import from_atoms


class MDCalculator(Calculator):
    """ASE calculator for an md_gpu force field ``ff`` (``species``, ``cutoff``, ``evaluate``)."""

    implemented_properties = ["energy", "energies", "forces", "stress", "stresses", "free_energy"]

    def __init__(self, ff, **kwargs):
        super().__init__(**kwargs)
        self.ff = ff

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        state = from_atoms(self.atoms, species=self.ff.species)
        nl = NeighborList(self.ff.cutoff, 0.0, state.pbc)
        nl.build(state.positions, state.cell)
        res = compute_forces(self.ff, state.positions, state.cell, state.types, nl, per_atom=True)
        vol = self.atoms.get_volume()
        energy = float(to_numpy(res.energy))
        self.results = {"energy": energy, "free_energy": energy,
                        "energies": to_numpy(res.energies), "forces": to_numpy(res.forces),
                        "stress": stress_from_virial(to_numpy(res.virial), vol, symmetrise=False),
                        "stresses": stress_from_virial(to_numpy(res.virials), vol, symmetrise=False)}
