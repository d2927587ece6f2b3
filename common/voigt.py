"""Voigt order of symmetric 3x3 tensors, and stress from a virial (ASE's conventions).

Voigt order is ASE's: ``xx, yy, zz, yz, xz, xy`` (indices 0..5). Stress follows ASE's sign (positive
= tensile): ``stress = -virial / volume`` with the virial ``W = sum_i r_i (x) f_i`` in eV and the
volume in Å^3, so the stress is in eV/Å^3.
"""
from __future__ import annotations

from .arrays import array_module

#: (row, column) of each Voigt component of a 3x3 tensor, in ASE's order.
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
#: Voigt index of each component name.
VOIGT_INDEX = {"xx": 0, "yy": 1, "zz": 2, "yz": 3, "xz": 4, "xy": 5}


def to_voigt(tensor):
    """``[..., 3, 3]`` -> ``[..., 6]`` in Voigt order; the off-diagonal entries are symmetrised
    (mean of ``t[a, b]`` and ``t[b, a]``). Same array module as the input."""
    xp = array_module(tensor)
    return xp.stack([0.5 * (tensor[..., a, b] + tensor[..., b, a]) for a, b in VOIGT_PAIRS], axis=-1)


def stress_from_virial(virial, volume: float):
    """Stress (eV/Å^3, Voigt ``[..., 6]``, ASE sign) from virial tensors ``[..., 3, 3]`` (eV) of a cell of
    ``volume`` (Å^3)."""
    return -to_voigt(virial) / volume
