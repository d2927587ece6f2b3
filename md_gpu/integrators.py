"""Integrators: velocity Verlet with thermostat half-steps around it, as ``(init_fn, step_fn)``.

Every ensemble uses the same velocity-Verlet step, with the thermostat's
O step (friction + noise, or rescaling) at the end of it::

    B  v += dt/2 F/m          M  cell modifiers      F  forces at the new r, cell
    A  r += dt v              B  v += dt/2 F/m       O  thermostat (dt)

With no thermostat this is plain velocity Verlet (NVE). ``M`` are cell
modifiers (deformation at a strain rate, barostat; :mod:`md_gpu.cell_control`)
that change the cell and map the positions affinely before the forces are
computed, so no extra force call is needed.

* Bussi stochastic velocity rescaling (canonical) [2]; the heat it exchanges
  is accumulated in ``MDState.heat`` so ``E_total - heat`` is conserved.
* Langevin: ``v <- c v + sqrt((1 - c^2) kT/m) xi``, ``c = exp(-gamma dt)``, then the
  centre-of-mass velocity is removed (momentum stays zero, 3n - 3 degrees of freedom);
  velocity Verlet followed by this O step is the Langevin integrator of Bussi &
  Parrinello [3] (OBABO with the two half O steps merged).

Why the O step sits at the end (where the kinetic energy is recorded) for both
thermostats: the velocities there then have the exact Maxwell-Boltzmann
distribution for a harmonic system at any time step, so the kinetic temperature
has no time-step bias. The BAOAB splitting of [1] (O in the middle) samples
positions more accurately but records velocities whose variance is low by
``(omega dt / 2)^2``: measured on graphene at 1 fs (120 atoms, 20 ps) it gave
297.5 +- 0.5 K for a 300 K target, against 300.4 +- 1.1 K for Bussi here.

Reproducible with a seed: the random numbers come from one generator of the
run's backend created from the seed; checkpoints store its state (:func:`rng_state`; NumPy only).

No host reads: the thermostats work on 0-d arrays of the run's backend (kinetic energy, the
Bussi factor and its sign, the heat), so a thermostatted step reads nothing from the device; the
Bussi draws are the same calls of the same generator as in a host computation (on NumPy the
stream and the numbers are unchanged; :attr:`MDState.heat` is then a 0-d array). :func:`stress_array`
sums the virial and kinetic stress on the device; the barostat reads it with its noise in one
:func:`md_gpu.backend.to_host`.

[1] B. Leimkuhler, C. Matthews, Appl. Math. Res. Express 2013, 34 (2013).
[2] G. Bussi, D. Donadio, M. Parrinello, J. Chem. Phys. 126, 014101 (2007).
[3] G. Bussi, M. Parrinello, Phys. Rev. E 75, 056707 (2007).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from common.arrays import array_module
from .errors import MDSetupError
from .forcefields.base import ForceResult
from .state import State, degrees_of_freedom, kinetic_energy_array, volume
from .units import EV_PER_A3_TO_GPA, FS, KB


@dataclass(frozen=True)
class MDState:
    """Integrator state: the configuration, its forces and bookkeeping.

    state: :class:`State`; result: :class:`ForceResult` at ``state``; step: int;
    time_fs: float (fs); heat: float or 0-d array on the run's backend (eV, energy taken out by the
    thermostat, so ``potential + kinetic + heat`` is conserved); rng: random generator.
    """

    state: State
    result: ForceResult
    step: int = 0
    time_fs: float = 0.0
    heat: float = 0.0
    rng: object = None

    def replace(self, **changes) -> "MDState":
        return dataclasses.replace(self, **changes)


def make_rng(seed: int, xp=np, *, state: dict | None = None):
    """A seeded random generator on the backend ``xp``, set to ``state`` (from :func:`rng_state`) if given."""
    if xp.__name__.startswith("cupy"):
        return xp.random.default_rng(seed)  # no state to set: see rng_state
    rng = np.random.default_rng(seed)
    if state is not None:
        rng.bit_generator.state = state
    return rng


def rng_state(rng) -> dict | None:
    """The state of a NumPy generator as a JSON-able dict (for checkpoints); None for a CuPy generator,
    whose cuRAND state is not exported (a resumed CuPy run restarts its random stream from the seed)."""
    state = getattr(getattr(rng, "bit_generator", None), "state", None)
    return state if isinstance(state, dict) else None


def stress_array(md: MDState):
    """Virial + kinetic stress [3, 3] (GPa, ASE sign: positive = tensile) on the run's backend (not read)."""
    s = md.state
    kin = (s.masses[:, None, None] * s.velocities[:, :, None] * s.velocities[:, None, :]).sum(0)
    return -(md.result.virial + kin) / volume(s.cell) * EV_PER_A3_TO_GPA


