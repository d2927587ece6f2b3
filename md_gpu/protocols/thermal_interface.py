"""Interfacial thermal conductance by NEMD (interface NEMD).

Method: the NEMD layout of :mod:`.thermal_nemd` with the baths centred inside one phase of a
heterostructure stacked along the transport axis; at each interface in a segment between the baths
the linear fits of the temperature bins on both sides are extrapolated to the interface position and
``G = q / Delta T`` (W m^-2 K^-1); per phase, the conductivity ``q / |dT/dx|`` of its side fits and
the Kapitza length ``kappa / G``. The geometry (interfaces, baths inside a phase) is checked on the
input before any MD and again after the equilibration.
"""
from __future__ import annotations

import math

import numpy as np

from ..analysis import mean_sem_blocks
from ..backend import to_numpy
from ..errors import MDRunError, MDSetupError
from ..state import State, from_atoms
from ..units import EV_PER_FS_A2_TO_W_PER_M2, EV_PER_FS_A_K_TO_W_PER_MK
from .common import RunSettings
from .thermal_common import fit_line, fractions, production, transport_axis, write_h5
from .thermal_nemd import (Layout, bin_layout, check_nemd_args, energy_balance, run_baths, temperature_profile,
                           transient_length)


def find_interfaces(state: State, k: int, phases: dict | None = None) -> tuple[np.ndarray, list]:
    """Interface positions (Å, in [0, L)) along axis ``k`` and the label of the piece after each.

    The atoms sorted along the axis form runs of one label (lateral interfaces with straight edges do
    not overlap along their normal); an interface lies midway between the last atom of one run and
    the first of the next, cyclically. The label of an atom is its species, or with ``phases``
    (phase name -> its species, e.g. ``{"graphene": ["C"], "hbn": ["B", "N"]}``) the name of the phase
    its species belongs to, so that the alternating B and N rows of one h-BN stripe are one piece.
    """
    length = float(state.cell[k, k])
    x = fractions(state, k) * length
    order = np.argsort(x)
    x, types = x[order], to_numpy(state.types)[order]
    labels = list(state.species)
    if phases:
        owner = {}
        for name, species in phases.items():
            for s in species:
                if s in owner:
                    raise MDSetupError(f"interface NEMD: species {s} belongs to phases {owner[s]} and {name}; the "
                                       "interfaces are found from the species of each phase, which must differ")
                owner[s] = name
        missing = sorted(set(state.species) - set(owner))
        if missing:
            raise MDSetupError(f"interface NEMD: species {', '.join(missing)} of the cell belong to none of the phases "
                               f"{', '.join(phases)}")
        names = list(phases)
        labels = [owner[s] for s in state.species]
        types = np.array([names.index(labels[t]) for t in types])
        labels = names
    change = np.flatnonzero(types != np.roll(types, 1))  # first atom of each run
    if change.size < 2:
        raise MDSetupError(f"interface NEMD: no interface along {'xyz'[k]} (one species along the axis); use a "
                           "heterostructure cell stacked along the transport axis")
    prev = x[change - 1] - np.where(change == 0, length, 0.0)
    positions = np.mod(0.5 * (prev + x[change]), length)
    return positions, [labels[t] for t in types[change]]


def _side_fit(x, temps, seg, a: float, b: float, skip_A: float) -> tuple[float, float]:
    """Line (slope K/Å, intercept K) through the bins of ``seg`` between ``a`` and ``b`` (Å), ``skip_A``
    off both ends; a piece too short for two such bins takes its bins' mean (slope 0, flat)."""
    for margin in (skip_A, 0.0):
        use = [i for i in seg if a + margin < x[i] < b - margin and np.isfinite(temps[i])]
        if len(use) >= 2:
            return fit_line(x[use], temps[use])
    if not use:
        raise MDRunError(f"interface NEMD: no temperature bin between {a:.3g} and {b:.3g} Å; repeat the "
                         "phases along the axis, use narrower baths or narrower bins (bin_width_A)")
    return 0.0, float(np.mean(temps[use]))


