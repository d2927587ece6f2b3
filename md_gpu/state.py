"""MD state: positions, velocities, types, masses and cell as device arrays.

A :class:`State` is immutable by convention: integrators return a new state
(``dataclasses.replace``); only kernels write into preallocated buffers.
Arrays live on the backend of the run (NumPy or CuPy, see :mod:`md_gpu.backend`), except the
cell: 9 numbers that the host-side cell control (deformation, barostat) changes every step and
the neighbour list reads every step, so it is always a host NumPy array (a device cell given to
:class:`State` is copied to the host once) and reading it costs no device synchronisation.

Fields (``n`` atoms, ASE units, see :mod:`md_gpu.units`):

=============  =========  =========================================================
positions      [n, 3]     Cartesian positions (Å), not wrapped between list rebuilds
velocities     [n, 3]     velocities (Å per ASE time unit)
masses         [n]        masses (amu)
types          [n] int    0-based species index into ``species``
cell           [3, 3]     cell vectors as rows (Å), host NumPy float64; orthorhombic or triclinic
pbc            (3,) bool  periodic along each cell vector (2D sheet: True, True, False)
species        tuple      element symbol of each type
=============  =========  =========================================================
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from common.arrays import array_module

from .backend import host_scalar, to_numpy
from .errors import MDSetupError
from .units import KB


@dataclass(frozen=True)
class State:
    """One MD configuration; see the module docstring for shapes and units."""

    positions: object
    velocities: object
    masses: object
    types: object
    cell: object
    pbc: tuple
    species: tuple

    def __post_init__(self):
        if not isinstance(self.cell, np.ndarray) or self.cell.dtype != np.float64:
            object.__setattr__(self, "cell", np.asarray(to_numpy(self.cell), dtype=np.float64))

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    def replace(self, **changes) -> "State":
        return dataclasses.replace(self, **changes)


def volume(cell) -> float:
    """Cell volume (Å^3) of a [3, 3] cell (rows = vectors)."""
    return float(abs(np.linalg.det(to_numpy(cell))))


def from_atoms(atoms: Atoms, *, species: tuple | None = None, xp=np) -> State:
    """State from an :class:`ase.Atoms` (velocities from its momenta, zero if unset).

    ``species`` fixes the type order (e.g. the potential's); default: sorted unique symbols.
    """
    symbols = atoms.get_chemical_symbols()
    species = tuple(species) if species is not None else tuple(sorted(set(symbols)))
    unknown = sorted(set(symbols) - set(species))
    if unknown:
        raise MDSetupError(f"structure has species {unknown} that the potential does not know "
                           f"(potential species: {list(species)}); use a potential fitted for them")
    index = {s: k for k, s in enumerate(species)}
    types = np.array([index[s] for s in symbols], dtype=np.int64)
    masses = atoms.get_masses().astype(np.float64)
    velocities = atoms.get_velocities()
    velocities = np.zeros((len(atoms), 3)) if velocities is None else velocities
    return State(positions=xp.asarray(atoms.positions, dtype=xp.float64),
                 velocities=xp.asarray(velocities, dtype=xp.float64),
                 masses=xp.asarray(masses), types=xp.asarray(types),
                 cell=np.array(atoms.cell, dtype=np.float64),
                 pbc=tuple(bool(p) for p in atoms.pbc), species=species)


def to_atoms(state: State) -> Atoms:
    """An :class:`ase.Atoms` copy of the state on the host (velocities set)."""
    symbols = [state.species[t] for t in to_numpy(state.types)]
    atoms = Atoms(symbols, positions=to_numpy(state.positions), cell=state.cell,
                  pbc=state.pbc, masses=to_numpy(state.masses))
    atoms.set_velocities(to_numpy(state.velocities))
    return atoms


def species_masses(species) -> np.ndarray:
    """Standard atomic masses (amu) of element symbols."""
    try:
        return np.array([atomic_masses[atomic_numbers[s]] for s in species])
    except KeyError as exc:
        raise MDSetupError(f"unknown element symbol {exc.args[0]!r}") from None


def kinetic_energy_array(state: State):
    """Total kinetic energy (eV) as a 0-d array on the state's backend (no device-to-host read)."""
    v = state.velocities
    return 0.5 * (state.masses[:, None] * v * v).sum()


def kinetic_energy(state: State) -> float:
    """Total kinetic energy (eV), read to the host (:func:`md_gpu.backend.host_scalar`, one counted read)."""
    return host_scalar(kinetic_energy_array(state))


def degrees_of_freedom(state: State) -> int:
    """3 n - 3: the centre-of-mass momentum is removed and conserved."""
    return 3 * state.n_atoms - 3


def temperature(state: State, ke: float | None = None) -> float:
    """Instantaneous kinetic temperature (K) over :func:`degrees_of_freedom`; ``ke`` (eV): the kinetic
    energy when the caller has read it already (else :func:`kinetic_energy`)."""
    return 2.0 * (kinetic_energy(state) if ke is None else ke) / (degrees_of_freedom(state) * KB)


def maxwell_boltzmann(state: State, temperature_K: float, *, seed: int) -> State:
    """Velocities drawn at ``temperature_K`` (seeded), zero total momentum, rescaled to exactly T."""
    xp = array_module(state.positions)
    rng = np.random.default_rng(seed)
    masses = to_numpy(state.masses)
    v = rng.standard_normal((state.n_atoms, 3)) * np.sqrt(KB * temperature_K / masses)[:, None]
    v -= (masses[:, None] * v).sum(0) / masses.sum()
    new = state.replace(velocities=xp.asarray(v))
    if temperature_K > 0:
        t = temperature(new)
        new = new.replace(velocities=new.velocities * np.sqrt(temperature_K / t))
    return new


def wrap(state: State):
    """Positions folded into the cell along the periodic directions ([n, 3], Å)."""
    xp = array_module(state.positions)
    frac = state.positions @ xp.asarray(np.linalg.inv(state.cell))
    mask = xp.asarray(np.array(state.pbc, dtype=bool))
    frac = xp.where(mask[None, :], frac - xp.floor(frac), frac)
    return frac @ xp.asarray(state.cell)
