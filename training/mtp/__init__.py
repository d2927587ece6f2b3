"""Moment tensor potentials (MTP) as MLIP-2 defines them: model, MLIP file formats, ASE calculator.

Data flow: ``.mtp`` file --``MTP.read``--> ``MTP`` --``evaluate(types, i, j, d)``--> site energies and
dE/dd per pair --``forces_and_virial``--> forces, virial; ``MTPCalculator`` wraps this for ASE Atoms.
``read_cfg``/``write_cfg`` convert MLIP ``.cfg`` datasets to and from lists of ``ase.Atoms``.
See docs/mtp.md.
"""
from .cfg import read_cfg, write_cfg
from .errors import MTPError, MTPFormatError, MTPSpeciesError

__all__ = ["read_cfg", "write_cfg", "MTPError", "MTPFormatError", "MTPSpeciesError"]
