"""Heat transport by MD: per-atom heat current, HNEMD, NEMD (with length extrapolation), interface NEMD.

Heat current of a many-body potential (full form, not the pairwise shortcut). With
per-atom energies ``e_i = m_i v_i^2 / 2 + U_i`` and the MTP's pair-resolved derivatives
``G_p = dE/dd_p = dU_{i_p}/dd_p`` (``d_p = r_{j_p} - r_{i_p}``; only the site energy of
the centre ``i_p`` depends on ``d_p``), the time derivative of ``sum_i r_i e_i`` is

    J = sum_i e_i v_i + J_pot,   J_pot = -sum_p d_p (G_p . v_{j_p}) = sum_i W_i . v_i

(``d/dt sum_a r_a U_a = sum_p r_{i_p} G_p.(v_{j_p} - v_{i_p})`` plus ``sum_a r_a F_a . v_a``
from the kinetic part; the ``r_{i_p} G_p . v_{i_p}`` terms cancel, leaving relative vectors).
``W_i = -sum_{p: j_p = i} d_p (x) G_p`` is exactly the per-atom virial ``ForceResult.virials``
(Fan et al., PRB 92, 094301 (2015)), so ``J_pot[mu] = sum_i W_i[mu, nu] v_i[nu]`` costs nothing
beyond the per-atom virials. The "pairwise shortcut" (half of each pair's virial to each atom, as
LAMMPS's ``stress/atom``) is wrong for many-body potentials; ``tests/test_md_thermal.py`` checks
the formula against finite differences and shows the shortcut differs.
Units: J in eV Å/fs (velocities converted from ASE units); conductivities and fluxes go to SI with
``units.EV_PER_FS_A_K_TO_W_PER_MK`` and ``units.EV_PER_FS_A2_TO_W_PER_M2``.

HNEMD (Fan et al., PRB 99, 064308 (2019)): a driving force ``F_e`` (1/Å) adds
``F_i^ext = W_i^T F_e - <W^T F_e>`` to every atom, so that the power it injects is
``sum_i v_i . F_i^ext = F_e . J_pot`` (zero-momentum run; the mean is removed so the total force
is zero). The convective term ``E_i F_e`` of the paper is left out (as in GPUMD; negligible in a
solid) so the force depends on positions only and velocity Verlet stays exact. A global Bussi
thermostat (the paper: Nosé-Hoover chain) holds T. Linear response gives
``kappa_mu_nu = <J_mu> / (T V F_e,nu)``; ``V`` = cell area x ``thickness_A`` for a sheet.

NEMD (periodic layout, Schelling et al., PRB 65, 144306 (2002)): a hot Langevin slab at
``[0, w)`` and a cold one half a cell later along the transport axis (``T +- delta_T / 2``);
the heat ``P`` a bath exchanges per unit time flows out through two cross-sections, so
``q = P / (2 A)``; the gradient is the measured bath temperature difference over the distance
between the bath centres (default) or the mean magnitude of linear fits of the binned temperature
profile over the two segments between the baths (``gradient='fit'``); ``kappa = q / |dT/dx|``. ``length_A`` is the distance between bath centres (half the cell);
:func:`extrapolate_length` fits ``1/kappa = 1/kappa_inf + c / L``.

Interface NEMD: the same with the baths centred inside one phase; at each interface in a segment
the linear fits of the bins on both sides are extrapolated to the interface position and
``G = q / Delta T``; Kapitza length ``kappa / G`` per phase.

Equilibration: NPT in the plane (zero stress at T, :func:`md_gpu.protocols.common.equilibrate`),
then production at that fixed cell. Uncertainties are block averages within one run
(``n_blocks`` consecutive blocks; HNEMD: at least the Green-Kubo noise floor, :func:`fluctuation_sem`);
seeds are combined by the caller. Runs do not checkpoint.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..backend import to_numpy, xp_for
from ..cell_control import axis_index
from ..errors import MDRunError, MDSetupError
from ..integrators import make_force_fn
from ..io import write_run_h5
from ..simulation import Stage
from ..state import State, from_atoms
from ..units import EV_PER_FS_A2_TO_W_PER_M2, EV_PER_FS_A_K_TO_W_PER_MK, FS, KB
from .common import RunSettings, equilibrate, simulation

GRADIENTS = ("baths", "fit")
SERIES_POINTS = 500  # running-average points stored in the HDF5 file (an attribute: keep it small)


# --- heat current --------------------------------------------------------------------------------
def heat_currents_per_atom(state: State, result) -> object:
    """Per-atom heat currents ``e_i v_i + W_i . v_i`` [n, 3] (eV Å/fs); see the module docstring.

    ``result`` must hold per-atom virials (``compute_forces(..., per_atom=True)``).
    """
    if result.virials is None:
        raise MDSetupError("the heat current needs per-atom virials: compute forces with per_atom=True")
    v = state.velocities
    e = 0.5 * state.masses * (v * v).sum(1) + result.energies
    j = e[:, None] * v + (result.virials * v[:, None, :]).sum(2)
    return j * FS  # Å per ASE time unit -> Å/fs


def heat_current(state: State, result) -> object:
    """Total heat current ``J = sum_i (e_i v_i + W_i . v_i)`` [3] (eV Å/fs)."""
    return heat_currents_per_atom(state, result).sum(0)


def driving_forces(virials, fe) -> object:
    """HNEMD external forces ``W_i^T F_e - mean`` [n, 3] (eV/Å) for ``F_e`` [3] (1/Å)."""
    f = (virials * fe[None, :, None]).sum(1)
    return f - f.mean(0)


def _per_atom_force_fn(ff, nlist, fe=None):
    """force_fn with per-atom virials and, when ``fe`` [3] (1/Å) is given, the HNEMD driving force."""
    base = make_force_fn(ff, nlist, per_atom=True)
    if fe is None:
        return base

    def force_fn(state):
        result = base(state)
        return dataclasses.replace(result, forces=result.forces + driving_forces(result.virials, fe))

    return force_fn


# --- thermostat-slot objects (Stage.thermostat: anything with end(md, dt_fs)) ---------------------
class Observed:
    """Runs ``thermostat.end`` (if any), then ``observer(md)``: a per-step hook in the MD loop."""

    def __init__(self, thermostat, observer):
        self.thermostat, self.observer = thermostat, observer

    def end(self, md, dt_fs):
        if self.thermostat is not None:
            md = self.thermostat.end(md, dt_fs)
        self.observer(md)
        return md


class HeatBaths:
    """Langevin baths on groups of atoms (O step at the end of velocity Verlet, as ``Langevin``).

    groups: list of index arrays; temperatures_K: one per group; damping_fs: ``1/gamma``.
    Each group's momentum change from the noise is removed (the total momentum stays zero).
    ``last`` [groups] holds the energy (eV) each bath took out of the system in the last step.
    """

    def __init__(self, groups, temperatures_K, damping_fs: float):
        if damping_fs <= 0 or min(temperatures_K) < 0:
            raise MDSetupError(f"heat baths: damping {damping_fs} fs must be > 0 and temperatures "
                               f"{list(temperatures_K)} K >= 0")
        self.groups, self.temperatures_K, self.damping_fs = groups, list(temperatures_K), float(damping_fs)
        self.last = np.zeros(len(groups))

    def end(self, md, dt_fs):
        s = md.state
        xp = xp_for(s.velocities)
        c = math.exp(-dt_fs / self.damping_fs)
        v = s.velocities.copy()
        for k, (idx, t) in enumerate(zip(self.groups, self.temperatures_K)):
            vk, m = v[idx], s.masses[idx][:, None]
            new = c * vk + xp.sqrt((1 - c * c) * KB * t / m) * md.rng.standard_normal(vk.shape)
            new = new - (m * (new - vk)).sum(0) / m.sum()
            self.last[k] = float(0.5 * (m * (vk * vk - new * new)).sum())
            v[idx] = new
        return md.replace(state=s.replace(velocities=v), heat=md.heat + float(self.last.sum()))


class _Blocks:
    """Sums per-step samples into ``n_blocks`` blocks of consecutive steps; ``means(name)`` at the end."""

    def __init__(self, n_steps: int, n_blocks: int):
        self.n_steps, self.n_blocks, self.k = n_steps, n_blocks, 0
        self.sums: dict = {}
        self.counts = np.zeros(n_blocks)

    def add(self, **samples):
        b = min(self.k * self.n_blocks // self.n_steps, self.n_blocks - 1)
        for name, value in samples.items():
            if name not in self.sums:
                self.sums[name] = [0.0] * self.n_blocks
            self.sums[name][b] = self.sums[name][b] + value
        self.counts[b] += 1
        self.k += 1

    def means(self, name) -> np.ndarray:
        sums = np.array([to_numpy(s) for s in self.sums[name]], dtype=float)
        return sums / self.counts.reshape((-1,) + (1,) * (sums.ndim - 1))


def mean_sem_blocks(values) -> tuple[float, float]:
    """Mean and standard error of block means [b] (sample std / sqrt(b))."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


