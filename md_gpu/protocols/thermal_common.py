"""Pieces shared by the heat-transport protocols (HNEMD, NEMD, interface NEMD).

* geometry: the transport axis (periodic, orthorhombic cell), the conductor's volume, fractional
  coordinates along the axis;
* :func:`production`: NPT equilibration in the plane (zero stress at T,
  :func:`md_gpu.protocols.common.equilibrate`), then the settings of the production run at that cell;
* :func:`run_production`: the production stages with per-atom virials (heat currents), an optional
  external per-atom force (HNEMD) and :data:`THERMAL_BLOWUP` (a run hotter than 2 x its
  temperature has blown up: with a thermostat on, that heat is energy the potential releases
  outside its training data, and its heat current would be meaningless);
* checkpoints: with an ``out_prefix`` and ``settings.checkpoint_every``, the equilibration and the
  production checkpoint to ``<out_prefix>.equilibrate.ckpt.npz`` and ``<out_prefix>.production.ckpt.npz``,
  the observers' accumulators included (:func:`block_sums_arrays`), and ``resume`` continues from them
  to the result of an uninterrupted run;
* output: the HDF5 record of a run, downsampled series.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..analysis import BlockSums
from ..backend import to_numpy
from ..cell_control import axis_index
from ..errors import MDSetupError
from ..io import write_run_h5
from ..simulation import BlowUpGuard
from ..state import State
from .common import RunSettings, checkpoint_file, equilibrate, simulation

SERIES_POINTS = 500  # running-average points stored in the HDF5 file (an attribute: keep it small)
THERMAL_OVERHEAT_FACTOR = 2.0  # a heat-transport run hotter than this x max(T, 1 K) has blown up


def transport_axis(state: State, direction) -> int:
    """Axis index of ``direction``; :class:`MDSetupError` unless periodic in an orthorhombic cell."""
    k = axis_index(direction)
    if not state.pbc[k]:
        raise MDSetupError(f"direction {direction!r} is not periodic in this cell; heat flows along a periodic axis")
    cell = state.cell
    if np.abs(cell - np.diag(np.diag(cell))).max() > 1e-9:
        raise MDSetupError("thermal protocols need an orthorhombic cell")
    return k


def transport_volume(state: State, thickness_A: float | None) -> float:
    """Volume (Å^3) of the conductor: area x ``thickness_A`` for a sheet, the cell volume for bulk."""
    lengths = np.diag(state.cell)
    if state.pbc[2]:
        return float(np.prod(lengths))
    if not thickness_A or thickness_A <= 0:
        raise MDSetupError("a 2D sheet needs thickness_A (effective thickness in Å, e.g. 3.35) "
                           "to turn heat currents into a conductivity")
    return float(lengths[0] * lengths[1] * thickness_A)


def fractions(state: State, k: int, origin_A: float = 0.0) -> np.ndarray:
    """Fractional coordinate [n] in [0, 1) along axis ``k``, measured from ``origin_A`` (Å)."""
    length = float(state.cell[k, k])
    x = to_numpy(state.positions)[:, k] - origin_A
    return np.mod(x / length, 1.0)


def fit_line(x, y) -> tuple[float, float]:
    """Slope and intercept of a least-squares straight line through (x, y)."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(slope), float(intercept)


def production(ff, atoms_or_state, settings: RunSettings, log, *, out_prefix=None, resume: bool = False):
    """Equilibrated state (NPT in the plane, zero stress) and the settings of the production run
    (``seed + 1``). ``out_prefix``: checkpoints ``<out_prefix>.equilibrate.ckpt.npz`` (with
    ``settings.checkpoint_every``); ``resume``: continue from them (:func:`~.common.simulation`)."""
    eq = equilibrate(ff, atoms_or_state, settings, log=log, checkpoint=checkpoint_file(out_prefix, "equilibrate"),
                     resume=resume)
    return eq.md.state, dataclasses.replace(settings, seed=settings.seed + 1)


def thermal_blowup(settings: RunSettings) -> BlowUpGuard:
    """The blow-up guard of a heat-transport run at ``settings.temperature_K`` (every stage, baths included)."""
    return BlowUpGuard(overheat_factor=THERMAL_OVERHEAT_FACTOR, floor_K=1.0, target_K=settings.temperature_K)


def run_production(ff, state: State, settings: RunSettings, stages, log, *, external_force=None, out_prefix=None,
                   resume: bool = False):
    """Run ``stages`` with per-atom virials (and ``external_force``, see :class:`md_gpu.simulation.Simulation`)
    under :func:`thermal_blowup`; returns the :class:`md_gpu.simulation.RunResult`. ``out_prefix``:
    checkpoints ``<out_prefix>.production.ckpt.npz`` (with ``settings.checkpoint_every``; the observers'
    accumulators go with them); ``resume``: continue from them (:func:`~.common.simulation`)."""
    sim = simulation(ff, state, settings, log=log, per_atom=True, external_force=external_force,
                     blowup=thermal_blowup(settings), checkpoint=checkpoint_file(out_prefix, "production"),
                     resume=resume)
    return sim.run(stages)


def block_sums_arrays(blocks: BlockSums) -> dict:
    """The state of a :class:`md_gpu.analysis.BlockSums` as NumPy arrays (for a checkpoint): ``k``,
    ``counts`` [blocks] and per quantity its sums [blocks, ...] (0 in blocks not reached yet)."""
    out = {"k": np.array(blocks.k), "counts": blocks.counts.copy()}
    for name, sums in blocks.sums.items():
        values = [np.asarray(to_numpy(v), dtype=float) for v in sums]
        shape = max((v.shape for v in values), key=len)
        out[f"sums.{name}"] = np.stack([np.broadcast_to(v, shape) for v in values])
    return out


def restore_block_sums(blocks: BlockSums, arrays: dict, xp) -> None:
    """Put the state of :func:`block_sums_arrays` back into ``blocks`` (sums on the backend ``xp``); a block
    not reached yet holds the plain 0.0 it starts with, so the sums go on exactly as without the break."""
    blocks.k = int(arrays["k"])
    blocks.counts = np.array(arrays["counts"], dtype=float)
    blocks.sums = {}
    for key, stacked in arrays.items():
        if key.startswith("sums."):
            blocks.sums[key[len("sums."):]] = [
                (xp.asarray(v) if v.ndim else float(v)) if n > 0 else 0.0 for v, n in zip(stacked, blocks.counts)]


def downsample(x, n: int = SERIES_POINTS) -> list:
    """Every ``ceil(len / n)``-th value of ``x`` (ending with the last full stride), as a list."""
    x = np.asarray(x, dtype=float)
    step = max(1, int(np.ceil(x.size / n)))
    return x[step - 1::step].tolist()


def write_h5(out_prefix, run, record: dict, properties: dict, extra: dict) -> str | None:
    """``<out_prefix>.h5`` with the thermo table, ``record`` as settings and properties + extra as results."""
    if out_prefix is None:
        return None
    return str(write_run_h5(f"{out_prefix}.h5", thermo=run.thermo, settings=record,
                            results={**properties, **extra}))