class Bussi:
    """Canonical velocity rescaling [2] at ``temperature_K`` with time constant ``tau_fs``."""

    rewindable = True  # no state of its own (the random stream and the heat are the MDState's): a replay repeats it

    def __init__(self, temperature_K: float, tau_fs: float):
        if temperature_K < 0 or tau_fs <= 0:
            raise MDSetupError(f"Bussi thermostat: temperature_K={temperature_K} must be >= 0 and "
                               f"tau_fs={tau_fs} > 0")
        self.temperature_K = float(temperature_K)
        self.tau_fs = float(tau_fs)

    def end(self, md: MDState, dt_fs: float) -> MDState:
        """Rescale the velocities by the factor of [2], on the run's backend (no host read).

        A state at rest (kinetic energy 0) is left as it is, after the same two draws."""
        s = md.state
        xp = array_module(s.velocities)
        ndf = degrees_of_freedom(s)
        ke0 = kinetic_energy_array(s)
        moving = ke0 > 0
        ke = xp.where(moving, ke0, 1.0)  # at rest: any positive value, the result is discarded
        ke_target = 0.5 * ndf * KB * self.temperature_K
        c = np.exp(-dt_fs / self.tau_fs)
        rng = md.rng
        r1 = rng.standard_normal()
        # sum of ndf-1 squared normals = chi-square with ndf-1 dof = 2 * Gamma((ndf-1)/2)
        sum_r2 = 2.0 * rng.standard_gamma((ndf - 1) / 2.0) if ndf > 1 else 0.0
        ke_new = (ke + (1 - c) * (ke_target * (r1 * r1 + sum_r2) / ndf - ke)
                  + 2.0 * r1 * xp.sqrt(c * (1 - c) * ke_target / ndf * ke))
        alpha = xp.sqrt(xp.maximum(ke_new, 0.0) / ke)
        with np.errstate(divide="ignore"):  # ke_target = 0 (a 0 K bath): the sign test is +inf
            flip = r1 + xp.sqrt(c * ndf * ke / ((1 - c) * ke_target)) < 0  # sign of alpha, eq. (A8) of [2]
        alpha = xp.where(moving, xp.where(flip, -alpha, alpha), 1.0)
        ke_new = xp.where(moving, ke_new, ke0)
        return md.replace(state=s.replace(velocities=s.velocities * alpha), heat=md.heat + ke0 - ke_new)


class Langevin:
    """Langevin thermostat (O step at the end of velocity Verlet, [3]) at ``temperature_K``, friction ``1/damping_fs``."""

    rewindable = True  # as Bussi

    def __init__(self, temperature_K: float, damping_fs: float):
        if temperature_K < 0 or damping_fs <= 0:
            raise MDSetupError(f"Langevin thermostat: temperature_K={temperature_K} must be >= 0 and "
                               f"damping_fs={damping_fs} > 0")
        self.temperature_K = float(temperature_K)
        self.damping_fs = float(damping_fs)

    def end(self, md: MDState, dt_fs: float) -> MDState:
        s = md.state
        xp = array_module(s.velocities)
        c = np.exp(-dt_fs / self.damping_fs)
        sigma = xp.sqrt((1 - c * c) * KB * self.temperature_K / s.masses)[:, None]
        ke_old = kinetic_energy_array(s)
        v = c * s.velocities + sigma * md.rng.standard_normal(s.velocities.shape)
        # Project out the centre-of-mass velocity (the noise's share of it): the process then
        # samples the canonical distribution on the 3n - 3 degrees of freedom that the
        # temperature counts, and total momentum stays zero as in the other ensembles.
        m = s.masses[:, None]
        v = v - (m * v).sum(0) / s.masses.sum()
        new = s.replace(velocities=v)
        return md.replace(state=new, heat=md.heat + ke_old - kinetic_energy_array(new))


def velocity_verlet(force_fn: Callable[[State], ForceResult], dt_fs: float, *, thermostat=None,
                    modifiers: Sequence = ()):
    """Return ``(init_fn, step_fn)`` for one ensemble.

    force_fn(state) -> ForceResult (updates its neighbour list itself); dt_fs (fs);
    thermostat: None (NVE), :class:`Bussi` or :class:`Langevin` (any object with ``end(md, dt_fs) -> MDState``); modifiers: objects
    with ``apply(md, dt_fs) -> State`` that change the cell (see ``cell_control``).
    ``init_fn(state, *, seed, step=0, time_fs=0.0) -> MDState``; ``step_fn(md) -> MDState``.
    """
    if dt_fs <= 0:
        raise MDSetupError(f"time step dt_fs={dt_fs} must be > 0 fs")
    dt = dt_fs * FS
    end = getattr(thermostat, "end", None)

    def init_fn(state: State, *, seed: int = 0, step: int = 0, time_fs: float = 0.0, heat: float = 0.0,
                rng=None) -> MDState:
        rng = rng if rng is not None else make_rng(seed, array_module(state.positions))
        return MDState(state, force_fn(state), step=step, time_fs=time_fs, heat=heat, rng=rng)

    def step_fn(md: MDState) -> MDState:
        s = md.state
        inv_m = (1.0 / s.masses)[:, None]
        v = s.velocities + 0.5 * dt * md.result.forces * inv_m
        md = md.replace(state=s.replace(positions=s.positions + dt * v, velocities=v))
        for modifier in modifiers:
            md = md.replace(state=modifier.apply(md, dt_fs))
        s = md.state
        result = force_fn(s)
        s = s.replace(velocities=s.velocities + 0.5 * dt * result.forces * inv_m)
        md = md.replace(state=s, result=result, step=md.step + 1, time_fs=md.time_fs + dt_fs)
        if end is not None:
            md = end(md, dt_fs)
        return md

    return init_fn, step_fn


def make_force_fn(ff, nlist, *, per_atom: bool = False, external_force=None) -> Callable[[State], ForceResult]:
    """``force_fn(state)``: update ``nlist`` if needed, then evaluate ``ff`` (see forcefields.base).

    per_atom: also per-atom energies and virials; external_force: None or
    ``external_force(state, result) -> [n, 3]`` (eV/Å), added to ``result.forces`` (the energy and
    virial stay those of ``ff``). One host read per call on a step without a rebuild
    (``compute_forces(..., md_step=True)``); the energy is not read.
    """
    from .forcefields.base import compute_forces

    def force_fn(state: State) -> ForceResult:
        result = compute_forces(ff, state.positions, state.cell, state.types, nlist, per_atom=per_atom,
                                md_step=True)
        if external_force is None:
            return result
        return dataclasses.replace(result, forces=result.forces + external_force(state, result))

    return force_fn