# --- geometry helpers ----------------------------------------------------------------------------
def _axis(state: State, direction) -> int:
    k = axis_index(direction)
    if not state.pbc[k]:
        raise MDSetupError(f"direction {direction!r} is not periodic in this cell; heat flows along a periodic axis")
    cell = to_numpy(state.cell)
    if np.abs(cell - np.diag(np.diag(cell))).max() > 1e-9:
        raise MDSetupError("thermal protocols need an orthorhombic cell")
    return k


def transport_volume(state: State, thickness_A: float | None) -> float:
    """Volume (Å^3) of the conductor: area x ``thickness_A`` for a sheet, the cell volume for bulk."""
    lengths = np.diag(to_numpy(state.cell))
    if state.pbc[2]:
        return float(np.prod(lengths))
    if not thickness_A or thickness_A <= 0:
        raise MDSetupError("a 2D sheet needs thickness_A (effective thickness in Å, graphene 3.35) "
                           "to turn heat currents into a conductivity")
    return float(lengths[0] * lengths[1] * thickness_A)


def _fractions(state: State, k: int, origin_A: float = 0.0) -> np.ndarray:
    """Fractional coordinate in [0, 1) along axis ``k``, measured from ``origin_A`` (Å)."""
    length = float(to_numpy(state.cell)[k, k])
    x = to_numpy(state.positions)[:, k] - origin_A
    return np.mod(x / length, 1.0)


