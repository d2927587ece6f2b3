"""Pieces shared by the protocols: run settings and the lists of choices, barostat stiffness, equilibration.

The lists of choices (:data:`THERMOSTATS`, :data:`TRANSVERSE`, :data:`GRADIENTS`) are defined here
once; callers that validate settings (the md stage, the command line) import them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..backend import get_backend, to_numpy
from ..cell_control import Barostat, scale_axes
from ..errors import MDSetupError
from ..forcefields.base import compute_forces
from ..integrators import Bussi, Langevin
from ..neighbors import NeighborList
from ..simulation import Simulation, Stage
from ..state import State, from_atoms, maxwell_boltzmann, volume
from ..units import EV_PER_A3_TO_GPA

THERMOSTATS = ("bussi", "langevin")  # RunSettings.thermostat
TRANSVERSE = ("stress", "strain")    # tensile(transverse=): uniaxial stress | fixed transverse length
GRADIENTS = ("baths", "fit")         # nemd(gradient=): bath temperature difference | fit of the profile


@dataclass
class RunSettings:
    """Settings shared by the protocols (units in the names).

    temperature_K; dt_fs; thermostat: 'bussi' | 'langevin'; thermostat_tau_fs (Bussi
    time constant or Langevin damping time); barostat_tau_fs; barostat_stochastic
    (stochastic cell rescaling, else Berendsen); equilibrate_steps; thermo_every,
    traj_every, checkpoint_every (steps, 0 = never); skin_A; seed; failure_min_strain
    (a tensile sample counts as failed only past this strain: below it, thermal noise of a small
    cell can fake a stress drop); neighbor_check_every (steps between neighbour-list checks,
    :class:`md_gpu.simulation.Simulation`).

    The defaults are for direct use of the Python API (scripts, tests); a case run builds RunSettings
    with every field given from its own settings table (``md_gpu.md_stage``), whose defaults govern.
    """

    temperature_K: float = 300.0
    dt_fs: float = 1.0
    thermostat: str = "bussi"
    thermostat_tau_fs: float = 100.0
    barostat_tau_fs: float = 500.0
    barostat_stochastic: bool = True
    equilibrate_steps: int = 10000
    thermo_every: int = 10
    traj_every: int = 0
    checkpoint_every: int = 0
    skin_A: float = 1.0
    seed: int = 0
    failure_min_strain: float = 0.02
    neighbor_check_every: int = 1

    def __post_init__(self):
        if self.thermostat not in THERMOSTATS:
            raise MDSetupError(f"thermostat: {self.thermostat!r} is not one of {', '.join(THERMOSTATS)}")
        if self.temperature_K < 0:
            raise MDSetupError(f"temperature_K={self.temperature_K} must be >= 0 K")

    def make_thermostat(self):
        if self.thermostat == "bussi":
            return Bussi(self.temperature_K, self.thermostat_tau_fs)
        return Langevin(self.temperature_K, self.thermostat_tau_fs)

    def as_dict(self) -> dict:
        return asdict(self)


def in_plane_axes(state: State) -> tuple:
    """The periodic axes (x, y for a 2D sheet; x, y, z for a bulk cell)."""
    return tuple("xyz"[k] for k in range(3) if state.pbc[k])


def estimate_modulus(ff, state: State, axes, *, strain: float = 0.002) -> float:
    """Stiffness ``d sigma_kk / d eps_kk`` (GPa) of the cell as simulated, the smallest over ``axes``.

    Two static force calls per axis (affine strain, no relaxation); used to set the barostat's B.
    """
    values = []
    for axis in axes:
        k = "xyz".index(axis)
        sig = []
        for sign in (1, -1):
            mu = np.ones(3)
            mu[k] += sign * strain
            s = scale_axes(state, mu)
            nl = NeighborList(ff.cutoff, 0.0, s.pbc)
            nl.build(s.positions, s.cell)
            res = compute_forces(ff, s.positions, s.cell, s.types, nl)
            sig.append(-float(to_numpy(res.virial)[k, k]) / volume(s.cell) * EV_PER_A3_TO_GPA)
        values.append((sig[0] - sig[1]) / (2 * strain))
    modulus = min(values)
    if not modulus > 0:
        raise MDSetupError(f"the cell is not stable under stretching along {axes} (stiffness {modulus:.3g} GPa); "
                           "check the structure and the potential")
    return modulus


def prepare_state(ff, atoms_or_state, settings: RunSettings, *, xp=None) -> State:
    """A State on the backend with Maxwell-Boltzmann velocities at ``2 T`` (equipartition halves it)."""
    xp = xp or get_backend()
    state = atoms_or_state if isinstance(atoms_or_state, State) else from_atoms(atoms_or_state,
                                                                                species=ff.species, xp=xp)
    return maxwell_boltzmann(state, 2.0 * settings.temperature_K, seed=settings.seed)


def barostat_for(ff, state: State, axes, settings: RunSettings) -> Barostat | None:
    if not axes:
        return None
    return Barostat(axes, tau_fs=settings.barostat_tau_fs, modulus_GPa=estimate_modulus(ff, state, axes),
                    stochastic=settings.barostat_stochastic, temperature_K=settings.temperature_K,
                    pbc=state.pbc)


def checkpoint_file(prefix, part: str) -> str | None:
    """``<prefix>.<part>.ckpt.npz``: the checkpoint of the sub-run ``part`` of a protocol (None without a
    ``prefix``). A protocol made of several runs (an equilibration, then strained cells, ...) gives each
    its own, so a resumed protocol replays its finished runs from their last checkpoints and continues
    the interrupted one."""
    return None if prefix is None else f"{prefix}.{part}.ckpt.npz"


def simulation(ff, state: State, settings: RunSettings, *, out_prefix=None, checkpoint=None, resume: bool = False,
               log=print, extrapolation=None, per_atom: bool = False, external_force=None, observers=(),
               blowup=None):
    """A :class:`Simulation` with the intervals of ``settings``: trajectory ``<out_prefix>.extxyz``, checkpoints
    every ``settings.checkpoint_every`` steps and at the end of every stage to ``checkpoint`` (default
    ``<out_prefix>.ckpt.npz``; neither: no trajectory, no checkpoints, e.g. the short runs of
    :func:`elastic_constants` called without a prefix). ``resume``: continue from that checkpoint when it
    exists (:meth:`Simulation.resume`; ``state`` is then the saved one), else start from ``state``.
    ``per_atom``, ``external_force``, ``observers``, ``blowup``: as :class:`Simulation`."""
    traj = f"{out_prefix}.extxyz" if out_prefix and settings.traj_every else None
    if checkpoint is None and out_prefix:
        checkpoint = f"{out_prefix}.ckpt.npz"
    ckpt = checkpoint if settings.checkpoint_every else None
    options = dict(dt_fs=settings.dt_fs, skin_A=settings.skin_A, thermo_every=settings.thermo_every,
                   traj_every=settings.traj_every if traj else 0, traj_path=traj,
                   checkpoint_every=settings.checkpoint_every if ckpt else 0, checkpoint_path=ckpt,
                   extrapolation=extrapolation, log=log, per_atom=per_atom, external_force=external_force,
                   observers=observers, blowup=blowup, neighbor_check_every=settings.neighbor_check_every)
    if resume and ckpt and Path(ckpt).is_file():
        return Simulation.resume(options.pop("checkpoint_path"), ff, **options)
    return Simulation(ff, state, seed=settings.seed, **options)


def equilibrate(ff, atoms_or_state, settings: RunSettings, *, barostat_axes=None, log=print, checkpoint=None,
                resume: bool = False):
    """NVT (or NPT on ``barostat_axes``, default: the periodic axes) at ``settings.temperature_K``;
    ``checkpoint``, ``resume``: as :func:`simulation`.

    Returns the :class:`md_gpu.simulation.RunResult` (final state in ``result.md.state``).
    """
    state = prepare_state(ff, atoms_or_state, settings)
    axes = in_plane_axes(state) if barostat_axes is None else tuple(barostat_axes)
    stage = Stage("equilibrate", settings.equilibrate_steps, thermostat=settings.make_thermostat(),
                  barostat=barostat_for(ff, state, axes, settings))
    return simulation(ff, state, settings, checkpoint=checkpoint, resume=resume, log=log).run([stage])