def _interface_fits(temps, layout: Layout, interfaces, skip_A: float):
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
    length = float(state.cell[k, k])
    centre = np.mod(interfaces[0] + 0.5 * np.mod(interfaces[1] - interfaces[0], length), length)
    probe = bin_layout(state, k, bath_width_A, bin_width_A)
    origin = centre - 0.5 * probe.n_bath * probe.bin_width_A
    layout = bin_layout(state, k, bath_width_A, bin_width_A, origin_A=origin)
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
                   n_blocks: int = 10, phases: dict | None = None, out_prefix=None, resume: bool = False,
                   log=print) -> dict:
    """Interfacial thermal conductance across the interfaces normal to ``axis`` by NEMD (module docstring).

    The cell (e.g. an interface system's 0 K cell repeated an even number of times along y) is
    equilibrated (NPT in the plane), the hot bath is centred in the first phase piece after the first
    interface and the cold bath half a cell later; both must lie inside a phase. The temperature jump is
    the mean over the interfaces between the baths of the extrapolated side fits; ``G = q / Delta T``
    (W m^-2 K^-1). Per side (its species, or its phase with ``phases``: :func:`find_interfaces`):
    conductivity ``q / |dT/dx|`` and Kapitza length ``kappa / G``. out_prefix: write ``<out_prefix>.h5``
    and, with ``settings.checkpoint_every``, checkpoints (:mod:`.thermal_common`); resume: continue from them.
    """
    settings = settings or RunSettings()
    check_nemd_args(production_steps, n_blocks, delta_T_K)
    start = atoms_or_state if isinstance(atoms_or_state, State) else from_atoms(atoms_or_state, species=ff.species)
    k = transport_axis(start, axis)
    built = find_interfaces(start, k, phases)[0]
    _bath_layout(start, k, built, bath_width_A, bin_width_A)  # geometry errors before any MD
    state, prod = production(ff, atoms_or_state, settings, log, out_prefix=out_prefix, resume=resume)
    interfaces, after = find_interfaces(state, k, phases)
    if len(interfaces) != len(built):
        raise MDRunError(f"interface NEMD: the structure changed during equilibration: {len(interfaces)} interfaces "
                         f"along {'xyz'[k]} instead of {len(built)} (species mixed across an interface); the "
                         "potential does not keep this heterostructure at this temperature")
    try:
        layout, rel = _bath_layout(state, k, interfaces, bath_width_A, bin_width_A)
    except MDSetupError as exc:  # the input passed: the interfaces moved during the equilibration
        raise MDRunError(f"interface NEMD: the structure changed during equilibration ({exc})") from None
    length = float(state.cell[k, k])
    origin = layout.origin_A
    transient = transient_length(production_steps, transient_steps)
    log(f"interface_nemd: {state.n_atoms} atoms, {'xyz'[k]} length {length:.4g} Å, {len(interfaces)} interfaces, "
        f"delta_T = {delta_T_K} K, {transient} + {production_steps} steps")
    baths = run_baths(ff, state, prod, layout, k, delta_T_K, production_steps, transient, n_blocks, thickness_A, log,
                      out_prefix=out_prefix, resume=resume)
    temps = baths.temperatures_K
    skip = layout.bin_width_A
    jump_blocks = [np.mean([f[0] for f in _interface_fits(tb, layout, rel, skip)]) for tb in temps]
    fits = _interface_fits(temps.mean(0), layout, rel, skip)
    q, q_sem = mean_sem_blocks(baths.flux_blocks)
    jump = float(np.mean([f[0] for f in fits]))
    _, jump_sem = mean_sem_blocks(jump_blocks)
    g = q / jump * EV_PER_FS_A2_TO_W_PER_M2
    g_sem = abs(g) * math.hypot(q_sem / q, jump_sem / jump)
    properties = {"conductance_W_per_m2K": g, "conductance_sem_W_per_m2K": g_sem, "temperature_jump_K": jump,
                  "heat_flux_W_per_m2": q * EV_PER_FS_A2_TO_W_PER_M2, "n_atoms": state.n_atoms,
                  "energy_balance_rel": energy_balance(baths)}
    properties.update(_kapitza(fits, rel, after, layout, q, g))
    profile = temperature_profile(np.mod(layout.centres_A + origin, length), temps)
    record = {"method": "interface_nemd", "axis": "xyz"[k], "delta_T_K": delta_T_K, "bath_width_A": bath_width_A,
              "bin_width_A": layout.bin_width_A, "bath_origin_A": origin, "production_steps": production_steps,
              "transient_steps": transient, "thickness_A": thickness_A, "cross_section_A2": baths.area_A2,
              "n_blocks": n_blocks, "cell_A": state.cell.tolist(), **settings.as_dict()}
    h5 = write_h5(out_prefix, baths.run, record, properties, {"profile": profile, "interfaces_A": interfaces.tolist()})
    log(f"interface_nemd: G = {g:.4g} +- {g_sem:.2g} W/(m^2 K), jump {jump:.3g} K")
    return {"properties": properties, "profile": profile, "interfaces_A": interfaces.tolist(), "settings": record,
            "h5": h5}


def _kapitza(fits, rel, after, layout: Layout, q: float, g: float) -> dict:
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