def _fit(x, y) -> tuple[float, float]:
    """Slope and intercept of a straight line through (x, y)."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(slope), float(intercept)


def _production(ff, atoms_or_state, settings: RunSettings, log):
    """Equilibrated state (NPT in the plane, zero stress) and the settings of the production run."""
    eq = equilibrate(ff, atoms_or_state, settings, log=log)
    return eq.md.state, dataclasses.replace(settings, seed=settings.seed + 1)


BLOWUP_FACTOR = 2.0  # a thermostatted run whose temperature exceeds this x the target has blown up


def _run(ff, state, settings, stages, fe, log):
    """Run ``stages`` with per-atom virials (+ HNEMD force); progress lines come from Simulation.

    A run whose kinetic temperature ever exceeds ``BLOWUP_FACTOR`` times the target raises
    :class:`MDRunError`: with a thermostat on, that is energy released by the potential (a passively
    fitted MTP falling into a hole outside its data; a chi3 borophene MTP did so after 9 ps of HNEMD
    and reached 5e6 K), and its heat current would be meaningless.
    """
    sim = simulation(ff, state, settings, log=log)
    sim.force_fn = _per_atom_force_fn(ff, sim.nlist, fe)  # heat currents need per-atom virials
    run = sim.run(stages)
    hottest = float(np.nanmax(run.thermo["temperature_K"]))
    if not hottest <= BLOWUP_FACTOR * max(settings.temperature_K, 1.0):
        raise MDRunError(f"the run blew up: the temperature reached {hottest:.4g} K with a {settings.temperature_K:g} K "
                         "thermostat (energy released by the potential outside its training data)")
    return run


def _downsample(x, n=SERIES_POINTS) -> list:
    x = np.asarray(x, dtype=float)
    step = max(1, int(np.ceil(x.size / n)))
    return x[step - 1::step].tolist()


def _h5(out_prefix, run, record, properties, extra):
    if out_prefix is None:
        return None
    return str(write_run_h5(f"{out_prefix}.h5", thermo=run.thermo, settings=record,
                            results={**properties, **extra}))


# --- HNEMD ---------------------------------------------------------------------------------------
def fluctuation_sem(kappa_W_per_mK: float, volume_A3: float, time_fs: float, fe_per_A: float) -> float:
    """Standard error (W/(m K)) of an HNEMD conductivity from the equilibrium heat-current noise.

    The time average of J over ``t`` has the variance ``2 int <J(0) J(s)> ds / t = 2 kappa k_B T^2 V / t``
    (Green-Kubo), so ``sem(kappa) = sqrt(2 kappa k_B / (V t)) / F_e``, whatever the correlation time.
    Block means of a run shorter than the slow tails of the current correlation miss part of this:
    graphene, 120 atoms, 15 ps: blocks gave +-70 W/(m K), seeds spread from 220 to 700.
    """
    kappa = abs(kappa_W_per_mK) / EV_PER_FS_A_K_TO_W_PER_MK  # eV/(fs Å K)
    return float(np.sqrt(2.0 * kappa * KB / (volume_A3 * time_fs)) / fe_per_A * EV_PER_FS_A_K_TO_W_PER_MK)


class _CurrentRecorder:
    """Stores the total heat current of every step in a preallocated [steps, 3] array (eV Å/fs)."""

    def __init__(self, n_steps: int, xp):
        self.series = xp.zeros((n_steps, 3))
        self.k = 0

    def __call__(self, md):
        self.series[self.k] = heat_current(md.state, md.result)
        self.k += 1


def hnemd(ff, atoms_or_state, *, direction="x", driving_force_per_A: float = 1e-5, production_steps: int = 100000,
          settings: RunSettings | None = None, thickness_A: float | None = None, n_blocks: int = 10,
          out_prefix=None, log=print) -> dict:
    """Thermal conductivity along ``direction`` by HNEMD (module docstring); W/(m K).

    driving_force_per_A: ``F_e`` (1/Å) along ``direction``: small enough for linear response (F_e times
    the phonon mean free path << 1: 1e-5 ... 1e-4 /Å for real graphene; with the test MTP in 120-atom
    cells 3e-4 and 1e-3 /Å agreed within errors), large enough to beat the noise, whose sem scales as
    ``1 / (F_e sqrt(V t))`` (:func:`fluctuation_sem`); production_steps at
    ``settings.dt_fs`` after ``settings.equilibrate_steps`` of NPT; the sem is the larger of the block
    sem (``n_blocks`` blocks) and :func:`fluctuation_sem`.
    Returns ``{"properties", "series", "settings", "h5"}``; series: running average vs time (ps).
    """
    settings = settings or RunSettings()
    if production_steps < n_blocks or n_blocks < 2 or driving_force_per_A <= 0:
        raise MDSetupError(f"hnemd: production_steps={production_steps} must be >= n_blocks={n_blocks} >= 2 and "
                           f"driving_force_per_A={driving_force_per_A} > 0")
    state, prod = _production(ff, atoms_or_state, settings, log)
    k = _axis(state, direction)
    xp = xp_for(state.positions)
    fe = xp.zeros(3)
    fe[k] = driving_force_per_A
    volume = transport_volume(state, thickness_A)
    t = settings.temperature_K
    log(f"hnemd: {state.n_atoms} atoms, direction {'xyz'[k]}, F_e = {driving_force_per_A:.3g} /Å, "
        f"T = {t} K, {production_steps} steps of {settings.dt_fs} fs")
    recorder = _CurrentRecorder(production_steps, xp)
    run = _run(ff, state, prod, [Stage("hnemd", production_steps,
                                       thermostat=Observed(prod.make_thermostat(), recorder))], fe, log)
    jk = to_numpy(recorder.series)[:, k]
    scale = EV_PER_FS_A_K_TO_W_PER_MK / (t * volume * driving_force_per_A)
    running = np.cumsum(jk) / np.arange(1, jk.size + 1) * scale
    blocks = np.array([b.mean() for b in np.array_split(jk, n_blocks)]) * scale
    kappa, block_sem = mean_sem_blocks(blocks)
    sem = max(block_sem, fluctuation_sem(kappa, volume, production_steps * settings.dt_fs, driving_force_per_A))
    length = float(to_numpy(state.cell)[k, k])
    properties = {"conductivity_W_per_mK": kappa, "conductivity_sem_W_per_mK": sem, "length_A": length,
                  "n_atoms": state.n_atoms}
    time_ps = np.arange(1, jk.size + 1) * settings.dt_fs * 1e-3
    series = {"time_ps": _downsample(time_ps), "running_conductivity_W_per_mK": _downsample(running)}
    record = {"method": "hnemd", "direction": "xyz"[k], "driving_force_per_A": driving_force_per_A,
              "production_steps": production_steps, "thickness_A": thickness_A, "volume_A3": volume,
              "n_blocks": n_blocks, "cell_A": to_numpy(state.cell).tolist(), **settings.as_dict()}
    h5 = _h5(out_prefix, run, record, properties, {"series": series, "block_conductivity_W_per_mK": blocks.tolist()})
    log(f"hnemd: kappa_{'xyz'[k]} = {kappa:.4g} +- {sem:.2g} W/(m K)")
    return {"properties": properties, "series": series, "settings": record, "h5": h5}


# --- NEMD ----------------------------------------------------------------------------------------
class _NemdRecorder:
    """Per block: kinetic sums ``sum m v^2`` per bin (eV) and the bath energies (eV)."""

    def __init__(self, baths: HeatBaths, bins, n_bins: int, n_steps: int, n_blocks: int, xp):
        self.baths, self.bins, self.n_bins = baths, xp.asarray(bins), n_bins
        self.blocks = _Blocks(n_steps, n_blocks)

    def __call__(self, md):
        s = md.state
        xp = xp_for(s.velocities)
        mv2 = s.masses * (s.velocities * s.velocities).sum(1)
        self.blocks.add(mv2=xp.bincount(self.bins, weights=mv2, minlength=self.n_bins), hot=-self.baths.last[0],
                        cold=self.baths.last[1])


@dataclasses.dataclass
class _Layout:
    """Bins and baths along the transport axis: ``n_bins`` bins from ``origin_A``; hot bath bins
    ``[0, n_bath)``, cold ``[n_bins/2, n_bins/2 + n_bath)``; segments: bins between them (lists)."""

    origin_A: float
    length_A: float
    n_bins: int
    n_bath: int
    bins: np.ndarray  # [n] bin of each atom

    @property
    def bin_width_A(self) -> float:
        return self.length_A / self.n_bins

    @property
    def centres_A(self) -> np.ndarray:
        """Bin centres (Å) measured from the hot bath's start."""
        return (np.arange(self.n_bins) + 0.5) * self.bin_width_A

    def segments(self) -> list:
        """The two runs of bins between the baths: [hot -> cold (+axis), cold -> hot (+axis)]."""
        half = self.n_bins // 2
        return [list(range(self.n_bath, half)), list(range(half + self.n_bath, self.n_bins))]


