"""The ``fem`` stage: properties.json -> tensile tests of heterostructures -> fem_results.json.

Data flow (docs/architecture.md, docs/fem.md)::

    runs/constitutive/properties.json
        -> fem.study.run_tensile(settings)         the sample of the ``fem:`` section, loaded to failure
        -> fem.study.run_sweep(settings, study)    every entry of ``fem.studies``
        -> fem.consistency.run_consistency(...)    the MD stripe heterostructure rebuilt in FE (a modulus)
        -> fem.thermal_study.run_thermal(settings) heat conduction (``fem.thermal``): kappa_eff, sweeps
        -> runs/fem/: tensile_fields.xdmf (+ .h5), tensile_curve.png, tensile_damage.png,
                      <study>.json (table), <study>.csv, <study>.png, <study>_<i>_{curve,damage}.png,
                      points/<study>_<i>.json (finished sweep points, for resuming), fem_results.json,
                      work.json (solver counts and timings of the tensile runs, dofs per second),
                      thermal_fields.xdmf, thermal_temperature.png, thermal_fraction.png, thermal_size.png

All ranks solve together (PETSc); only rank 0 writes PNG, CSV and JSON.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

from mpi4py import MPI

from common.contracts import read_properties

from . import consistency, materials, study, thermal_study
from .errors import FemInputError

RESULTS_FILE = "fem_results.json"
RESULTS_FORMAT = "multiscale-fem-results/1"
WORK_FILE = "work.json"                   # what the tensile runs cost (timings: not a result)
WORK_FORMAT = "multiscale-fem-work/1"

FEM_SETTINGS = {
    "phases": (list, [], "the two phases [A, B] of properties.json; fractions are of B; []: the two phases of "
                         "the case's interface system (its between)"),
    "geometry": (str, "stripes", "sample of the main run: stripes | islands | mesh_file"),
    "length_nm": (float, 40.0, "sample length along x (nm)"),
    "height_nm": (float, 20.0, "sample height along y (nm)"),
    "mesh_size_nm": (float, 0.25, "element size away from interfaces (nm); keep <= ell_nm / 2"),
    "interface_mesh_size_nm": (float, 0.0, "element size near interfaces (nm); 0: mesh_size_nm"),
    "interface_width_nm": (float, 2.0, "width of the interface band (nm), >= 4 ell_nm to fail at the MD "
                                       "interface strength; 0: perfect interface, no band"),
    "interface_fallback": (str, "weaker_phase", "band strength when properties.json has no usable interface "
                                                "strength for the two phases (no entry, or withheld): "
                                                "weaker_phase | error"),
    "allow_unfailed_strength": (bool, False, "use a strength flagged strength_from_unfailed in properties.json (a "
                                             "tensile run that neither failed nor yielded: its peak is where the "
                                             "MD loading stopped, a lower bound) as the strength; false: stop"),
    "stripes": {
        "period_nm": (float, 40.0, "width of one A + B pair of stripes (nm)"),
        "fraction": (float, 0.5, "area fraction of phase B"),
        "orientation": (str, "y", "x: stripes along x (parallel to x-tension) | y: across it (in series)"),
        "offset_nm": (float, 0.0, "the pattern starts this far into a period (nm): 0 starts with a whole A stripe"),
    },
    "islands": {
        "radius_nm": (float, 4.0, "island (circum)radius (nm)"),
        "fraction": (float, 0.3, "area fraction of phase B (islands of B up to 1/2, of A above)"),
        "shape": (str, "circle", "circle | polygon"),
        "n_sides": (int, 6, "sides of a polygon island"),
        "seed": (int, 0, "seed of the random placement"),
    },
    "mesh_file": (str, "", "user mesh (.msh with named physical groups, or .xdmf with cell_tags) for geometry mesh_file"),
    "elasticity": (str, "orthotropic", "orthotropic (E1, E2, nu12, G12 from C_ij) | isotropic"),
    "model": (str, "AT1", "phase-field model: AT1 (elastic threshold) | AT2"),
    "ell_nm": (float, 0.5, "phase-field length scale (nm)"),
    "damage": (bool, True, "false: linear elasticity only (effective modulus)"),
    "load_direction": (str, "x", "tension along x | y"),
    "loading": {
        "max_strain": (float, 0.3, "largest applied strain"),
        "n_steps": (int, 30, "initial equal strain steps to max_strain"),
        "min_step_fraction": (float, 0.015625, "smallest step, as a fraction of the first (near failure)"),
        "max_damage_increment": (float, 0.3, "a step whose damage grows more than this is cut in half"),
        "stop_fraction": (float, 0.25, "end the test once the stress falls below this fraction of the peak"),
    },
    "solver": {
        "linear": (str, "auto", "auto | direct (MUMPS LU) | iterative (CG + GAMG)"),
        "direct_max_dofs": (int, 60000, "auto: direct up to this many displacement dofs"),
        "rtol": (float, 1e-11, "Krylov relative tolerance (iterative)"),
        "tol": (float, 1e-4, "staggered loop: max damage change between iterations"),
        "max_iterations": (int, 500, "staggered loop: iterations per load step"),
    },
    "write_fields": (bool, True, "write XDMF fields (displacement, damage, phase) of the main run"),
    "consistency": consistency.CONSISTENCY_SETTINGS,
    "thermal": {
        "enabled": (bool, True, "steady heat conduction: main sample, fraction and size sweeps (needs thermal "
                                "conductivities in properties.json: md.thermal)"),
        "load_direction": (str, "x", "heat flows along x | y: hot edge at 0, cold edge opposite, others adiabatic"),
        "delta_T_K": (float, 10.0, "temperature difference between the hot and cold edges (K)"),
        "interface": (str, "jump", "jump: q.n = G [T] on phase boundaries (G from properties.json) | "
                                   "perfect: continuous temperature"),
        "interface_fallback": (str, "perfect", "when properties.json has no usable conductance for the interface "
                                               "(none, or withheld: not positive by two standard errors): "
                                               "perfect (logged, noted) | error"),
        "on_bad_input": (str, "error", "when properties.json lacks a usable phase conductivity (missing, or "
                                       "withheld: not positive by two standard errors): error | skip (the thermal "
                                       "part is left out, fem_results.json says why; the mechanics still run)"),
        "mesh_size_nm": (float, 0.0, "element size of the main sample and fraction sweeps (nm); 0: mesh_size_nm"),
        "linear": (str, "direct", "direct (MUMPS LU) | iterative (CG + GAMG)"),
        "fractions": (list, [0.0, 0.25, 0.5, 0.75, 1.0], "area fractions of B of the fraction sweeps; []: none"),
        "fraction_samples": (list, ["stripes_parallel", "stripes_series", "islands"],
                             "samples of the fraction sweeps: stripes_parallel | stripes_series | islands"),
        "periods_nm": (list, [], "stripe periods of the size sweep (nm); []: period_count log-spaced periods "
                                 "from period_min_nm to period_max_nm"),
        "period_min_nm": (float, 10.0, "smallest period of the size sweep (nm)"),
        "period_max_nm": (float, 10000.0, "largest period of the size sweep (nm)"),
        "period_count": (int, 7, "number of log-spaced periods; 0: no size sweep"),
        "size_fraction": (float, 0.5, "area fraction of B in the size sweep"),
        "elements_per_stripe": (int, 8, "size sweep: elements across the narrower stripe (the mesh scales with "
                                        "the period)"),
    },
    "studies": (list, [
        {"name": "stripes_fraction", "geometry": "stripes", "variable": "fraction",
         "values": [0.0, 0.25, 0.5, 0.75, 1.0]},
        {"name": "islands_fraction", "geometry": "islands", "variable": "fraction",
         "values": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]},
    ], "sweeps: list of {name, geometry: stripes|islands, variable (e.g. fraction, period_nm, radius_nm), values}"),
}


def defaults(schema: dict = FEM_SETTINGS) -> dict:
    """The settings with every default filled in (nested sections as dicts)."""
    return {k: defaults(v) if isinstance(v, dict) else copy.deepcopy(v[1]) for k, v in schema.items()}


def check_settings(s: dict) -> None:
    """Value checks that the schema types cannot express; each error names the key."""
    choices = {"geometry": study.GEOMETRIES, "elasticity": materials.ELASTICITY, "model": materials.MODELS,
               "load_direction": ("x", "y"), "interface_fallback": materials.INTERFACE_FALLBACKS}
    for key, allowed in choices.items():
        if s[key] not in allowed:
            raise FemInputError(f"fem.{key}: {s[key]!r} is not one of {', '.join(allowed)}")
    if s["geometry"] == "mesh_file" and not s["mesh_file"]:
        raise FemInputError("fem.mesh_file: geometry is mesh_file but no file is given")
    for key in ("length_nm", "height_nm", "mesh_size_nm", "ell_nm"):
        if not s[key] > 0:
            raise FemInputError(f"fem.{key} must be > 0, got {s[key]}")
    if s["loading"]["n_steps"] < 1 or not s["loading"]["max_strain"] > 0:
        raise FemInputError(f"fem.loading: need n_steps >= 1 and max_strain > 0, got {s['loading']['n_steps']} and "
                            f"{s['loading']['max_strain']}")
    if s["interface_width_nm"] < 0:
        raise FemInputError(f"fem.interface_width_nm must be >= 0, got {s['interface_width_nm']}")
    thermal_study.check_thermal_settings(s["thermal"])


def run_fem(settings: dict, ctx) -> dict:
    """Run the main tensile test, every study and the heat conduction; write ``fem_results.json``; summarise."""
    comm = getattr(ctx, "comm", None) or MPI.COMM_WORLD
    check_settings(settings)
    source = Path(ctx.stage_dir("constitutive")) / "properties.json"
    props = {**read_properties(source), "_source": str(source)}  # the fem modules name the file in errors
    return run_all(settings, props, comm=comm, out_dir=Path(ctx.out_dir), log=ctx.log,
                   systems=getattr(ctx, "systems", None))


def run_all(settings: dict, props: dict, *, comm=MPI.COMM_WORLD, out_dir: Path, log=None,
            systems: dict | None = None) -> dict:
    """The stage's work without a runner context (used by the CLI and tests). ``systems``: the case's
    systems, from which an empty ``fem.phases`` is taken (:func:`fem.materials.resolve_phases`)."""
    check_settings(settings)
    settings = {**settings, "phases": materials.resolve_phases(settings["phases"], props, systems)}
    out_dir = Path(out_dir)
    if comm.rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    comm.barrier()
    inputs = materials.input_record(props, settings)
    if log:
        for note in inputs["notes"]:
            log(f"note: {note}")
    # read the thermal inputs before the long mechanics runs, so that a missing one stops the stage at once
    thermal_inputs, thermal_skipped = None, None
    if settings["thermal"]["enabled"]:
        try:
            thermal_inputs = thermal_study.SampleMaterials(settings, props, log=log)
        except FemInputError as exc:
            if settings["thermal"]["on_bad_input"] != "skip":
                raise
            thermal_skipped = {"skipped": f"{exc} (fem.thermal.on_bad_input: skip)"}
            if log:
                log(f"thermal part left out: {thermal_skipped['skipped']}")
    solved = study.SolvedSamples()   # a sweep point equal to a sample solved before takes its result
    mechanics_start = time.perf_counter()
    main = study.run_tensile(settings, props, comm=comm, out_dir=out_dir, label="tensile",
                             write_fields=settings["write_fields"], log=log, solved=solved)
    if log:
        log(f"main run: modulus {main['modulus_N_per_m']:.2f} N/m, strength {main['strength_N_per_m']:.3f} N/m, "
            f"failure strain {main['failure_strain']:.4f}")
    studies = [study.run_sweep(settings, st, i, props, comm=comm, out_dir=out_dir, log=log, solved=solved)
               for i, st in enumerate(settings["studies"])]
    work = work_totals(solved.work, time.perf_counter() - mechanics_start)
    if log:
        log(f"tensile runs: {work['samples']} ({work['reused']} reused), {work['displacement_solves']} displacement "
            f"solves, {work['damage_solves']} damage solves, {work['wall_s']:.1f} s, "
            f"{work['dofs_per_s']:.4g} dofs x load steps per second")
    twin = consistency.run_consistency(settings, props, comm=comm, log=log) if settings["consistency"]["enabled"] \
        else {"skipped": "fem.consistency.enabled is false"}
    thermal = thermal_skipped
    if thermal_inputs is not None:
        thermal = thermal_study.run_thermal(settings, thermal_inputs, comm=comm, out_dir=out_dir, log=log)
    results = {"format": RESULTS_FORMAT, "units": {"length": "nm", "stress": "N/m (2D)", "Gc": "nN (= 1e-9 J/m)",
                                                   "energy": "nN nm (1e-18 J)", "conductivity": "W/(m K)"},
               "properties": props.get("_source"), "settings": settings, "inputs": inputs, "tensile": main,
               "studies": studies, "consistency": twin, "thermal": thermal}
    if comm.rank == 0:
        study.write_json(out_dir / RESULTS_FILE, results)
        study.write_json(out_dir / WORK_FILE, {"format": WORK_FORMAT, **work, "runs": solved.work})
    return summary(results)


WORK_COUNTS = ("displacement_solves", "damage_solves", "damage_newton_iterations", "damage_jacobians", "solve_s")


def work_totals(samples: list[dict], wall_s: float) -> dict:
    """The solver work of the tensile runs made in a stage (main run and sweep points solved or reused,
    not those resumed from ``points/``; :func:`fem.study.sample_work`) in sum.

    ``samples``: tensile runs; ``reused``: those that took an equal sample's
    result; the solver counts and ``solve_s``: sums; ``dof_steps``:
    displacement dofs x accepted load steps, summed over every run;
    ``dofs_per_s``: ``dof_steps`` per wall second ``wall_s`` of the tensile
    runs (main run and sweeps, meshing included).
    """
    out = {"samples": len(samples), "reused": sum(1 for w in samples if w.get("reused_from"))}
    out.update({key: sum(w[key] for w in samples) for key in WORK_COUNTS})
    out["dof_steps"] = sum(w["n_dofs_displacement"] * w["load_steps"] for w in samples)
    out.update(wall_s=wall_s, dofs_per_s=out["dof_steps"] / wall_s if wall_s > 0 else None)
    return out


def summary(results: dict) -> dict:
    """The stage summary (shown by the report): main-run numbers and each study's table, compact."""
    main = results["tensile"]
    tables = {}
    for st in results["studies"]:
        B = results["settings"]["phases"][1]
        tables[st["name"]] = [{st["variable"]: r["value"], f"fraction_{B}": round(r[f"fraction_{B}"], 4),
                               "modulus_N_per_m": round(r["modulus_N_per_m"], 3),
                               "strength_N_per_m": round(r["strength_N_per_m"], 4),
                               "failure_strain": round(r["failure_strain"], 5)} for r in st["rows"]]
    out = {"modulus_N_per_m": main["modulus_N_per_m"], "strength_N_per_m": main["strength_N_per_m"],
           "failure_strain": main["failure_strain"], "notes": main["notes"], "results": RESULTS_FILE,
           "studies": tables}
    if (results.get("inputs") or {}).get("notes"):
        out["input_notes"] = results["inputs"]["notes"]
    if results.get("consistency"):
        twin = results["consistency"]
        out["consistency"] = {k: twin[k] for k in ("modulus_N_per_m", "perfect_interface_modulus_N_per_m",
                                                    "interface_compliance_nm_per_N_per_m", "md_modulus_N_per_m",
                                                    "period_nm", "fraction_B", "low_T", "skipped") if k in twin}
    if results.get("thermal"):
        out["thermal"] = results["thermal"] if "skipped" in results["thermal"] else thermal_summary(results["thermal"])
    return out


def thermal_summary(th: dict) -> dict:
    """The heat-conduction numbers of the stage summary: main kappa_eff with its bounds, the size effect."""
    main = th["main"]
    out = {k: main[k] for k in ("kappa_eff_W_per_mK", "parallel_W_per_mK", "series_W_per_mK", "exact_W_per_mK")}
    out.update(load_direction=main["load_direction"], G_W_per_m2K=th["materials"]["G_W_per_m2K"],
               notes=th["notes"], files=th["files"])
    size = th.get("size_sweep")
    if size:
        out["size"] = [{"period_nm": round(r["period_nm"], 4), "kappa_W_per_mK": round(r["kappa_fe"], 4)}
                       for r in size["rows"]]
        out["crossover_period_nm"] = size["crossover_period_nm"]
    return out
