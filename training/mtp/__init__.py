"""Moment tensor potentials (MTP) as MLIP-2 defines them: model, MLIP file formats, ASE calculator.

Data flow: ``.mtp`` file --``MTP.read``--> ``MTP`` --``evaluate(types, i, j, d)``--> site energies and
dE/dd per pair --``forces_and_virial``--> forces, virial; ``MTPCalculator`` wraps this for ASE Atoms
(pair lists from ``neighbor_pairs``).  ``read_cfg``/``write_cfg`` convert MLIP ``.cfg`` datasets to and
from lists of ``ase.Atoms``.  See docs/mtp.md.
"""
from .calculator import MTPCalculator, atom_types
from .cfg import read_cfg, write_cfg
from .errors import MTPError, MTPFormatError, MTPSpeciesError
from .model import MTP
from .neighbors import batched_pairs, forces_and_virial, neighbor_pairs

__all__ = ["MTP", "MTPCalculator", "read_cfg", "write_cfg", "forces_and_virial", "neighbor_pairs",
           "batched_pairs", "atom_types", "MTPError", "MTPFormatError", "MTPSpeciesError"]
