"""Uniaxial tension at a constant engineering strain rate until fracture or ``max_strain``.

Protocol (data, run by :class:`md_gpu.simulation.Simulation`):

1. ``equilibrate``: thermostat at T, barostat holding zero stress on the
   periodic axes (in-plane only for a 2D sheet), ``equilibrate_steps``;
2. ``tension``: stretch along ``direction`` at ``strain_rate_per_s``; the
   transverse periodic axes are either held at zero stress
   (``transverse='stress'``: uniaxial stress) or kept at fixed length
   (``transverse='strain'``); the stage pauses at every *sustained* stress drop
   and the structure decides, at the drop and once more one drop window later: a
   crack ends the run (fracture), no crack is a yield event and the tension goes on
   (:func:`tensile`, rules 2 and 3 below).

For another in-plane direction, rotate the sheet (and its cell) first so that
the direction is x or y. :func:`interface_tensile` loads a heterostructure cell
perpendicular to its interface lines.

Rules:

1. *Fit window* (``fit="auto"``, :func:`md_gpu.analysis.choose_fit_window`): the
   modulus and Poisson's ratio are slopes over ``[0, h]``, ``h`` minimising the total error
   of the modulus (its standard error, counting the correlation of MD samples, plus the bias a
   curvature of the curve gives a straight line, with the uncertainty of that curvature),
   between ``max(0.5 %, 20 rows)`` and ``min(fit_window[1], half the strain at peak stress)``;
   that total is the error reported. ``fit="fixed"``: over ``fit_window``, statistical errors.
2. *Transverse stress during loading* (``transverse='stress'``, :func:`transverse_control`):
   stochastic cell rescaling [1] with, per transverse axis k, ``B_k = 1 / (C_tt^-1)_kk``
   (stiffness of axis k with the axial length fixed and the other transverse axes free, so
   each axis relaxes in ``barostat_tau_fs``) and the feed-forward contraction
   ``d ln L_k = -nu_k d ln L_axial``, ``nu_k = -S_ka / S_aa`` (S = C^-1 over the periodic
   axes): C from static finite differences of the force field on the starting structure,
   positions relaxed. The barostat then only corrects the difference between the thermal and
   the static Poisson contraction, instead of trailing the ramp by ``nu r B tau``. The
   feed-forward assumes a quasi-static test: it is left out when the strain accrued while a
   sound wave crosses the cell transversely (``r L_t / sqrt(C_tt / rho)``) exceeds
   ``fit_window[1]`` (a 16-atom Cu cell at 1e12 1/s: 0.2); such a pull is closer to uniaxial
   strain, as the material's inertia makes it.
   The equilibration keeps the barostat of the other protocols.
3. *Failure*: a sustained drop (running mean over ``drop_window_strain``, at least 5 thermo rows,
   below ``1 - failure_drop`` of its peak, past ``settings.failure_min_strain``) pauses the run;
   it is a fracture when the structure shows a crack across the whole cross-section
   (:func:`md_gpu.protocols.fracture.fractured`, bonds shorter than the first-shell cutoff of
   the starting structure, the gap between shells absorbing the stretch of intact bonds:
   graphene 1.42 | 1.94 Å, fcc Cu 2.55 | 3.08 Å): the bond network no longer wraps around the
   cell along the load (a clean crack at any angle), or a plane normal to the load is crossed by at most a quarter of the
   bonds of the starting structure's weakest plane (a crack bridged by an atomic chain, as
   graphene leaves). Bonds that have just broken may not yet have opened past that cutoff (the
   crack still runs, the pieces still recoil), so a structure without a crack is looked at again
   after one more drop window of tension (``window_rows`` thermo rows: at least 5, so at fast pulls
   more than ``drop_window_strain``; recorded as ``look_strain``), in a segment without the drop
   detector; a crack then is a fracture dated at the drop (``fracture_strain``; the strain of the
   look is recorded). A yield followed by a fracture within the look reads as a fracture at the drop.
   Otherwise it is yield (slip keeps the network connected) and the tension
   continues on the same strain line, in a new segment (a new
   :class:`~md_gpu.simulation.Simulation` from the paused state, whose detector again waits
   ``failure_min_strain`` before it may pause the run; the final structure is checked too).
   A segment after a drop that blows up (:class:`~md_gpu.errors.MDRunError`: the broken or yielded
   structure left the potential's domain, as a passively fitted potential's pieces can) ends the run
   as failed by *collapse*: the curve up to the last row that passed the MD loop's guards stays, with
   the moduli and the strength it gives (the trajectory file may hold frames past it); the event
   names the drop it followed and the reason. The extrapolation control's stop
   (:class:`~md_gpu.errors.MDExtrapolationError`) is raised on, never absorbed.
   The yield reported is the peak before the first drop of ``yield_drop`` (20 %) that also
   exceeds 4 standard errors of the smoothed stress (at small stresses 20 % can be noise) and
   is not the failure itself.

Outputs: the stress-strain curve (strain, transverse strain, stress in GPa and,
for a sheet, N/m and GPa at the effective thickness), Young's modulus and Poisson's
ratio with standard errors and window, mean transverse stress during loading, UTS,
failure strain, yield, failure mode; optionally an HDF5 file, an extxyz trajectory and
checkpoints.

[1] M. Bernetti, G. Bussi, J. Chem. Phys. 153, 114107 (2020).
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..analysis import stress_strain_curve, tensile_properties, transverse_stress_stats
from ..cell_control import LoadingBarostat, axis_index
from ..errors import MDExtrapolationError, MDRunError, MDSetupError
from ..io import write_run_h5
from ..simulation import Stage
from ..state import State, to_atoms
from ..units import EV_PER_A3_TO_GPA, GPA_A_TO_N_PER_M, PER_S_TO_PER_FS
from .common import (TRANSVERSE, RunSettings, barostat_for, checkpoint_file, estimate_modulus, in_plane_axes,
                     prepare_state, simulation)
# failure detection (rule 3) lives in .fracture; its names stay importable from here
from .fracture import crossing_bonds, first_shell_cutoff_of, fractured, yield_point

FITS = ("auto", "fixed")
AMU_PER_A3_TO_KG_PER_M3 = 1660.539  # density
M_PER_S_TO_A_PER_FS = 1e-5          # speed
MIN_DROP_ROWS = 5  # a drop must last at least this many thermo rows, however fast the pull
MAX_SEGMENTS = 50  # yield events at most (each pauses the run and continues it in a new segment)


def transverse_control(ff, state: State, axial: str, transverse_axes, *, strain: float = 0.002) -> dict:
    """``{"moduli_GPa", "poisson", "C_GPa", "sound_time_fs"}`` for
    :class:`md_gpu.cell_control.LoadingBarostat` (module docstring, rule 2).

    C [p, p] (GPa, of the cell as simulated: a sheet's stress includes its vacuum): normal
    stiffness over the periodic axes by central differences (+-``strain``) of the static stress about
    the structure relaxed to zero normal stress on the periodic axes (the state the equilibration
    reaches, less thermal expansion), positions relaxed (ASE BFGS, fmax 1e-3 eV/Å) in every
    strained cell. Falls back to the
    affine :func:`~md_gpu.protocols.common.estimate_modulus` and no feed-forward when C is not
    positive definite (a structure far from a minimum). sound_time_fs: the longest transverse cell
    length over the longitudinal sound speed ``sqrt(C_kk / rho)`` along it (fs), the time the
    cell needs to contract in earnest."""
    from common.cell_filter import frechet_cell_filter
    from ase.optimize import BFGS

    from ..calculator import MDCalculator

    periodic = [a for a in "xyz" if state.pbc["xyz".index(a)]]
    atoms = to_atoms(state)
    atoms.set_velocities(np.zeros((len(atoms), 3)))
    atoms.calc = MDCalculator(ff)
    BFGS(frechet_cell_filter(atoms, mask=[bool(p) for p in state.pbc] + [False] * 3), logfile=None).run(
        fmax=1e-3, steps=300)

    def static_stress(cell_scale):
        a = atoms.copy()
        a.set_cell(atoms.cell.array * np.asarray(cell_scale)[:, None], scale_atoms=True)
        a.calc = MDCalculator(ff)
        BFGS(a, logfile=None).run(fmax=1e-3, steps=200)
        return a.get_stress(voigt=False) * EV_PER_A3_TO_GPA

    C = np.zeros((len(periodic), len(periodic)))
    for col, ax in enumerate(periodic):
        pair = []
        for sign in (1, -1):
            scale = np.ones(3)
            scale["xyz".index(ax)] += sign * strain
            pair.append(static_stress(scale))
        for row, bx in enumerate(periodic):
            k = "xyz".index(bx)
            C[row, col] = (pair[0][k, k] - pair[1][k, k]) / (2 * strain)
    C = 0.5 * (C + C.T)
    t = [periodic.index(a) for a in transverse_axes]
    a = periodic.index(axial)
    if np.all(np.isfinite(C)) and np.all(np.linalg.eigvalsh(C) > 0):
        S = np.linalg.inv(C)
        moduli = [1.0 / np.linalg.inv(C[np.ix_(t, t)])[m, m] for m in range(len(t))]
        poisson = [-S[k, a] / S[a, a] for k in t]
    else:
        moduli = [estimate_modulus(ff, state, transverse_axes)] * len(t)
        poisson = [0.0] * len(t)
    # the time a longitudinal sound wave takes to cross the longest transverse length of the cell
    rho = float(np.sum(atoms.get_masses())) / atoms.get_volume() * AMU_PER_A3_TO_KG_PER_M3
    lengths = [float(atoms.cell[i, i]) for i in ("xyz".index(periodic[k]) for k in t)]
    speeds = [np.sqrt(max(C[k, k], 1e-12) * 1e9 / rho) * M_PER_S_TO_A_PER_FS for k in t]
    sound = max(L / c for L, c in zip(lengths, speeds)) if t else 0.0
    return {"moduli_GPa": [float(b) for b in moduli], "poisson": [float(v) for v in poisson], "C_GPa": C.tolist(),
            "sound_time_fs": float(sound)}


def tensile(ff, atoms_or_state, *, direction="x", strain_rate_per_s: float = 1e9, max_strain: float = 0.3,
            transverse: str = "stress", settings: RunSettings | None = None, thickness_A: float | None = None,
            fit_window=(0.0, 0.05), fit: str = "auto", loading_barostat: str = "derived",
            drop_window_strain: float = 0.005, failure_drop: float = 0.5, yield_drop: float = 0.2,
            out_prefix=None, resume: bool = False, extrapolation=None, log=print) -> dict:
    """Run the tensile test; return ``{"properties", "curve", "settings", "h5", "run"}`` (``run``: the
    :class:`~md_gpu.simulation.RunResult` of the last segment; ``settings["events"]``: every pause,
    ``{"strain": of the drop, "kind": "yield" | "fracture", "checked_at_strain"}``, a crack found in the
    final structure without a pause (``"strain"``: the end), or the end by collapse ``{"strain": of the
    last kept row, "kind": "collapse", "after_drop_at_strain", "reason"}``).

    ff: force field; atoms_or_state: ase.Atoms or State; direction: 'x' | 'y' (or 'z' for
    bulk); strain_rate_per_s (1/s); max_strain (engineering); transverse: 'stress' |
    'strain'; thickness_A: effective thickness of a sheet (Å) to quote GPa; fit_window:
    ``(lo, hi)`` strain range of the modulus fit, with ``fit="fixed"``, or ``hi`` the upper
    bound of the automatic window (``fit="auto"``, module docstring rule 1);
    loading_barostat: "derived" (rule 2) or "settings" (the equilibration's barostat, a single
    affine B and no feed-forward: the old behaviour); drop_window_strain: strain over which a
    stress drop must last; failure_drop: fraction of the peak a drop must lose to pause the run
    for a structure check (rule 3); yield_drop: the same for reporting yield; out_prefix: path
    prefix of ``.h5``, ``.extxyz``, ``.ckpt.npz`` (the second look at the k-th drop runs from
    ``.look<k>.ckpt.npz``, the tension after the k-th yield from ``.seg<k>.ckpt.npz``); resume: continue
    from those checkpoints (those that exist).

    Properties (2D sheet: ``*_N_per_m`` and GPa at ``thickness_A``; bulk cell: ``*_GPa``):
    ``youngs_modulus_*``, ``youngs_modulus_fit_sem_*``, ``fit_window_strain``,
    ``poisson_ratio`` (the transverse strain averaged over the transverse periodic axes: one for a
    sheet, two for a bulk cell), ``poisson_ratio_fit_sem``, ``poisson_fit_window_strain`` (its own
    window, :func:`md_gpu.analysis.tensile_properties`), ``transverse_stress_mean_*`` and
    ``transverse_stress_sem_*`` (over the loading, block averages), ``ultimate_strength_*`` (the
    peak stress), ``failure_strain`` (strain at the peak), ``failure_mode`` ("fracture" | "collapse": the
    run blew up after a drop, rule 3 | "none": reached ``max_strain``), ``failed`` (fracture or
    collapse), ``fracture_strain`` (the drop at which the crack was found, or the end of a run whose final
    structure shows one; NaN without a crack),
    ``yield_strain`` and ``yield_stress_*`` (NaN without yield).
    """
    settings = settings or RunSettings()
    if transverse not in TRANSVERSE:
        raise MDSetupError(f"transverse: {transverse!r} is not one of {', '.join(TRANSVERSE)}")
    if fit not in FITS:
        raise MDSetupError(f"fit: {fit!r} is not one of {', '.join(FITS)}")
    if loading_barostat not in ("derived", "settings"):
        raise MDSetupError(f"loading_barostat: {loading_barostat!r} is not one of derived, settings")
    if strain_rate_per_s <= 0 or max_strain <= 0:
        raise MDSetupError(f"strain_rate_per_s={strain_rate_per_s} and max_strain={max_strain} must be > 0")
    if not (0 < failure_drop < 1 and 0 < yield_drop < 1 and drop_window_strain > 0):
        raise MDSetupError(f"failure_drop={failure_drop} and yield_drop={yield_drop} must be in (0, 1), "
                           f"drop_window_strain={drop_window_strain} > 0")
    state = prepare_state(ff, atoms_or_state, settings)
    a = axis_index(direction)
    if not state.pbc[a]:
        raise MDSetupError(f"direction {direction!r} is not periodic in this cell; a sheet is pulled along x or y")
    axis = "xyz"[a]
    periodic = in_plane_axes(state)
    others = tuple(ax for ax in periodic if ax != axis)
    sheet = not state.pbc[2]
    rate_per_fs = strain_rate_per_s * PER_S_TO_PER_FS
    steps = int(math.ceil(max_strain / (rate_per_fs * settings.dt_fs)))
    row_strain = rate_per_fs * settings.dt_fs * settings.thermo_every
    window_rows = max(int(math.ceil(drop_window_strain / row_strain)), MIN_DROP_ROWS)
    bond_cutoff, reference = first_shell_cutoff_of(atoms_or_state, state)
    bond_cutoff = min(bond_cutoff, float(ff.cutoff))  # atoms farther apart do not interact
    reference_min = int(crossing_bonds(reference, axis, bond_cutoff).min())

    def cracked_now(md_state) -> bool:
        return fractured(to_atoms(md_state), axis, bond_cutoff, reference_min)

    control = None
    if transverse == "stress" and others and loading_barostat == "derived":
        control = transverse_control(ff, state, axis, others)
        lag = rate_per_fs * control["sound_time_fs"]
        control["quasi_static"] = bool(lag <= fit_window[1])
        if not control["quasi_static"]:
            control["poisson"] = [0.0] * len(others)
            log(f"tensile: the cell contracts over {control['sound_time_fs']:.3g} fs (sound crossing), "
                f"{lag:.3g} strain at this rate, more than the fit window {fit_window[1]:g}: no "
                "quasi-static uniaxial stress, so no feed-forward contraction")
        log(f"tensile: loading barostat B = {', '.join(f'{b:.3g}' for b in control['moduli_GPa'])} GPa, "
            f"feed-forward nu = {', '.join(f'{v:.3g}' for v in control['poisson'])} ({', '.join(others)})")

    def tension_stage(L0_A, L_start_A, n_steps, stop_on_failure=True):
        """The tension on the strain line L0 (1 + r t) from the current length L_start."""
        rate = strain_rate_per_s * L0_A / L_start_A
        barostat = None
        if transverse == "stress" and control is not None:
            barostat = LoadingBarostat(others, moduli_GPa=control["moduli_GPa"], poisson=control["poisson"],
                                       axial=axis, strain_rate_per_s=strain_rate_per_s, L0_A=L0_A,
                                       tau_fs=settings.barostat_tau_fs, stochastic=settings.barostat_stochastic,
                                       temperature_K=settings.temperature_K, pbc=state.pbc)
        elif transverse == "stress":
            barostat = barostat_for(ff, state, others, settings)
        return Stage("tension", n_steps, thermostat=settings.make_thermostat(), barostat=barostat,
                     deform_axis=axis, strain_rate_per_s=rate, stop_on_failure=stop_on_failure,
                     failure_drop=1.0 - failure_drop, failure_window=window_rows,
                     failure_min_strain=settings.failure_min_strain)

    log(f"tensile: {state.n_atoms} atoms, direction {axis}, {strain_rate_per_s:.3g} 1/s, "
        f"T = {settings.temperature_K} K, up to {steps} steps of {settings.dt_fs} fs")
    # The first tension segment starts from the equilibrated length, which the Simulation takes as the
    # stage's L0; the barostat's feed-forward uses the starting cell's length (a few 0.1 % off at most).
    L_start = float(state.cell[a, a])
    stages = [Stage("equilibrate", settings.equilibrate_steps, thermostat=settings.make_thermostat(),
                    barostat=barostat_for(ff, state, periodic, settings)),
              tension_stage(L_start, L_start, steps)]

    if resume and out_prefix is None:
        raise MDSetupError("resume needs out_prefix (where the checkpoint is)")
    run = simulation(ff, state, settings, out_prefix=out_prefix, resume=resume, log=log,
                     extrapolation=extrapolation).run(stages)
    rows = run.stage_rows[1]
    thermo = {c: np.asarray(v) for c, v in run.thermo.items()}
    L0 = float(thermo[f"cell_{axis}{axis}_A"][rows])
    look_steps = window_rows * settings.thermo_every
    events = []   # every pause and how the run ended: {"strain", "kind", ...}
    fracture_strain = collapse_strain = float("nan")
    segments = {"look": 0, "seg": 0}
    md = run.md

    def strain_of(md_state) -> float:
        return float(md_state.cell[a, a]) / L0 - 1.0

    def steps_left(md_state) -> int:
        return int(math.ceil((max_strain - strain_of(md_state)) / (rate_per_fs * settings.dt_fs) - 1e-6))

    def join(more_thermo) -> None:
        """Append a segment's thermo rows (its row 0 repeats the pause) to ``thermo``."""
        nonlocal thermo
        more = {c: np.asarray(v)[1:] for c, v in more_thermo.items()}
        more["time_fs"] = more["time_fs"] + thermo["time_fs"][-1]
        more["step"] = more["step"] + thermo["step"][-1]
        more["stage"] = np.ones_like(more["stage"])
        thermo = {c: np.concatenate([thermo[c], more[c]]) for c in thermo}

    def continue_tension(md_state, n_steps, part):
        """The next segment of the tension from ``md_state``: ``part`` "look" (the second look at a drop, no
        drop detector; checkpoint ``look<k>``) or "seg" (after the k-th yield; ``seg<k>``). Its thermo rows
        join ``thermo``, also those a blow-up leaves (:class:`MDRunError`, raised on)."""
        segments[part] += 1
        stage = tension_stage(L0, float(md_state.cell[a, a]), n_steps, part == "seg")
        seed = settings.seed + 7919 * (2 * segments[part] - (part == "look"))
        sim = simulation(ff, md_state, replace(settings, seed=seed), out_prefix=out_prefix,
                         checkpoint=checkpoint_file(out_prefix, f"{part}{segments[part]}"), resume=resume, log=log,
                         extrapolation=extrapolation)
        try:
            result = sim.run([stage])
        except MDRunError as exc:
            if exc.thermo is not None and len(exc.thermo["step"]) > 1:
                join(exc.thermo)
            raise
        join(result.thermo)
        return result

    while True:
        drop_strain = strain_of(md.state)
        # a segment ends early only at a sustained drop (its stopped_by, which a checkpoint keeps)
        if not run.stopped_by and drop_strain >= max_strain - rate_per_fs * settings.dt_fs:
            break
        try:
            cracked = cracked_now(md.state)
            if not cracked and steps_left(md.state) > 0:
                # broken bonds open past the bond cutoff only as the crack runs and the pieces recoil:
                # look again after one more drop window of tension
                run = continue_tension(md.state, min(look_steps, steps_left(md.state)), "look")
                md = run.md
                cracked = cracked_now(md.state)
            events.append({"strain": drop_strain, "kind": "fracture" if cracked else "yield",
                           "checked_at_strain": strain_of(md.state)})
            log(f"tensile: sustained stress drop at strain {drop_strain:.4g}, structure checked at "
                f"{strain_of(md.state):.4g}: "
                f"{'crack across the cell (fracture)' if cracked else 'no crack (yield); the tension goes on'}")
            if cracked:
                fracture_strain = drop_strain
                break
            if steps_left(md.state) <= 0 or segments["seg"] >= MAX_SEGMENTS:
                break
            run = continue_tension(md.state, steps_left(md.state), "seg")
            md = run.md
        except MDExtrapolationError:
            raise  # the user's stop: a refit is due, not a result
        except MDRunError as exc:  # the structure left the potential's domain: keep the curve up to here
            collapse_strain = float(thermo[f"cell_{axis}{axis}_A"][-1]) / L0 - 1.0  # the last row that passed
            reason = str(exc).split(" (at ")[0]
            events.append({"strain": collapse_strain, "kind": "collapse", "after_drop_at_strain": drop_strain,
                           "reason": reason})
            log(f"tensile: the tension after the stress drop at strain {drop_strain:.4g} blew up ({reason}); "
                f"the curve up to strain {collapse_strain:.4g} is kept and the run failed by collapse")
            break
    if np.isnan(fracture_strain) and np.isnan(collapse_strain) and cracked_now(md.state):
        fracture_strain = strain_of(md.state)  # cracked without a drop the detector saw (e.g. at the last rows)
        events.append({"strain": fracture_strain, "kind": "fracture", "checked_at_strain": fracture_strain})

    curve = stress_strain_curve(thermo, rows, axis, others, sheet=sheet)  # nu: mean over the transverse axes
    to_2d = thermo["cell_zz_A"][rows:] * GPA_A_TO_N_PER_M
    t_stress = (np.mean([thermo[f"stress_{o}{o}_GPa"][rows:] for o in others], axis=0) if others
                else np.zeros_like(curve["strain"]))
    if sheet:
        t_stress = t_stress * to_2d
    stress_key = "stress_N_per_m" if sheet else "stress_GPa"
    props = tensile_properties(curve["strain"], curve[stress_key], curve["transverse_strain"],
                               fit_window=fit_window, window=fit)
    failed_at = fracture_strain if np.isnan(collapse_strain) else collapse_strain
    broke = not np.isnan(failed_at)
    loading = curve["strain"] <= (failed_at if broke else np.inf)
    t_mean, t_sem = transverse_stress_stats(t_stress[loading])
    y_strain, y_stress = yield_point(curve["strain"], curve[stress_key], failed_at, drop_window_strain,
                                yield_drop, settings.failure_min_strain,
                                yielded=any(e["kind"] == "yield" for e in events))
    unit = "N_per_m" if sheet else "GPa"
    properties = {f"youngs_modulus_{unit}": props["youngs_modulus"],
                  f"youngs_modulus_fit_sem_{unit}": props["youngs_modulus_sem"],
                  "fit_window_strain": props["fit_window_strain"],
                  f"ultimate_strength_{unit}": props["ultimate_strength"],
                  f"transverse_stress_mean_{unit}": t_mean, f"transverse_stress_sem_{unit}": t_sem,
                  f"yield_stress_{unit}": y_stress}
    if sheet and thickness_A:
        to_gpa = 1.0 / (thickness_A * GPA_A_TO_N_PER_M)
        curve["stress_GPa_at_thickness"] = curve["stress_N_per_m"] * to_gpa
        for name in ("youngs_modulus", "youngs_modulus_fit_sem", "ultimate_strength", "yield_stress"):
            properties[f"{name}_GPa"] = properties[f"{name}_N_per_m"] * to_gpa
    properties["poisson_ratio"] = props["poisson_ratio"]
    properties["poisson_ratio_fit_sem"] = props["poisson_ratio_sem"]
    properties["poisson_fit_window_strain"] = props["poisson_fit_window_strain"]
    properties["failure_strain"] = props["failure_strain"]
    properties["failure_mode"] = ("collapse" if not np.isnan(collapse_strain) else "fracture") if broke else "none"
    properties["failed"] = broke
    properties["fracture_strain"] = fracture_strain
    properties["yield_strain"] = y_strain
    record = {"direction": axis, "strain_rate_per_s": strain_rate_per_s, "max_strain": max_strain,
              "transverse": transverse, "n_atoms": state.n_atoms, "thickness_A": thickness_A,
              "fit_window": list(fit_window), "fit": fit, "loading_barostat": loading_barostat,
              "transverse_control": control, "drop_window_strain": drop_window_strain,
              "failure_drop": failure_drop, "yield_drop": yield_drop, "bond_cutoff_A": bond_cutoff,
              "reference_crossing_bonds": reference_min,
              "look_strain": look_steps * rate_per_fs * settings.dt_fs,
              "events": events, "cell_A": md.state.cell.tolist(), **settings.as_dict()}
    h5 = None
    if out_prefix is not None:
        h5 = write_run_h5(f"{out_prefix}.h5", thermo=thermo, settings=record, stress_strain=curve,
                          results=properties)
    return {"properties": properties, "curve": curve, "settings": record, "h5": h5, "run": run}


def interface_tensile(ff, atoms_or_state, *, normal="y", **kwargs) -> dict:
    """Tensile test of a lateral heterostructure cell loaded perpendicular to its interface lines.

    The cells of ``training.structures.interface`` stack the phases along y, so the
    interface lines run along x and the load is along ``normal='y'``; other
    arguments as :func:`tensile`.
    """
    return tensile(ff, atoms_or_state, direction=normal, **kwargs)
