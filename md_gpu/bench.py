"""Speed of the MD loop: atom-steps per second for a force field and a structure (NVE, velocity Verlet).

Used by ``multiscale md bench`` and ``benchmarks/md_speed.py``. The first
``warmup`` steps (neighbour list, kernel compilation on a GPU) are not timed;
on CuPy the device is synchronised before reading the clock. The device-to-host reads of the
timed steps are counted through :data:`md_gpu.backend.SYNCS` (on NumPy too: the reads the same code
makes on a GPU) and reported per step.
"""
from __future__ import annotations

import time

from .backend import SYNCS, get_backend
from .integrators import make_force_fn, velocity_verlet
from .neighbors import NeighborList
from .state import from_atoms, maxwell_boltzmann


def _sync(xp):
    if xp.__name__.startswith("cupy"):
        xp.cuda.Device().synchronize()


def benchmark(ff, atoms, *, steps: int = 100, warmup: int = 5, temperature_K: float = 300.0, dt_fs: float = 1.0,
              skin_A: float = 1.0, xp=None) -> dict:
    """``{"n_atoms", "steps", "seconds", "atom_steps_per_s", "backend", "neighbor_builds", "syncs_per_step"}``
    for ``steps`` timed steps (``syncs_per_step``: host reads per step, rebuilds included)."""
    xp = xp or get_backend()
    state = maxwell_boltzmann(from_atoms(atoms, species=ff.species, xp=xp), temperature_K, seed=0)
    nl = NeighborList(ff.cutoff, skin_A, state.pbc)
    init, step = velocity_verlet(make_force_fn(ff, nl), dt_fs)
    md = init(state)
    for _ in range(warmup):
        md = step(md)
    _sync(xp)
    start = time.perf_counter()
    builds = nl.n_builds
    SYNCS.reset()
    for _ in range(steps):
        md = step(md)
    syncs = SYNCS.reset()
    _sync(xp)
    seconds = time.perf_counter() - start
    return {"n_atoms": state.n_atoms, "steps": steps, "seconds": seconds,
            "atom_steps_per_s": state.n_atoms * steps / seconds, "backend": xp.__name__,
            "neighbor_builds": nl.n_builds - builds, "syncs_per_step": syncs / steps}
