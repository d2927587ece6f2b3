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


def to_voigt(tensor, *, symmetrise: bool = True, axis: int = -2):
    """3x3 tensors -> Voigt order, in the array module of the input.

    The axes ``axis`` and ``axis + 1`` (size 3 each; default the last two: ``[..., 3, 3]`` -> ``[..., 6]``)
    become one axis of size 6 at ``axis`` (e.g. ``[F, 3, 3, K]`` with ``axis=1`` -> ``[F, 6, K]``).
    ``symmetrise``: the off-diagonal entries are the mean of ``t[a, b]`` and ``t[b, a]``; without it they
    are ``t[a, b]`` of ``VOIGT_PAIRS`` (the upper triangle), for tensors that need not be symmetric.
    """
    xp = array_module(tensor)
    ax = axis % tensor.ndim
    head = (slice(None),) * ax
    if symmetrise:
        parts = [0.5 * (tensor[head + (a, b)] + tensor[head + (b, a)]) for a, b in VOIGT_PAIRS]
    else:
        parts = [tensor[head + (a, b)] for a, b in VOIGT_PAIRS]
    return xp.stack(parts, axis=ax)


def stress_from_virial(virial, volume: float, *, symmetrise: bool = True):
    """Stress (eV/Å^3, Voigt ``[..., 6]``, ASE sign) from virial tensors ``[..., 3, 3]`` (eV) of a cell of
    ``volume`` (Å^3); ``symmetrise`` as in :func:`to_voigt`."""
    return -to_voigt(virial, symmetrise=symmetrise) / volume
