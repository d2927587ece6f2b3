"""Thermal conductivity by homogeneous non-equilibrium MD (HNEMD).

Method (Fan et al., PRB 99, 064308 (2019)): a driving force ``F_e`` (1/Å) adds
``F_i^ext = W_i^T F_e - <W^T F_e>`` to every atom (:func:`.thermal_current.driving_forces`, passed
to the Simulation as its external per-atom force), so that the power it injects is
``sum_i v_i . F_i^ext = F_e . J_pot``. The convective term ``E_i F_e`` of the paper is left out (as in
GPUMD; negligible in a solid) so the force depends on positions only and velocity Verlet stays
exact. A global thermostat (``settings.thermostat``; the paper: Nosé-Hoover chain) holds T. Linear
response gives ``kappa_mu_nu = <J_mu> / (T V F_e,nu)``; ``V`` = cell area x ``thickness_A`` for a
sheet. The heat current J (eV Å/fs) of every step is recorded by an observer.

Sequence: NPT in the plane at T (``settings.equilibrate_steps``), then ``production_steps`` at that
cell with the driving force. Uncertainty: the larger of the block sem (``n_blocks`` consecutive
blocks of one run) and the Green-Kubo noise floor :func:`fluctuation_sem`; seeds are combined by
the caller. With ``out_prefix`` and ``settings.checkpoint_every`` the run checkpoints (the heat current
recorded so far included) and ``resume`` continues it to the result of an uninterrupted run.
"""
from __future__ import annotations

import numpy as np

from ..analysis import mean_sem_blocks
from common.arrays import array_module
from ..backend import to_numpy
from ..errors import MDSetupError
from ..simulation import Stage
from ..units import EV_PER_FS_A_K_TO_W_PER_MK, KB
from .common import RunSettings
from .thermal_common import downsample, production, run_production, transport_axis, transport_volume, write_h5
from .thermal_current import driving_forces, heat_current


def fluctuation_sem(kappa_W_per_mK: float, volume_A3: float, time_fs: float, fe_per_A: float) -> float:
    """Standard error (W/(m K)) of an HNEMD conductivity from the equilibrium heat-current noise.

    The time average of J over ``t`` has the variance ``2 int <J(0) J(s)> ds / t = 2 kappa k_B T^2 V / t``
    (Green-Kubo), so ``sem(kappa) = sqrt(2 kappa k_B / (V t)) / F_e``, whatever the correlation time.
    Block means of a run shorter than the slow tails of the current correlation miss part of this.
    """
    kappa = abs(kappa_W_per_mK) / EV_PER_FS_A_K_TO_W_PER_MK  # eV/(fs Å K)
    return float(np.sqrt(2.0 * kappa * KB / (volume_A3 * time_fs)) / fe_per_A * EV_PER_FS_A_K_TO_W_PER_MK)


class CurrentRecorder:
    """Observer: the total heat current of every step in a preallocated ``series`` [steps, 3] (eV Å/fs)."""

    def __init__(self, n_steps: int, xp):
        self.series = xp.zeros((n_steps, 3))
        self.k = 0

    def __call__(self, md):
        self.series[self.k] = heat_current(md.state, md.result)
        self.k += 1

    def mark(self) -> int:
        return self.k

    def rewind(self, k: int) -> None:
        """Back to :meth:`mark` (a replay of the steps since writes their currents again)."""
        self.k = k

    def checkpoint_arrays(self) -> dict:
        return {"series": to_numpy(self.series[:self.k]), "k": np.array(self.k)}

    def restore_arrays(self, arrays: dict) -> None:
        self.k = int(arrays["k"])
        self.series[:self.k] = array_module(self.series).asarray(arrays["series"])