def _layout(state: State, k: int, bath_width_A: float, bin_width_A: float, origin_A: float = 0.0) -> _Layout:
    length = float(to_numpy(state.cell)[k, k])
    n_bins = 2 * max(1, int(round(length / (2 * bin_width_A))))
    n_bath = max(1, int(round(bath_width_A / (length / n_bins))))
    if n_bins // 2 - n_bath < 5:
        raise MDSetupError(f"NEMD: a {length:.3g} Å cell with {n_bins} bins of {length / n_bins:.3g} Å and baths of "
                           f"{n_bath} bins leaves fewer than 5 bins between the baths; use a longer cell, "
                           "narrower baths or narrower bins")
    bins = np.minimum((_fractions(state, k, origin_A) * n_bins).astype(int), n_bins - 1)
    return _Layout(origin_A, length, n_bins, n_bath, bins)


def _nemd_run(ff, state, settings, layout: _Layout, delta_T_K, production_steps, transient_steps, n_blocks, log):
    """Run the baths (transient, then production); returns (run, recorder)."""
    xp = xp_for(state.positions)
    half = layout.n_bins // 2
    hot = np.flatnonzero(layout.bins < layout.n_bath)
    cold = np.flatnonzero((layout.bins >= half) & (layout.bins < half + layout.n_bath))
    t = settings.temperature_K
    if t - delta_T_K / 2 < 0:
        raise MDSetupError(f"NEMD: delta_T_K={delta_T_K} puts the cold bath below 0 K at T = {t} K")
    baths = HeatBaths([xp.asarray(hot), xp.asarray(cold)], [t + delta_T_K / 2, t - delta_T_K / 2],
                      settings.thermostat_tau_fs)
    recorder = _NemdRecorder(baths, layout.bins, layout.n_bins, production_steps, n_blocks, xp)
    stages = [Stage("nemd_transient", transient_steps, thermostat=baths),
              Stage("nemd", production_steps, thermostat=Observed(baths, recorder))]
    return _run(ff, state, settings, stages, None, log), recorder


