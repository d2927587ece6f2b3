"""Thermal conductivity by non-equilibrium MD with heat baths (NEMD), and its length extrapolation.

Method (periodic layout, Schelling et al., PRB 65, 144306 (2002)): a hot Langevin slab at ``[0, w)``
and a cold one half a cell later along the transport axis (``T +- delta_T / 2``, :class:`HeatBaths`
in the thermostat slot of the production stages); the heat ``P`` a bath exchanges per unit time flows
out through two cross-sections, so ``q = P / (2 A)``; the gradient is the measured bath temperature
difference over the distance between the bath centres (default) or the mean magnitude of linear fits
of the binned temperature profile over the two segments between the baths (``gradient='fit'``);
``kappa = q / |dT/dx|``. ``length_A`` is the distance between bath centres (half the cell);
:func:`extrapolate_length` fits ``1/kappa = 1/kappa_inf + c / L``.

Sequence: NPT in the plane at T (``settings.equilibrate_steps``), then at that cell a transient
with the baths on and the production, during which an observer sums per block the kinetic energy
per bin and the bath energies. Uncertainties are block averages within one run (``n_blocks``
consecutive blocks); seeds are combined by the caller. With ``out_prefix`` and
``settings.checkpoint_every`` a run checkpoints (the block sums included) and ``resume`` continues it to
the result of an uninterrupted run. The bin layout, the
bath run and the profile analysis are shared with :mod:`.thermal_interface`.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..analysis import BlockSums, mean_sem_blocks
from common.arrays import array_module
from ..errors import MDRunError, MDSetupError
from ..simulation import Stage
from ..state import State
from ..units import EV_PER_FS_A2_TO_W_PER_M2, EV_PER_FS_A_K_TO_W_PER_MK, KB
from .common import GRADIENTS, RunSettings
from .thermal_common import (block_sums_arrays, fit_line, fractions, production, restore_block_sums, run_production,
                             transport_axis, transport_volume, write_h5)


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
        xp = array_module(s.velocities)
        c = math.exp(-dt_fs / self.damping_fs)
        v = s.velocities.copy()
        for k, (idx, t) in enumerate(zip(self.groups, self.temperatures_K)):
            vk, m = v[idx], s.masses[idx][:, None]
            new = c * vk + xp.sqrt((1 - c * c) * KB * t / m) * md.rng.standard_normal(vk.shape)
            new = new - (m * (new - vk)).sum(0) / m.sum()
            self.last[k] = float(0.5 * (m * (vk * vk - new * new)).sum())
            v[idx] = new
        return md.replace(state=s.replace(velocities=v), heat=md.heat + float(self.last.sum()))


class _BathRecorder:
    """Per block: kinetic sums ``sum m v^2`` per bin (eV) and the bath energies (eV)."""

    def __init__(self, baths: HeatBaths, bins, n_bins: int, n_steps: int, n_blocks: int, xp):
        self.baths, self.bins, self.n_bins = baths, xp.asarray(bins), n_bins
        self.blocks = BlockSums(n_steps, n_blocks)

    def __call__(self, md):
        s = md.state
        xp = array_module(s.velocities)
        mv2 = s.masses * (s.velocities * s.velocities).sum(1)
        self.blocks.add(mv2=xp.bincount(self.bins, weights=mv2, minlength=self.n_bins), hot=-self.baths.last[0],
                        cold=self.baths.last[1])

    def checkpoint_arrays(self) -> dict:
        return block_sums_arrays(self.blocks)

    def restore_arrays(self, arrays: dict) -> None:
        restore_block_sums(self.blocks, arrays, array_module(self.bins))


@dataclasses.dataclass
class Layout:
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


def bin_layout(state: State, k: int, bath_width_A: float, bin_width_A: float, origin_A: float = 0.0) -> Layout:
    """The :class:`Layout` along axis ``k`` from ``origin_A`` (Å): an even number of bins about
    ``bin_width_A`` wide, baths of about ``bath_width_A`` (Å); :class:`MDSetupError` when fewer than 5
    bins would remain between the baths."""
    length = float(state.cell[k, k])
    n_bins = 2 * max(1, int(round(length / (2 * bin_width_A))))
    n_bath = max(1, int(round(bath_width_A / (length / n_bins))))
    if n_bins // 2 - n_bath < 5:
        raise MDSetupError(f"NEMD: a {length:.3g} Å cell with {n_bins} bins of {length / n_bins:.3g} Å and baths of "
                           f"{n_bath} bins leaves fewer than 5 bins between the baths; use a longer cell, "
                           "narrower baths or narrower bins")
    bins = np.minimum((fractions(state, k, origin_A) * n_bins).astype(int), n_bins - 1)
    return Layout(origin_A, length, n_bins, n_bath, bins)


@dataclasses.dataclass
class BathRun:
    """A finished bath run: ``run`` (RunResult), ``recorder`` (block sums), ``temperatures_K``
    [blocks, bins] (NaN for empty bins), ``flux_blocks`` [blocks] (eV/(fs Å^2)), ``area_A2`` (Å^2)."""

    run: object
    recorder: object
    temperatures_K: np.ndarray
    flux_blocks: np.ndarray
    area_A2: float


def run_baths(ff, state, settings, layout: Layout, k: int, delta_T_K, production_steps, transient_steps, n_blocks,
              thickness_A, log, *, out_prefix=None, resume: bool = False) -> BathRun:
    """Run the baths along axis ``k`` (transient, then production) and reduce the blocks (:class:`BathRun`);
    ``out_prefix``, ``resume``: checkpoints, as :func:`.thermal_common.run_production`."""
    xp = array_module(state.positions)
    half = layout.n_bins // 2
    hot = np.flatnonzero(layout.bins < layout.n_bath)
    cold = np.flatnonzero((layout.bins >= half) & (layout.bins < half + layout.n_bath))
    t = settings.temperature_K
    if t - delta_T_K / 2 < 0:
        raise MDSetupError(f"NEMD: delta_T_K={delta_T_K} puts the cold bath below 0 K at T = {t} K")
    baths = HeatBaths([xp.asarray(hot), xp.asarray(cold)], [t + delta_T_K / 2, t - delta_T_K / 2],
                      settings.thermostat_tau_fs)
    recorder = _BathRecorder(baths, layout.bins, layout.n_bins, production_steps, n_blocks, xp)
    stages = [Stage("nemd_transient", transient_steps, thermostat=baths),
              Stage("nemd", production_steps, thermostat=baths, observers=(recorder,))]
    run = run_production(ff, state, settings, stages, log, out_prefix=out_prefix, resume=resume)
    area = cross_section_A2(state, k, thickness_A)
    return BathRun(run, recorder, bin_temperatures(recorder, layout), block_fluxes(recorder, area, settings.dt_fs),
                   area)


def transient_length(production_steps: int, transient_steps) -> int:
    """Steps before the NEMD production: ``transient_steps``, or a quarter of the production by default."""
    return production_steps // 4 if transient_steps is None else int(transient_steps)


def block_fluxes(rec, area_A2: float, dt_fs: float):
    """Heat flux per block (eV/(fs Å^2)): the mean power of the two baths (eV/fs), through the two
    cross-sections ``area_A2`` of the periodic layout (heat leaves the hot bath both ways)."""
    power = 0.5 * (rec.blocks.means("hot") + rec.blocks.means("cold")) / dt_fs
    return power / (2.0 * area_A2)


def bin_temperatures(recorder: _BathRecorder, layout: Layout) -> np.ndarray:
    """Temperature per block and bin [blocks, bins] (K): ``<sum m v^2> / (3 N_bin k_B)``."""
    counts = np.bincount(layout.bins, minlength=layout.n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return recorder.blocks.means("mv2") / (3.0 * counts * KB)


def temperature_profile(position_A, temps) -> dict:
    """Mean temperature profile of the populated bins: ``{"position_A", "temperature_K"}`` lists."""
    t = temps.mean(0)
    keep = np.isfinite(t)
    return {"position_A": np.asarray(position_A)[keep].tolist(), "temperature_K": t[keep].tolist()}


def _bath_temperatures(temps, layout: Layout) -> list:
    """Measured [hot, cold] bath temperatures (K): atom-weighted means over the bath bins."""
    counts = np.bincount(layout.bins, minlength=layout.n_bins).astype(float)
    half = layout.n_bins // 2
    out = []
    for lo in (0, half):
        b = slice(lo, lo + layout.n_bath)
        out.append(float(np.nansum(temps[b] * counts[b]) / counts[b].sum()))
    return out


def _bath_gradient(temps, layout: Layout) -> float:
    """(T_hot - T_cold) measured in the baths over the distance between their centres (K/Å)."""
    hot, cold = _bath_temperatures(temps, layout)
    return (hot - cold) / (layout.length_A / 2)


def _fit_gradient(temps: np.ndarray, layout: Layout, skip: int = 1) -> float:
    """Mean magnitude (K/Å) of the linear fits over the two segments, ``skip`` bins off each bath."""
    x = layout.centres_A
    slopes = []
    for sign, seg in zip((-1.0, 1.0), layout.segments()):
        use = [b for b in seg[skip:len(seg) - skip] if np.isfinite(temps[b])]
        if len(use) < 3:
            raise MDRunError("NEMD: fewer than 3 populated bins between the baths; use a longer cell")
        slopes.append(sign * fit_line(x[use], temps[use])[0])
    return float(np.mean(slopes))


def cross_section_A2(state: State, k: int, thickness_A) -> float:
    return transport_volume(state, thickness_A) / float(state.cell[k, k])


def nemd(ff, atoms_or_state, *, direction="x", delta_T_K: float = 60.0, bath_width_A: float = 5.0,
         production_steps: int = 100000, settings: RunSettings | None = None, thickness_A: float | None = None,
         transient_steps: int | None = None, bin_width_A: float = 2.5, n_blocks: int = 10, gradient: str = "baths",
         out_prefix=None, resume: bool = False, log=print) -> dict:
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
    ``energy_balance_rel`` = |E_in - E_out - dE| / E_in. out_prefix: write ``<out_prefix>.h5`` and, with
    ``settings.checkpoint_every``, checkpoints (:mod:`.thermal_common`; the block sums so far included);
    resume: continue from them.
    """
    settings = settings or RunSettings()
    check_nemd_args(production_steps, n_blocks, delta_T_K)
    if gradient not in GRADIENTS:
        raise MDSetupError(f"nemd: gradient={gradient!r} is not one of {', '.join(GRADIENTS)}")
    state, prod = production(ff, atoms_or_state, settings, log, out_prefix=out_prefix, resume=resume)
    k = transport_axis(state, direction)
    layout = bin_layout(state, k, bath_width_A, bin_width_A)
    transient = transient_length(production_steps, transient_steps)
    log(f"nemd: {state.n_atoms} atoms, {'xyz'[k]} length {layout.length_A:.4g} Å, delta_T = {delta_T_K} K, "
        f"baths {layout.n_bath * layout.bin_width_A:.3g} Å, {transient} + {production_steps} steps")
    baths = run_baths(ff, state, prod, layout, k, delta_T_K, production_steps, transient, n_blocks, thickness_A, log,
                      out_prefix=out_prefix, resume=resume)
    temps = baths.temperatures_K
    grad_fn = _fit_gradient if gradient == "fit" else _bath_gradient
    grad_blocks = np.array([grad_fn(tb, layout) for tb in temps])  # K/Å
    q, q_sem = mean_sem_blocks(baths.flux_blocks)
    g = grad_fn(temps.mean(0), layout)
    _, g_sem = mean_sem_blocks(grad_blocks)
    kappa = q / g * EV_PER_FS_A_K_TO_W_PER_MK
    sem = abs(kappa) * math.hypot(q_sem / q, g_sem / g)
    properties = {"conductivity_W_per_mK": kappa, "conductivity_sem_W_per_mK": sem,
                  "heat_flux_W_per_m2": q * EV_PER_FS_A2_TO_W_PER_M2, "gradient_K_per_m": g * 1e10,
                  "length_A": layout.length_A / 2, "n_atoms": state.n_atoms,
                  "bath_temperatures_K": _bath_temperatures(temps.mean(0), layout),
                  "energy_balance_rel": energy_balance(baths)}
    profile = temperature_profile(layout.centres_A, temps)
    record = {"method": "nemd", "direction": "xyz"[k], "delta_T_K": delta_T_K, "bath_width_A": bath_width_A,
              "bin_width_A": layout.bin_width_A, "n_bath_bins": layout.n_bath, "gradient": gradient,
              "production_steps": production_steps,
              "transient_steps": transient, "thickness_A": thickness_A, "cross_section_A2": baths.area_A2,
              "n_blocks": n_blocks, "cell_A": state.cell.tolist(), **settings.as_dict()}
    h5 = write_h5(out_prefix, baths.run, record, properties, {"profile": profile})
    log(f"nemd: L = {layout.length_A / 2:.4g} Å, kappa = {kappa:.4g} +- {sem:.2g} W/(m K), "
        f"energy balance {properties['energy_balance_rel']:.2g}")
    return {"properties": properties, "profile": profile, "settings": record, "h5": h5}


def check_nemd_args(production_steps, n_blocks, delta_T_K):
    if production_steps < n_blocks or n_blocks < 2 or delta_T_K <= 0:
        raise MDSetupError(f"NEMD: production_steps={production_steps} must be >= n_blocks={n_blocks} >= 2 and "
                           f"delta_T_K={delta_T_K} > 0")


def energy_balance(baths: BathRun) -> float:
    """|E_in(hot) - E_out(cold) - (E_end - E_start)| / E_in over the production stage of ``baths``."""
    run, rec = baths.run, baths.recorder
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