def hnemd(ff, atoms_or_state, *, direction="x", driving_force_per_A: float = 1e-5, production_steps: int = 100000,
          settings: RunSettings | None = None, thickness_A: float | None = None, n_blocks: int = 10,
          out_prefix=None, resume: bool = False, log=print) -> dict:
    """Thermal conductivity along ``direction`` by HNEMD (module docstring); W/(m K).

    driving_force_per_A: ``F_e`` (1/Å) along ``direction``: small enough for linear response (F_e times
    the phonon mean free path << 1: 1e-5 ... 1e-4 /Å for graphene), large enough to beat the noise,
    whose sem scales as ``1 / (F_e sqrt(V t))`` (:func:`fluctuation_sem`); production_steps at
    ``settings.dt_fs`` after ``settings.equilibrate_steps`` of NPT; thickness_A: effective thickness
    (Å) of a sheet; the sem is the larger of the block sem (``n_blocks`` blocks) and
    :func:`fluctuation_sem`; out_prefix: write ``<out_prefix>.h5`` and, with ``settings.checkpoint_every``,
    checkpoints (:mod:`.thermal_common`; the heat current so far included); resume: continue from them.
    Returns ``{"properties", "series", "settings", "h5"}``; properties: ``conductivity_W_per_mK``,
    ``conductivity_sem_W_per_mK``, ``length_A`` (cell length along ``direction``), ``n_atoms``;
    series: running average of the conductivity (W/(m K)) against time (ps), at most 500 points.
    """
    settings = settings or RunSettings()
    if production_steps < n_blocks or n_blocks < 2 or driving_force_per_A <= 0:
        raise MDSetupError(f"hnemd: production_steps={production_steps} must be >= n_blocks={n_blocks} >= 2 and "
                           f"driving_force_per_A={driving_force_per_A} > 0")
    state, prod = production(ff, atoms_or_state, settings, log, out_prefix=out_prefix, resume=resume)
    k = transport_axis(state, direction)
    xp = array_module(state.positions)
    fe = xp.zeros(3)
    fe[k] = driving_force_per_A
    volume = transport_volume(state, thickness_A)
    t = settings.temperature_K
    log(f"hnemd: {state.n_atoms} atoms, direction {'xyz'[k]}, F_e = {driving_force_per_A:.3g} /Å, "
        f"T = {t} K, {production_steps} steps of {settings.dt_fs} fs")
    recorder = CurrentRecorder(production_steps, xp)
    stage = Stage("hnemd", production_steps, thermostat=prod.make_thermostat(), observers=(recorder,))
    run = run_production(ff, state, prod, [stage], log,
                         external_force=lambda _state, result: driving_forces(result.virials, fe),
                         out_prefix=out_prefix, resume=resume)
    jk = to_numpy(recorder.series)[:, k]
    scale = EV_PER_FS_A_K_TO_W_PER_MK / (t * volume * driving_force_per_A)
    running = np.cumsum(jk) / np.arange(1, jk.size + 1) * scale
    blocks = np.array([b.mean() for b in np.array_split(jk, n_blocks)]) * scale
    kappa, block_sem = mean_sem_blocks(blocks)
    sem = max(block_sem, fluctuation_sem(kappa, volume, production_steps * settings.dt_fs, driving_force_per_A))
    length = float(state.cell[k, k])
    properties = {"conductivity_W_per_mK": kappa, "conductivity_sem_W_per_mK": sem, "length_A": length,
                  "n_atoms": state.n_atoms}
    time_ps = np.arange(1, jk.size + 1) * settings.dt_fs * 1e-3
    series = {"time_ps": downsample(time_ps), "running_conductivity_W_per_mK": downsample(running)}
    record = {"method": "hnemd", "direction": "xyz"[k], "driving_force_per_A": driving_force_per_A,
              "production_steps": production_steps, "thickness_A": thickness_A, "volume_A3": volume,
              "n_blocks": n_blocks, "cell_A": state.cell.tolist(), **settings.as_dict()}
    h5 = write_h5(out_prefix, run, record, properties, {"series": series,
                                                       "block_conductivity_W_per_mK": blocks.tolist()})
    log(f"hnemd: kappa_{'xyz'[k]} = {kappa:.4g} +- {sem:.2g} W/(m K)")
    return {"properties": properties, "series": series, "settings": record, "h5": h5}
