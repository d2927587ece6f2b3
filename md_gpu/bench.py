"""Speed of the MD loop: atom-steps per second for a force field and a structure (NVE, velocity Verlet).

Used by ``multiscale md bench`` and ``benchmarks/md_speed.py``. The steps run through
:class:`md_gpu.simulation.Simulation` (one NVE stage, one thermo row at its end, no collapse guard: a
potential with random parameters, timed for its cost, may release energy), so that
``check_every`` > 1 times the loop with deferred neighbour-list checks (:mod:`md_gpu.neighbors`). The
first ``warmup`` steps (neighbour list, kernel compilation on a GPU) are not timed; on CuPy the device
is synchronised before reading the clock. The device-to-host reads of the timed steps are counted
through :data:`md_gpu.backend.SYNCS` (on NumPy too: the reads the same code makes on a GPU) and
reported per step.
"""
from __future__ import annotations

import math
import time

from .backend import SYNCS, get_backend
from .simulation import BlowUpGuard, Simulation, Stage
from .state import from_atoms, maxwell_boltzmann


def _sync(xp):
    if xp.__name__.startswith("cupy"):
        xp.cuda.Device().synchronize()


class _StartClock:
    """Stage observer: after step ``warmup`` synchronise, start the clock and the read count (once; it
    has ``mark``/``rewind`` so that a stage with deferred checks keeps them)."""

    def __init__(self, warmup: int, xp, nlist):
        self.warmup, self.xp, self.nlist = warmup, xp, nlist
        self.start = self.builds = self.overflows = None

    def __call__(self, md):
        if md.step >= self.warmup and self.start is None:
            self.begin()

    def begin(self) -> None:
        _sync(self.xp)
        self.builds, self.overflows = self.nlist.n_builds, self.nlist.n_overflows
        SYNCS.reset()
        self.start = time.perf_counter()

    def mark(self):
        return None

    def rewind(self, token) -> None:
        pass


def benchmark(ff, atoms, *, steps: int = 100, warmup: int = 5, temperature_K: float = 300.0, dt_fs: float = 1.0,
              skin_A: float = 1.0, check_every: int = 1, padded: bool | None = None, xp=None) -> dict:
    """``{"n_atoms", "steps", "seconds", "atom_steps_per_s", "backend", "neighbor_builds", "syncs_per_step",
    "check_every", "replays", "overflows"}`` for ``steps`` timed steps (``syncs_per_step``: host reads per
    step, rebuilds and the final thermo row included; ``check_every``: steps between neighbour-list checks,
    ``replays``: intervals replayed because the list went stale or a padded build overflowed, ``overflows``:
    those padded builds). ``padded``: the neighbour list's choice of builder at deferred checks
    (:class:`md_gpu.neighbors.NeighborList`; None: padded on a device)."""
    xp = xp or get_backend()
    state = maxwell_boltzmann(from_atoms(atoms, species=ff.species, xp=xp), temperature_K, seed=0)
    sim = Simulation(ff, state, dt_fs=dt_fs, skin_A=skin_A, thermo_every=warmup + steps,
                     neighbor_check_every=check_every, log=lambda line: None, progress_every_s=math.inf,
                     blowup=BlowUpGuard(collapse_eV_per_atom=math.inf))
    sim.nlist.padded = padded
    clock = _StartClock(warmup, xp, sim.nlist)
    if warmup <= 0:  # the observers see step 1 first: the clock then includes the first force call and list
        clock.begin()
    sim.run([Stage("nve", warmup + steps, observers=(clock,))])
    syncs = SYNCS.reset()
    _sync(xp)
    seconds = time.perf_counter() - clock.start
    return {"n_atoms": state.n_atoms, "steps": steps, "seconds": seconds,
            "atom_steps_per_s": state.n_atoms * steps / seconds, "backend": xp.__name__,
            "neighbor_builds": sim.nlist.n_builds - clock.builds, "syncs_per_step": syncs / steps,
            "check_every": check_every, "replays": sim.n_replays, "overflows": sim.nlist.n_overflows - clock.overflows}
