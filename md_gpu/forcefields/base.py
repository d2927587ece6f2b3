"""The one force contract shared by every force field (pair potentials, MTP).

A force field is an object with

* ``species: tuple[str, ...]`` - element symbol of each 0-based type;
* ``cutoff: float`` - interaction range (Å);
* ``evaluate(types, i, j, d, *, xp) -> (site_energies [n] eV, dE_dd [p, 3] eV/Å)``
  on a FULL pair list (every ordered pair and periodic image) with
  ``d = r_j + shift - r_i`` and ``|d| < cutoff``; ``types [n]`` int.
  ``dE_dd[p]`` is the derivative of the TOTAL energy with respect to ``d[p]``.
  Pairs at or beyond ``cutoff`` may be in the list too (a Verlet list handed over whole,
  :mod:`md_gpu.neighbors` "deferred checks"): they add no energy, and their ``dE_dd`` is 0.

This is the API of ``training.mtp.MTP.evaluate``; a pair potential fits it by
giving each atom half of each of its bonds. From ``dE_dd`` one shared function,
:func:`forces_and_virial`, makes forces and virials, and :func:`compute_forces`
glues neighbour list, force field and scatter together:

    positions, cell --NeighborList--> (i, j, d) --ff.evaluate--> (E_i, dE/dd)
                    --forces_and_virial--> ForceResult(energy, forces, virial, ...)

Signs: ``F_i = -dE/dr_i = sum_{p: i_p = i} dE_dd[p] - sum_{p: j_p = i} dE_dd[p]``;
virial ``W = -sum_p d_p (x) dE_dd_p`` (eV), so that the ASE stress (positive =
tensile) is ``sigma = -(W + sum m v (x) v) / V``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from training.mtp.neighbors import forces_and_virial as pair_forces_and_virial

from common.arrays import array_module
from ..backend import host_scalar
from ..errors import MDRunError


class ForceField(Protocol):
    """See the module docstring: ``species``, ``cutoff`` (Å) and ``evaluate``."""

    species: tuple
    cutoff: float

    def evaluate(self, types, i, j, d, *, xp=np): ...


@dataclass(frozen=True)
class ForceResult:
    """Energy and its derivatives for one configuration (arrays on the run's backend).

    energy (eV): a float on NumPy, a 0-d device array on CuPy (read it with
    :func:`md_gpu.backend.host_scalar`); energies [n] (eV); forces [n, 3] (eV/Å); virial [3, 3] (eV);
    virials [n, 3, 3] (eV, per atom, sums to ``virial``) or None when not asked for: pair ``p``
    is given to its neighbour ``j_p``, ``W_a = -sum_{p: j_p = a} d_p (x) dE_dd_p``, the
    many-body per-atom virial of Fan et al., Phys. Rev. B 92, 094301 (2015), as in ``training.mtp``.
    """

    energy: float
    energies: object
    forces: object
    virial: object
    virials: object = None


def forces_and_virial(i, j, d, dE_dd, n_atoms: int, xp=np, *, per_atom: bool = True):
    """Forces [n, 3] (eV/Å), virial [3, 3] (eV) and per-atom virials [n, 3, 3] (or None).

    ``i, j [p]``, ``d [p, 3]`` (Å), ``dE_dd [p, 3]`` (eV/Å) as in the contract. On CuPy a fused
    atomic-add kernel does the scatter (:mod:`md_gpu.kernels`); on NumPy it is
    :func:`training.mtp.forces_and_virial`, the array code the MTP calculator uses too.
    """
    if xp.__name__.startswith("cupy"):
        from ..kernels import scatter_forces_virials

        return scatter_forces_virials(i, j, d, dE_dd, n_atoms, per_atom=per_atom)
    return pair_forces_and_virial(i, j, d, dE_dd, n_atoms, xp, per_atom=per_atom)


def compute_forces(ff, positions, cell, types, nlist, *, per_atom: bool = False, md_step: bool = False) -> ForceResult:
    """Energy, forces and virial of ``ff`` with the pairs of ``nlist``.

    positions [n, 3] Å, cell [3, 3] Å, types [n]. Pairs of the Verlet list beyond ``ff.cutoff`` are
    dropped before ``ff.evaluate`` sees them (in the MD loop's deferred checks they are not: the force
    field gives them nothing). By default ``nlist`` must be up to date and a non-finite
    energy is an :class:`MDRunError` (the energy is read to the host). ``md_step=True`` is the MD
    loop's call: the list is updated first when needed
    (:meth:`md_gpu.neighbors.NeighborList.pairs_within`, one host read) and the energy stays on the
    device (a blow-up shows as non-finite positions at the next call, and in the thermo rows).
    """
    if md_step:
        i, j, d = nlist.pairs_within(positions, cell, ff.cutoff)
        return pair_forces(ff, types, i, j, d, per_atom=per_atom)
    d = nlist.pair_vectors(positions, cell)
    inside = (d * d).sum(1) < ff.cutoff * ff.cutoff
    result = pair_forces(ff, types, nlist.i[inside], nlist.j[inside], d[inside], per_atom=per_atom)
    if not np.isfinite(host_scalar(result.energy)):
        raise MDRunError("the potential energy is not finite: the system blew up (atoms too close); "
                         "use a smaller time step or check the starting structure")
    return result


def pair_forces(ff, types, i, j, d, *, per_atom: bool = False) -> ForceResult:
    """:class:`ForceResult` of ``ff`` on the pairs ``i, j [p]``, ``d [p, 3]`` (Å; those at or beyond ``ff.cutoff``
    give nothing, module docstring).

    Reads nothing to the host: ``energy`` is the 0-d sum on the backend of ``d`` (a NumPy float64
    on NumPy), read with :func:`md_gpu.backend.host_scalar` where a host number is needed.
    """
    xp = array_module(d)
    energies, dE_dd = ff.evaluate(types, i, j, d, xp=xp)
    forces, virial, virials = forces_and_virial(i, j, d, dE_dd, types.shape[0], xp, per_atom=per_atom)
    return ForceResult(energies.sum(), energies, forces, virial, virials)