def _transient_steps(production_steps: int, transient_steps) -> int:
    """Steps before the NEMD production: ``transient_steps``, or a quarter of the production by default."""
    return production_steps // 4 if transient_steps is None else int(transient_steps)


def _flux_blocks(rec, area_A2: float, dt_fs: float):
    """Heat flux per block (eV/(fs Å^2)): the mean power of the two baths (eV/fs), through the two
    cross-sections ``area_A2`` of the periodic layout (heat leaves the hot bath both ways)."""
    power = 0.5 * (rec.blocks.means("hot") + rec.blocks.means("cold")) / dt_fs
    return power / (2.0 * area_A2)


def _bin_temperatures(recorder: _NemdRecorder, layout: _Layout) -> np.ndarray:
    """Temperature per block and bin [blocks, bins] (K): ``<sum m v^2> / (3 N_bin k_B)``."""
    counts = np.bincount(layout.bins, minlength=layout.n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return recorder.blocks.means("mv2") / (3.0 * counts * KB)


def _profile(position_A, temps) -> dict:
    """Mean temperature profile of the populated bins: ``{"position_A", "temperature_K"}`` lists."""
    t = temps.mean(0)
    keep = np.isfinite(t)
    return {"position_A": np.asarray(position_A)[keep].tolist(), "temperature_K": t[keep].tolist()}


def _bath_temperatures(temps, layout: _Layout) -> list:
    """Measured [hot, cold] bath temperatures (K): atom-weighted means over the bath bins."""
    counts = np.bincount(layout.bins, minlength=layout.n_bins).astype(float)
    half = layout.n_bins // 2
    out = []
    for lo in (0, half):
        b = slice(lo, lo + layout.n_bath)
        out.append(float(np.nansum(temps[b] * counts[b]) / counts[b].sum()))
    return out


def _bath_gradient(temps, layout: _Layout) -> float:
    """(T_hot - T_cold) measured in the baths over the distance between their centres (K/Å)."""
    hot, cold = _bath_temperatures(temps, layout)
    return (hot - cold) / (layout.length_A / 2)


def _gradient(temps: np.ndarray, layout: _Layout, skip: int = 1) -> float:
    """Mean magnitude (K/Å) of the linear fits over the two segments, ``skip`` bins off each bath."""
    x = layout.centres_A
    slopes = []
    for sign, seg in zip((-1.0, 1.0), layout.segments()):
        use = [b for b in seg[skip:len(seg) - skip] if np.isfinite(temps[b])]
        if len(use) < 3:
            raise MDRunError("NEMD: fewer than 3 populated bins between the baths; use a longer cell")
        slopes.append(sign * _fit(x[use], temps[use])[0])
    return float(np.mean(slopes))


def _cross_section_A2(state: State, k: int, thickness_A) -> float:
    return transport_volume(state, thickness_A) / float(to_numpy(state.cell)[k, k])


def nemd(ff, atoms_or_state, *, direction="x", delta_T_K: float = 60.0, bath_width_A: float = 5.0,
         production_steps: int = 100000, settings: RunSettings | None = None, thickness_A: float | None = None,
         transient_steps: int | None = None, bin_width_A: float = 2.5, n_blocks: int = 10, gradient: str = "baths",
         out_prefix=None, log=print) -> dict:
    """Thermal conductivity kappa(L) along ``direction`` by NEMD (module docstring); W/(m K).

    delta_T_K: hot minus cold bath temperature (K), centred on ``settings.temperature_K``;
    bath_width_A (Å); production_steps after ``transient_steps`` (default production_steps // 4) with
    the baths on (after ``settings.equilibrate_steps`` of NPT); bath damping ``settings.thermostat_tau_fs``;
    bin_width_A: profile bins (Å); gradient: 'baths' (measured bath temperature difference over the
    distance between the bath centres: robust in short, near-ballistic cells) or 'fit' (linear fits of
    the profile between the baths: the local, diffusive gradient; needs long runs); both extrapolate
    in 1/L to the same diffusive limit (the bath contacts add a resistance, i.e. a 1/L term).
    Properties: conductivity and its block sem, heat flux (W/m^2), gradient (K/m), ``length_A``
    (distance between bath centres), measured ``bath_temperatures_K`` [hot, cold],
    ``energy_balance_rel`` = |E_in - E_out - dE| / E_in.
    """
    settings = settings or RunSettings()
    _check_nemd(production_steps, n_blocks, delta_T_K)
    if gradient not in GRADIENTS:
        raise MDSetupError(f"nemd: gradient={gradient!r} is not one of {', '.join(GRADIENTS)}")
    state, prod = _production(ff, atoms_or_state, settings, log)
    k = _axis(state, direction)
    layout = _layout(state, k, bath_width_A, bin_width_A)
    transient = _transient_steps(production_steps, transient_steps)
    log(f"nemd: {state.n_atoms} atoms, {'xyz'[k]} length {layout.length_A:.4g} Å, delta_T = {delta_T_K} K, "
        f"baths {layout.n_bath * layout.bin_width_A:.3g} Å, {transient} + {production_steps} steps")
    run, rec = _nemd_run(ff, state, prod, layout, delta_T_K, production_steps, transient, n_blocks, log)
    temps = _bin_temperatures(rec, layout)
    area = _cross_section_A2(state, k, thickness_A)
    flux_blocks = _flux_blocks(rec, area, settings.dt_fs)  # eV/(fs Å^2)
    grad_fn = _gradient if gradient == "fit" else _bath_gradient
    grad_blocks = np.array([grad_fn(tb, layout) for tb in temps])  # K/Å
    q, q_sem = mean_sem_blocks(flux_blocks)
    g = grad_fn(temps.mean(0), layout)
    _, g_sem = mean_sem_blocks(grad_blocks)
    kappa = q / g * EV_PER_FS_A_K_TO_W_PER_MK
    sem = abs(kappa) * math.hypot(q_sem / q, g_sem / g)
    properties = {"conductivity_W_per_mK": kappa, "conductivity_sem_W_per_mK": sem,
                  "heat_flux_W_per_m2": q * EV_PER_FS_A2_TO_W_PER_M2, "gradient_K_per_m": g * 1e10,
                  "length_A": layout.length_A / 2, "n_atoms": state.n_atoms,
                  "bath_temperatures_K": _bath_temperatures(temps.mean(0), layout),
                  "energy_balance_rel": _energy_balance(run, rec)}
    profile = _profile(layout.centres_A, temps)
    record = {"method": "nemd", "direction": "xyz"[k], "delta_T_K": delta_T_K, "bath_width_A": bath_width_A,
              "bin_width_A": layout.bin_width_A, "n_bath_bins": layout.n_bath, "gradient": gradient,
              "production_steps": production_steps,
              "transient_steps": transient, "thickness_A": thickness_A, "cross_section_A2": area,
              "n_blocks": n_blocks, "cell_A": to_numpy(state.cell).tolist(), **settings.as_dict()}
    h5 = _h5(out_prefix, run, record, properties, {"profile": profile})
    log(f"nemd: L = {layout.length_A / 2:.4g} Å, kappa = {kappa:.4g} +- {sem:.2g} W/(m K), "
        f"energy balance {properties['energy_balance_rel']:.2g}")
    return {"properties": properties, "profile": profile, "settings": record, "h5": h5}


def _check_nemd(production_steps, n_blocks, delta_T_K):
    if production_steps < n_blocks or n_blocks < 2 or delta_T_K <= 0:
        raise MDSetupError(f"NEMD: production_steps={production_steps} must be >= n_blocks={n_blocks} >= 2 and "
                           f"delta_T_K={delta_T_K} > 0")


def _energy_balance(run, rec: _NemdRecorder) -> float:
    """|E_in(hot) - E_out(cold) - (E_end - E_start)| / E_in over the production stage."""
    counts = rec.blocks.counts
    e_in = float((rec.blocks.means("hot") * counts).sum())
    e_out = float((rec.blocks.means("cold") * counts).sum())
    first = run.stage_rows[1]
    total = run.thermo["potential_eV"] + run.thermo["kinetic_eV"]
    return abs(e_in - e_out - (total[-1] - total[first])) / abs(e_in)


def extrapolate_length(lengths_A, kappas, sems) -> dict:
    """Diffusive limit from ``1/kappa = 1/kappa_inf + c / L``: weighted straight-line fit in 1/L.

    lengths_A, kappas (W/(m K)), sems (their standard errors, > 0); weights ``kappa^2 / sem``, the sem of
    the intercept from the fit's covariance (no rescaling by the scatter: three points cannot estimate
    it). Returns ``{"conductivity_W_per_mK", "sem", "inverse_mK_per_W", "inverse_sem_mK_per_W"}``; compare
    in the inverse, which is what is fitted linearly: when the intercept is within error of 0 (lengths
    far below the mean free path), the conductivity has no symmetric error bar; an intercept <= 0
    (consistent with ballistic transport at these lengths) gives ``inf`` for the conductivity and its sem.
    """
    L, k, s = (np.asarray(a, dtype=float) for a in (lengths_A, kappas, sems))
    if L.size < 2 or L.size != k.size or k.size != s.size or np.any(s <= 0) or np.any(k <= 0):
        raise MDRunError("extrapolate_length needs >= 2 lengths with positive conductivities and sems "
                         f"(got kappa = {k.tolist()}, sem = {s.tolist()} W/(m K)); run longer")
    x, y, sy = 1.0 / L, 1.0 / k, s / k ** 2
    design = np.column_stack([np.ones_like(x), x]) / sy[:, None]
    cov = np.linalg.inv(design.T @ design)
    a = float((cov @ design.T @ (y / sy))[0])
    sa = float(np.sqrt(cov[0, 0]))
    kappa, sem = (1.0 / a, sa / a ** 2) if a > 0 else (math.inf, math.inf)
    return {"conductivity_W_per_mK": kappa, "sem": sem, "inverse_mK_per_W": a, "inverse_sem_mK_per_W": sa}


# --- interface NEMD ------------------------------------------------------------------------------
def find_interfaces(state: State, k: int) -> tuple[np.ndarray, list]:
    """Interface positions (Å, in [0, L)) along axis ``k`` and the species of the piece after each.

    The atoms sorted along the axis form runs of one species (lateral interfaces with straight
    edges do not overlap along their normal); an interface lies midway between the last atom of
    one run and the first of the next, cyclically.
    """
    length = float(to_numpy(state.cell)[k, k])
    x = _fractions(state, k) * length
    order = np.argsort(x)
    x, types = x[order], to_numpy(state.types)[order]
    change = np.flatnonzero(types != np.roll(types, 1))  # first atom of each run
    if change.size < 2:
        raise MDSetupError(f"interface NEMD: no interface along {'xyz'[k]} (one species along the axis); use a "
                           "heterostructure cell stacked along the transport axis")
    prev = x[change - 1] - np.where(change == 0, length, 0.0)
    positions = np.mod(0.5 * (prev + x[change]), length)
    return positions, [state.species[t] for t in types[change]]


def _side_fit(x, temps, seg, a: float, b: float, skip_A: float) -> tuple[float, float]:
    """Line (slope K/Å, intercept K) through the bins of ``seg`` between ``a`` and ``b`` (Å), ``skip_A``
    off both ends; a piece too short for two such bins takes its bins' mean (slope 0, flat)."""
    for margin in (skip_A, 0.0):
        use = [i for i in seg if a + margin < x[i] < b - margin and np.isfinite(temps[i])]
        if len(use) >= 2:
            return _fit(x[use], temps[use])
    if not use:
        raise MDRunError(f"interface NEMD: no temperature bin between {a:.3g} and {b:.3g} Å; repeat the "
                         "phases along the axis, use narrower baths or narrower bins (bin_width_A)")
    return 0.0, float(np.mean(temps[use]))


def _interface_fits(temps, layout: _Layout, interfaces, skip_A: float):
    """For each interface inside a segment: (temperature jump upstream - downstream (K),
    [(species index of side, slope K/Å) for both sides]). Sides are fitted over the bins
    between the neighbouring boundaries (interfaces, bath edges), ``skip_A`` off each."""
    x, w = layout.centres_A, layout.bin_width_A
    out = []
    for flow, seg in zip((1.0, -1.0), layout.segments()):
        lo, hi = seg[0] * w, (seg[-1] + 1) * w
        inside = sorted(s for s in interfaces if lo < s < hi)
        bounds = [lo] + inside + [hi]
        for n, s in enumerate(inside):
            sides = []
            for a, b in ((bounds[n], s), (s, bounds[n + 2])):
                sides.append(_side_fit(x, temps, seg, a, b, skip_A))
            t_left, t_right = (slope * s + icpt for slope, icpt in sides)
            out.append((flow * (t_left - t_right), [abs(sides[0][0]), abs(sides[1][0])]))
    if not out:
        raise MDRunError("interface NEMD: no interface between the baths")
    return out


def _bath_layout(state: State, k: int, interfaces: np.ndarray, bath_width_A: float, bin_width_A: float):
    """The bin layout with the hot bath centred in the piece after the first of ``interfaces`` (Å, along
    axis ``k``; cold bath half a cell later) and the interface positions relative to its origin;
    :class:`MDSetupError` when a bath would overlap an interface."""
    length = float(to_numpy(state.cell)[k, k])
    centre = np.mod(interfaces[0] + 0.5 * np.mod(interfaces[1] - interfaces[0], length), length)
    probe = _layout(state, k, bath_width_A, bin_width_A)
    origin = centre - 0.5 * probe.n_bath * probe.bin_width_A
    layout = _layout(state, k, bath_width_A, bin_width_A, origin_A=origin)
    rel = np.mod(interfaces - origin, length)
    bath_end = layout.n_bath * layout.bin_width_A
    if np.any((rel < bath_end) | ((rel >= length / 2) & (rel < length / 2 + bath_end))):
        raise MDSetupError(f"interface NEMD: a bath of {bath_end:.3g} Å overlaps an interface (interfaces at "
                           f"{np.round(interfaces, 2).tolist()} Å in a {length:.4g} Å cell); repeat the cell an even "
                           "number of times along the axis, or use narrower baths")
    return layout, rel


def interface_nemd(ff, atoms_or_state, *, axis="y", delta_T_K: float = 60.0, bath_width_A: float = 4.0,
                   production_steps: int = 100000, settings: RunSettings | None = None,
                   thickness_A: float | None = None, transient_steps: int | None = None, bin_width_A: float = 1.0,
                   n_blocks: int = 10, out_prefix=None, log=print) -> dict:
    """Interfacial thermal conductance across the interfaces normal to ``axis`` by NEMD (module docstring).

    The cell (e.g. ``graphene_borophene_interface`` repeated an even number of times along y) is
    equilibrated (NPT in the plane), the hot bath is centred in the first phase piece after the first
    interface and the cold bath half a cell later; both must lie inside a phase. The temperature jump is
    the mean over the interfaces between the baths of the extrapolated side fits; ``G = q / Delta T``
    (W m^-2 K^-1). Per species of a side: conductivity ``q / |dT/dx|`` and Kapitza length ``kappa / G``.
    """
    settings = settings or RunSettings()
    _check_nemd(production_steps, n_blocks, delta_T_K)
    start = atoms_or_state if isinstance(atoms_or_state, State) else from_atoms(atoms_or_state, species=ff.species)
    k = _axis(start, axis)
    built = find_interfaces(start, k)[0]
    _bath_layout(start, k, built, bath_width_A, bin_width_A)  # geometry errors before any MD
    state, prod = _production(ff, atoms_or_state, settings, log)
    interfaces, after = find_interfaces(state, k)
    if len(interfaces) != len(built):
        raise MDRunError(f"interface NEMD: the structure changed during equilibration: {len(interfaces)} interfaces "
                         f"along {'xyz'[k]} instead of {len(built)} (species mixed across an interface); the "
                         "potential does not keep this heterostructure at this temperature")
    try:
        layout, rel = _bath_layout(state, k, interfaces, bath_width_A, bin_width_A)
    except MDSetupError as exc:  # the input passed: the interfaces moved during the equilibration
        raise MDRunError(f"interface NEMD: the structure changed during equilibration ({exc})") from None
    length = float(to_numpy(state.cell)[k, k])
    origin = layout.origin_A
    transient = _transient_steps(production_steps, transient_steps)
    log(f"interface_nemd: {state.n_atoms} atoms, {'xyz'[k]} length {length:.4g} Å, {len(interfaces)} interfaces, "
        f"delta_T = {delta_T_K} K, {transient} + {production_steps} steps")
    run, rec = _nemd_run(ff, state, prod, layout, delta_T_K, production_steps, transient, n_blocks, log)
    temps = _bin_temperatures(rec, layout)
    area = _cross_section_A2(state, k, thickness_A)
    flux_blocks = _flux_blocks(rec, area, settings.dt_fs)
    skip = layout.bin_width_A
    jump_blocks = [np.mean([f[0] for f in _interface_fits(tb, layout, rel, skip)]) for tb in temps]
    fits = _interface_fits(temps.mean(0), layout, rel, skip)
    q, q_sem = mean_sem_blocks(flux_blocks)
    jump = float(np.mean([f[0] for f in fits]))
    _, jump_sem = mean_sem_blocks(jump_blocks)
    g = q / jump * EV_PER_FS_A2_TO_W_PER_M2
    g_sem = abs(g) * math.hypot(q_sem / q, jump_sem / jump)
    properties = {"conductance_W_per_m2K": g, "conductance_sem_W_per_m2K": g_sem, "temperature_jump_K": jump,
                  "heat_flux_W_per_m2": q * EV_PER_FS_A2_TO_W_PER_M2, "n_atoms": state.n_atoms,
                  "energy_balance_rel": _energy_balance(run, rec)}
    properties.update(_kapitza(fits, rel, after, layout, q, g))
    profile = _profile(np.mod(layout.centres_A + origin, length), temps)
    record = {"method": "interface_nemd", "axis": "xyz"[k], "delta_T_K": delta_T_K, "bath_width_A": bath_width_A,
              "bin_width_A": layout.bin_width_A, "bath_origin_A": origin, "production_steps": production_steps,
              "transient_steps": transient, "thickness_A": thickness_A, "cross_section_A2": area,
              "n_blocks": n_blocks, "cell_A": to_numpy(state.cell).tolist(), **settings.as_dict()}
    h5 = _h5(out_prefix, run, record, properties, {"profile": profile, "interfaces_A": interfaces.tolist()})
    log(f"interface_nemd: G = {g:.4g} +- {g_sem:.2g} W/(m^2 K), jump {jump:.3g} K")
    return {"properties": properties, "profile": profile, "interfaces_A": interfaces.tolist(), "settings": record,
            "h5": h5}


def _kapitza(fits, rel, after, layout: _Layout, q: float, g: float) -> dict:
    """Per species: conductivity ``q / |slope|`` (W/(m K)) from the side fits, Kapitza length ``kappa/G`` (nm)."""
    order = np.argsort(rel)
    species_after = {float(rel[i]): after[i] for i in order}
    ranked = sorted(species_after)
    slopes: dict = {}
    lo_hi = [(seg[0] * layout.bin_width_A, (seg[-1] + 1) * layout.bin_width_A) for seg in layout.segments()]
    inside = [s for s in ranked if any(lo < s < hi for lo, hi in lo_hi)]
    for s, (_, (left, right)) in zip(inside, fits):
        before = species_after[ranked[ranked.index(s) - 1]]  # cyclic: the piece before s
        slopes.setdefault(before, []).append(left)
        slopes.setdefault(species_after[s], []).append(right)
    kappa = {sp: q / float(np.mean(v)) * EV_PER_FS_A_K_TO_W_PER_MK for sp, v in slopes.items()
             if np.all(np.asarray(v) > 0)}  # a flat (too short) side gives no conductivity
    return {"conductivity_by_species_W_per_mK": kappa,
            "kapitza_length_nm": {sp: kap / g * 1e9 for sp, kap in kappa.items()}}
