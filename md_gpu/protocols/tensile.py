"""Uniaxial tension at a constant engineering strain rate until failure.

Protocol (data, run by :class:`md_gpu.simulation.Simulation`):

1. ``equilibrate``: thermostat at T, barostat holding zero stress on the
   periodic axes (in-plane only for a 2D sheet), ``equilibrate_steps``;
2. ``tension``: stretch along ``direction`` at ``strain_rate_per_s``; the
   transverse periodic axes are either held at zero stress by the barostat
   (``transverse='stress'``: uniaxial stress) or kept at fixed length
   (``transverse='strain'``); the stage ends when the axial stress falls
   below half its peak (failure) or at ``max_strain``.

For another in-plane direction, rotate the sheet (and its cell) first so that
the direction is x or y. :func:`interface_tensile` loads a heterostructure cell
perpendicular to its interface lines.

Outputs: the stress-strain curve (strain, transverse strain, stress in GPa and,
for a sheet, N/m and GPa at the effective thickness), Young's modulus, Poisson's
ratio, UTS, failure strain; optionally an HDF5 file, an extxyz trajectory and checkpoints.
"""
from __future__ import annotations

import math

from ..analysis import stress_strain_curve, tensile_properties
from ..cell_control import axis_index
from ..errors import MDSetupError
from ..io import write_run_h5
from ..simulation import Simulation, Stage
from ..units import GPA_A_TO_N_PER_M, PER_S_TO_PER_FS
from .common import TRANSVERSE, RunSettings, barostat_for, in_plane_axes, prepare_state, simulation


def tensile(ff, atoms_or_state, *, direction="x", strain_rate_per_s: float = 1e9, max_strain: float = 0.3,
            transverse: str = "stress", settings: RunSettings | None = None, thickness_A: float | None = None,
            fit_window=(0.0, 0.01), out_prefix=None, resume: bool = False, extrapolation=None,
            log=print) -> dict:
    """Run the tensile test; return ``{"properties", "curve", "settings", "h5"}``.

    ff: force field; atoms_or_state: ase.Atoms or State; direction: 'x' | 'y' (or 'z' for
    bulk); strain_rate_per_s (1/s); max_strain (engineering); transverse: 'stress' |
    'strain'; thickness_A: effective thickness of a sheet (Å) to quote GPa; fit_window:
    strain range of the modulus fit; out_prefix: path prefix of ``.h5``, ``.extxyz``,
    ``.ckpt.npz``; resume: continue from ``<out_prefix>.ckpt.npz``.
    Properties of a 2D sheet are in N/m (``*_N_per_m``) and GPa at ``thickness_A``
    (``*_GPa``); of a bulk cell in GPa.
    """
    settings = settings or RunSettings()
    if transverse not in TRANSVERSE:
        raise MDSetupError(f"transverse: {transverse!r} is not one of {', '.join(TRANSVERSE)}")
    if strain_rate_per_s <= 0 or max_strain <= 0:
        raise MDSetupError(f"strain_rate_per_s={strain_rate_per_s} and max_strain={max_strain} must be > 0")
    state = prepare_state(ff, atoms_or_state, settings)
    a = axis_index(direction)
    if not state.pbc[a]:
        raise MDSetupError(f"direction {direction!r} is not periodic in this cell; a sheet is pulled along x or y")
    axis = "xyz"[a]
    periodic = in_plane_axes(state)
    others = tuple(ax for ax in periodic if ax != axis)
    sheet = not state.pbc[2]
    steps = int(math.ceil(max_strain / (strain_rate_per_s * PER_S_TO_PER_FS * settings.dt_fs)))
    stages = [
        Stage("equilibrate", settings.equilibrate_steps, thermostat=settings.make_thermostat(),
              barostat=barostat_for(ff, state, periodic, settings)),
        Stage("tension", steps, thermostat=settings.make_thermostat(),
              barostat=barostat_for(ff, state, others, settings) if transverse == "stress" else None,
              deform_axis=axis, strain_rate_per_s=strain_rate_per_s, stop_on_failure=True,
              failure_min_strain=settings.failure_min_strain),
    ]
    log(f"tensile: {state.n_atoms} atoms, direction {axis}, {strain_rate_per_s:.3g} 1/s, "
        f"T = {settings.temperature_K} K, up to {steps} steps of {settings.dt_fs} fs")
    if resume:
        if out_prefix is None:
            raise MDSetupError("resume needs out_prefix (where the checkpoint is)")
        sim = Simulation.resume(f"{out_prefix}.ckpt.npz", ff, dt_fs=settings.dt_fs, skin_A=settings.skin_A,
                                thermo_every=settings.thermo_every, traj_every=settings.traj_every,
                                traj_path=f"{out_prefix}.extxyz" if settings.traj_every else None,
                                checkpoint_every=settings.checkpoint_every, extrapolation=extrapolation,
                                log=log)
    else:
        sim = simulation(ff, state, settings, out_prefix=out_prefix, log=log, extrapolation=extrapolation)
    run = sim.run(stages)
    transverse_axis = others[0] if others else None
    curve = stress_strain_curve(run.thermo, run.stage_rows[1], axis, transverse_axis, sheet=sheet)
    if sheet:
        props = tensile_properties(curve["strain"], curve["stress_N_per_m"], curve["transverse_strain"],
                                   fit_window=fit_window)
        properties = {"youngs_modulus_N_per_m": props["youngs_modulus"],
                      "ultimate_strength_N_per_m": props["ultimate_strength"]}
        if thickness_A:
            to_gpa = 1.0 / (thickness_A * GPA_A_TO_N_PER_M)
            curve["stress_GPa_at_thickness"] = curve["stress_N_per_m"] * to_gpa
            properties["youngs_modulus_GPa"] = props["youngs_modulus"] * to_gpa
            properties["ultimate_strength_GPa"] = props["ultimate_strength"] * to_gpa
    else:
        props = tensile_properties(curve["strain"], curve["stress_GPa"], curve["transverse_strain"],
                                   fit_window=fit_window)
        properties = {"youngs_modulus_GPa": props["youngs_modulus"],
                      "ultimate_strength_GPa": props["ultimate_strength"]}
    properties["poisson_ratio"] = props["poisson_ratio"]
    properties["failure_strain"] = props["failure_strain"]
    properties["failed"] = bool(run.stopped_by)
    record = {"direction": axis, "strain_rate_per_s": strain_rate_per_s, "max_strain": max_strain,
              "transverse": transverse, "n_atoms": state.n_atoms, "thickness_A": thickness_A,
              "fit_window": list(fit_window), "cell_A": run.md.state.cell.tolist(), **settings.as_dict()}
    h5 = None
    if out_prefix is not None:
        h5 = write_run_h5(f"{out_prefix}.h5", thermo=run.thermo, settings=record, stress_strain=curve,
                          results=properties)
    return {"properties": properties, "curve": curve, "settings": record, "h5": h5, "run": run}


def interface_tensile(ff, atoms_or_state, *, normal="y", **kwargs) -> dict:
    """Tensile test of a lateral heterostructure cell loaded perpendicular to its interface lines.

    The cells of ``training.structures.interface`` stack the phases along y, so the
    interface lines run along x and the load is along ``normal='y'``; other
    arguments as :func:`tensile`.
    """
    return tensile(ff, atoms_or_state, direction=normal, **kwargs)
